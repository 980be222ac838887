"""Loading `postguard.toml` into a validated `Config`.

Owns reading the file (tomllib), checking every key against the schema, converting values
(units, paths, addresses) and the checks that span keys (legacy TLS needs its opt-in, aliases
point at mailboxes, two listeners never share a socket, [auth.oauth] names exactly one token
source, [delivery.lmtp] exactly one server and delivery routes only local recipients). Every
failure is a `ConfigError` naming the file and the dotted key path.

Theory of operation: `Table` is a typed accessor over one TOML table that knows its key path
and rejects keys it was not told about. Each section is a table of ``key -> reader``; a
reader converts one value (or raises at that key), and keys present in the file replace the
dataclass defaults in `schema.py`. Sections with relations between keys (`[tls]`,
`[listener.*]`, `[local]`, `[queue]`, `[delivery]`, `[auth]`) get a short check after the
table-driven read.

Paths: ``server.data_dir`` is relative to the config file's directory; other relative paths
(``tls.certificate[i].cert``/``key``, ``local.maildir_root``, ``delivery.lmtp.socket``,
``delivery.lmtp.ca_file``, ``auth.accounts_file``, ``auth.oauth.jwks_file``,
``auth.oauth.introspection_client_secret_file``) are relative to data_dir. All paths in a
`Config` are absolute. Certificate, accounts, JWKS, secret and CA files and the LMTP socket
are not opened here: they may be provisioned after start-up, and their owners (`tls/`,
`accounts/`, `delivery/`) report a missing or bad file when they load them.

Must not: open sockets, touch the data directory, or log. Start-up warnings for weakenings
come from `weakenings.py`.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from postguard.config.reader import (
    Reader,
    Table,
    array,
    boolean,
    count,
    non_empty,
    one_of,
    quantity,
    read_section,
    read_toml,
    string,
)
from postguard.config.schema import (
    DEFAULT_ACCOUNTS_FILE_NAME,
    DEFAULT_LISTENERS,
    DEFAULT_MAILDIR_NAME,
    DELIVERY_ROUTES,
    LEGACY_TLS_VERSIONS,
    LISTENER_NAMES,
    LMTP_TLS_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_WORKERS,
    OAUTH_ALGORITHMS,
    SASL_MECHANISMS,
    TLS_VERSIONS,
    AuthSettings,
    CertificateSettings,
    Config,
    DeliveryRoute,
    DeliverySettings,
    LimitsSettings,
    ListenerSettings,
    LmtpSettings,
    LocalSettings,
    LogSettings,
    OAuthSettings,
    QueueSettings,
    ServerSettings,
    TlsMode,
    TlsSettings,
)
from postguard.config.syntax import (
    addresses_conflict,
    format_address,
    normalize_domain,
    normalize_mailbox,
    normalize_server_name,
    parse_address,
    parse_server_address,
    quote,
)
from postguard.config.units import parse_duration, parse_size

__all__ = ["default_config", "load_config"]

_SECTIONS = ("server", "limits", "tls", "listener", "local", "queue", "delivery", "auth", "log")
_path = string(lambda text: Path(non_empty(text)))

_SERVER: Mapping[str, Reader] = {
    "hostname": string(normalize_domain),
    "data_dir": _path,
    "user": string(non_empty),
    "group": string(non_empty),
    "shutdown_grace": quantity(parse_duration, "duration", "30s", positive=False),
    "workers": count(1, MAX_WORKERS),
}
_LIMITS: Mapping[str, Reader] = {
    "max_message_size": quantity(parse_size, "size", "50MiB", positive=True),
    "max_recipients": count(1),
    "idle_timeout": quantity(parse_duration, "duration", "5m", positive=True),
    "command_timeout": quantity(parse_duration, "duration", "5m", positive=True),
    "data_timeout": quantity(parse_duration, "duration", "3m", positive=True),
    "max_connections": count(1),
    "max_connections_per_ip": count(1),
}
_TLS: Mapping[str, Reader] = {
    "min_version": string(one_of(*TLS_VERSIONS)),
    "allow_legacy_tls_versions": boolean,
    "watch_interval": quantity(parse_duration, "duration", "5s", positive=True),
    "certificate": lambda table, name: table.tables(name),  # [[tls.certificate]]
}
_CERTIFICATE: Mapping[str, Reader] = {"cert": _path, "key": _path}
# tls is settable on mx only: submission is STARTTLS-required (RFC 8314 §3.3 wants TLS for
# submission; allow_plaintext is the explicit opt-out) and submissions is implicit TLS.
_LISTENERS: Mapping[str, Mapping[str, Reader]] = {
    "mx": {
        "enabled": boolean,
        "addresses": array(parse_address),
        "tls": string(one_of("opportunistic", "required", convert=TlsMode)),
        # AUTH on mx is opt-in: MX traffic is server-to-server, and AUTH there invites
        # password guessing from the whole Internet. Submission always offers it.
        "auth": boolean,
    },
    "submission": {
        "enabled": boolean,
        "addresses": array(parse_address),
        "allow_plaintext": boolean,
    },
    "submissions": {"enabled": boolean, "addresses": array(parse_address)},
}
_LOCAL: Mapping[str, Reader] = {
    "domains": array(normalize_domain),
    "mailboxes": array(normalize_mailbox),
    "aliases": lambda table, name: table.table(name),
    "maildir_root": _path,
    "mailbox_quota": quantity(parse_size, "size", "1GiB", positive=False),
}
_QUEUE: Mapping[str, Reader] = {
    "first_retry": quantity(parse_duration, "duration", "5m", positive=True),
    "max_backoff": quantity(parse_duration, "duration", "4000s", positive=True),
    "max_lifetime": quantity(parse_duration, "duration", "5d", positive=True),
    "delay_warning": quantity(parse_duration, "duration", "4h", positive=False),
    "min_free_disk": quantity(parse_size, "size", "100MiB", positive=False),
    "concurrency": count(1),
    "per_destination_concurrency": count(1),
    "lease": quantity(parse_duration, "duration", "10m", positive=True),
    "scan_interval": quantity(parse_duration, "duration", "1s", positive=True),
    "group_commit": boolean,
}
_DELIVERY: Mapping[str, Reader] = {
    "default": string(one_of(*DELIVERY_ROUTES)),
    "lmtp": lambda table, name: table.table(name),
    "routes": lambda table, name: table.table(name),
}
_LMTP: Mapping[str, Reader] = {
    "address": string(parse_server_address),
    "socket": _path,
    "tls": string(one_of(*LMTP_TLS_MODES)),
    "ca_file": _path,
    "server_name": string(normalize_server_name),
    "lhlo_domain": string(normalize_domain),
}
_LMTP_TARGETS = ("address", "socket")
_LMTP_TLS_ONLY = ("ca_file", "server_name")


def _https_url(text: str, *, allow_http: bool = False) -> str:
    """Check an ``https://`` URL (``http://`` too when ``allow_http``); return it unchanged."""
    try:
        url = urllib.parse.urlsplit(text)
        url.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValueError(f"invalid URL {quote(text)}") from None
    if url.username is not None or url.password is not None:
        # SECURITY: credentials in a URL end up in logs and process listings; and this
        # message must not quote the URL, since it holds them.
        raise ValueError("the URL must not contain credentials (user:password@)")
    if url.scheme not in ("https", "http") or not url.hostname:
        raise ValueError(f"invalid URL {quote(text)} (expected https://host/...)")
    if url.scheme == "http" and not allow_http:
        raise ValueError(f"{quote(text)} is not https")
    if url.fragment:
        raise ValueError(f"invalid URL {quote(text)} (a fragment has no meaning here)")
    return text


_AUTH: Mapping[str, Reader] = {
    "accounts_file": _path,
    "received_shows_identity": boolean,
    "mechanisms": array(one_of(*SASL_MECHANISMS)),
    "max_failures_per_ip": count(1),
    "max_failures_per_account": count(1),
    "failure_window": quantity(parse_duration, "duration", "15m", positive=True),
    "lockout": quantity(parse_duration, "duration", "15m", positive=True),
    "base_delay": quantity(parse_duration, "duration", "250ms", positive=False),
    "max_delay": quantity(parse_duration, "duration", "10s", positive=False),
    "oauth": lambda table, name: table.table(name),
}
_OAUTH: Mapping[str, Reader] = {
    "jwks_file": _path,
    "jwks_url": string(lambda text: _https_url(text, allow_http=True)),  # scheme checked below
    "allow_insecure_jwks_url": boolean,
    "issuer": string(non_empty),
    "audience": string(non_empty),
    "algorithms": array(one_of(*OAUTH_ALGORITHMS)),
    "identity_claim": string(non_empty),
    "introspection_url": string(_https_url),
    "introspection_client_id": string(non_empty),
    "introspection_client_secret_file": _path,
    "cache_ttl": quantity(parse_duration, "duration", "5m", positive=False),
}
_OAUTH_SOURCES = ("jwks_file", "jwks_url", "introspection_url")
_LOG: Mapping[str, Reader] = {
    "format": string(one_of(*LOG_FORMATS)),
    "level": string(one_of(*LOG_LEVELS)),
}


def _read_server(table: Table, config_dir: Path, override: Path | None) -> ServerSettings:
    values = read_section(table, _SERVER)
    if override is not None:
        values["data_dir"] = override.absolute()
    elif "data_dir" in values:
        values["data_dir"] = (config_dir / values["data_dir"]).absolute()
    else:
        raise table.error("data_dir", "missing (set it, or pass a data directory)")
    return ServerSettings(**values)


def _read_limits(table: Table) -> LimitsSettings:
    limits = LimitsSettings(**read_section(table, _LIMITS))
    if limits.max_connections_per_ip > limits.max_connections:
        raise table.error(
            "max_connections_per_ip",
            f"must not exceed limits.max_connections ({limits.max_connections})",
        )
    return limits


def _read_tls(table: Table, data_dir: Path) -> TlsSettings:
    values = read_section(table, _TLS)
    certificates = []
    for entry in values.pop("certificate", []):
        paths = read_section(entry, _CERTIFICATE)
        for name in _CERTIFICATE:
            if name not in paths:
                raise entry.error(name, "missing (each [[tls.certificate]] needs cert and key)")
        certificates.append(
            CertificateSettings(cert=data_dir / paths["cert"], key=data_dir / paths["key"])
        )
    tls = TlsSettings(**values, certificates=tuple(certificates))
    # SECURITY: RFC 8996 deprecates TLS 1.0/1.1 (BEAST, POODLE-TLS, SHA-1 handshakes).
    # Accepting them takes two explicit settings, and weakenings.py reports both.
    if tls.min_version in LEGACY_TLS_VERSIONS and not tls.allow_legacy_tls_versions:
        raise table.error(
            "min_version",
            f"{quote(tls.min_version)} is a legacy TLS version (RFC 8996); "
            "it needs tls.allow_legacy_tls_versions = true",
        )
    return tls


def _read_listeners(table: Table) -> tuple[ListenerSettings, ...]:
    table.check_keys(LISTENER_NAMES)
    listeners = []
    bound: list[tuple[tuple[str, int], str]] = []  # (address, key path) of enabled listeners
    for default in DEFAULT_LISTENERS:
        section = table.table(default.name)
        listener = dataclasses.replace(default, **read_section(section, _LISTENERS[default.name]))
        if listener.enabled and not listener.addresses:
            raise section.error("addresses", "an enabled listener needs at least one address")
        for index, address in enumerate(listener.addresses if listener.enabled else ()):
            for other, other_key in bound:
                if addresses_conflict(address, other):
                    raise section.error(
                        "addresses",
                        f"{quote(format_address(address))} conflicts with "
                        f"{quote(format_address(other))} at {other_key}",
                        index,
                    )
            bound.append((address, section.path_of("addresses", index)))
        listeners.append(listener)
    return tuple(listeners)


def _read_local(table: Table, data_dir: Path) -> LocalSettings:
    values = read_section(table, _LOCAL)
    aliases_table: Table = values.pop("aliases", table.table("aliases"))
    maildir_root = data_dir / values.pop("maildir_root", DEFAULT_MAILDIR_NAME)
    quota: int = values.pop("mailbox_quota", 0)
    if not values and "aliases" not in table:
        return LocalSettings(maildir_root=maildir_root, mailbox_quota=quota)
    # The development defaults apply as a set (see LocalSettings): once the file configures
    # local delivery, whatever it leaves out is empty rather than "localhost".
    domains: tuple[str, ...] = values.get("domains", ())
    mailboxes: tuple[str, ...] = values.get("mailboxes", ())
    for index, mailbox in enumerate(mailboxes):
        domain = mailbox.rpartition("@")[2]
        if domain not in domains:
            raise table.error("mailboxes", f"domain {quote(domain)} is not in local.domains", index)
    aliases: dict[str, str] = {}
    for raw in aliases_table.names():
        try:
            alias = normalize_mailbox(raw)
            target = normalize_mailbox(aliases_table.value(raw, (str,), "a string"))
        except ValueError as exc:
            raise aliases_table.error(raw, str(exc)) from exc
        domain = alias.rpartition("@")[2]
        if domain not in domains:
            problem = f"alias domain {quote(domain)} is not in local.domains"
        elif alias in mailboxes:
            problem = f"{quote(alias)} is a mailbox in local.mailboxes, it cannot be an alias"
        elif alias in aliases:
            problem = f"duplicate alias {quote(alias)} (aliases are case-insensitive)"
        elif target not in mailboxes:
            problem = f"target {quote(target)} is not in local.mailboxes"
        else:
            aliases[alias] = target
            continue
        raise aliases_table.error(raw, problem)
    return LocalSettings(
        domains=domains,
        mailboxes=mailboxes,
        aliases=MappingProxyType(aliases),
        maildir_root=maildir_root,
        mailbox_quota=quota,
    )


def _read_queue(table: Table) -> QueueSettings:
    queue = QueueSettings(**read_section(table, _QUEUE))
    if queue.max_backoff < queue.first_retry:
        raise table.error("max_backoff", "must not be less than queue.first_retry")
    if queue.per_destination_concurrency > queue.concurrency:
        raise table.error(
            "per_destination_concurrency",
            f"must not exceed queue.concurrency ({queue.concurrency})",
        )
    return queue


def _read_lmtp(table: Table, data_dir: Path, hostname: str) -> LmtpSettings:
    values = read_section(table, _LMTP)
    targets = [name for name in _LMTP_TARGETS if name in values]
    message = f"exactly one of {', '.join(_LMTP_TARGETS)} must be set"
    if not targets:
        raise table.whole_table_error(message)
    if len(targets) > 1:
        raise table.error(targets[1], f"{message} (found: {', '.join(targets)})")
    for name in ("socket", "ca_file"):
        if name in values:
            values[name] = data_dir / values[name]
    values.setdefault("lhlo_domain", hostname)
    if "socket" in values:
        # A Unix socket has no TLS (the LMTP agent never starts it there), so a tls mode
        # other than none would promise protection that is not given.
        if values.get("tls", "none") != "none":
            raise table.error(
                "tls",
                f"{quote(values['tls'])} is not possible with socket (a Unix socket has no TLS;"
                ' set "none" or leave tls out)',
            )
        values["tls"] = "none"
    lmtp = LmtpSettings(**values)
    for name in _LMTP_TLS_ONLY:
        if name not in values:
            continue
        if lmtp.socket is not None:
            raise table.error(name, "only meaningful with address (a Unix socket has no TLS)")
        if lmtp.tls == "none":
            raise table.error(name, 'only meaningful when tls is not "none"')
    return lmtp


def _read_routes(
    table: Table, local: LocalSettings, lmtp: LmtpSettings | None
) -> dict[str, DeliveryRoute]:
    routes: dict[str, DeliveryRoute] = {}
    for raw in table.names():
        try:
            key = normalize_mailbox(raw) if "@" in raw else normalize_domain(raw)
            route: DeliveryRoute = one_of(*DELIVERY_ROUTES)(table.value(raw, (str,), "a string"))
        except ValueError as exc:
            raise table.error(raw, str(exc)) from exc
        if "@" in key and key not in local.mailboxes and key not in local.aliases:
            problem = f"{quote(key)} is not in local.mailboxes or local.aliases"
        elif "@" not in key and key not in local.domains:
            problem = f"domain {quote(key)} is not in local.domains"
        elif key in routes:
            problem = f"duplicate route {quote(key)} (routes are case-insensitive)"
        elif route == "lmtp" and lmtp is None:
            problem = '"lmtp" needs a [delivery.lmtp] table'
        else:
            routes[key] = route
            continue
        raise table.error(raw, problem)
    return routes


def _read_delivery(
    table: Table, local: LocalSettings, data_dir: Path, hostname: str
) -> DeliverySettings:
    values = read_section(table, _DELIVERY)
    lmtp_table: Table | None = values.pop("lmtp", None)
    routes_table: Table = values.pop("routes", table.table("routes"))
    lmtp = _read_lmtp(lmtp_table, data_dir, hostname) if lmtp_table is not None else None
    if values.get("default") == "lmtp" and lmtp is None:
        raise table.error("default", '"lmtp" needs a [delivery.lmtp] table')
    routes = _read_routes(routes_table, local, lmtp)
    return DeliverySettings(**values, lmtp=lmtp, routes=MappingProxyType(routes))


def _read_oauth(table: Table, data_dir: Path) -> OAuthSettings:
    values = read_section(table, _OAUTH)
    sources = [name for name in _OAUTH_SOURCES if name in values]
    message = f"exactly one of {', '.join(_OAUTH_SOURCES)} must be set"
    if not sources:
        raise table.whole_table_error(message)
    if len(sources) > 1:
        # The second one is named: in file order, it is where the mistake starts.
        raise table.error(sources[1], f"{message} (found: {', '.join(sources)})")
    for name in ("jwks_file", "introspection_client_secret_file"):
        if name in values:
            values[name] = data_dir / values[name]
    oauth = OAuthSettings(**values)
    if not oauth.algorithms:
        raise table.error("algorithms", "must name at least one algorithm")
    # SECURITY: a JWKS served over http lets anyone on the path substitute their own keys
    # and mint tokens for every account; it takes an explicit, logged opt-in.
    jwks_url = oauth.jwks_url or ""
    if jwks_url.startswith("http://") and not oauth.allow_insecure_jwks_url:
        raise table.error(
            "jwks_url",
            f"{quote(jwks_url)} is not https; it needs auth.oauth.allow_insecure_jwks_url = true",
        )
    client = ("introspection_client_id", "introspection_client_secret_file")
    if oauth.introspection_url is not None:
        # RFC 7662 §2.1: the endpoint MUST require the caller to authenticate.
        for name in client:
            if name not in values:
                raise table.error(name, "missing (required with introspection_url)")
        return oauth
    for name in client:
        if name in values:
            raise table.error(name, "only meaningful with introspection_url")
    # SECURITY: a JWT checked without iss/aud would accept any token the key set signs,
    # including ones minted for other services (RFC 8725 §3.8, §3.9).
    for name in ("issuer", "audience"):
        if name not in values:
            raise table.error(name, f"missing (required with {sources[0]})")
    return oauth


def _read_auth(table: Table, data_dir: Path) -> AuthSettings:
    values = read_section(table, _AUTH)
    oauth_table: Table | None = values.pop("oauth", None)
    values["accounts_file"] = data_dir / values.get("accounts_file", DEFAULT_ACCOUNTS_FILE_NAME)
    oauth = _read_oauth(oauth_table, data_dir) if oauth_table is not None else None
    auth = AuthSettings(**values, oauth=oauth)
    if not auth.mechanisms:
        raise table.error("mechanisms", "must name at least one mechanism")
    if auth.max_delay < auth.base_delay:
        raise table.error("max_delay", "must not be less than auth.base_delay")
    return auth


def _build(
    document: Mapping[str, object],
    source: Path | None,
    config_dir: Path,
    data_dir_override: Path | None,
) -> Config:
    root = Table(source, "", document)
    root.check_keys(_SECTIONS)
    server = _read_server(root.table("server"), config_dir, data_dir_override)
    limits = _read_limits(root.table("limits"))
    tls = _read_tls(root.table("tls"), server.data_dir)
    listeners = _read_listeners(root.table("listener"))
    local = _read_local(root.table("local"), server.data_dir)
    return Config(
        server=server,
        limits=limits,
        tls=tls,
        listeners=listeners,
        local=local,
        queue=_read_queue(root.table("queue")),
        delivery=_read_delivery(root.table("delivery"), local, server.data_dir, server.hostname),
        auth=_read_auth(root.table("auth"), server.data_dir),
        log=LogSettings(**read_section(root.table("log"), _LOG)),
        source=source,
    )


def load_config(path: Path, *, data_dir_override: Path | None = None) -> Config:
    """Read and validate a `postguard.toml`.

    Args:
        path: The config file. Errors name it as given.
        data_dir_override: Use this data directory instead of ``server.data_dir`` (relative
            to the working directory), e.g. from a command-line option.

    Returns:
        The validated configuration, with ``source`` set to ``path``.

    Raises:
        ConfigError: The file is missing or unreadable, is not valid TOML, has an unknown
            key, a value of the wrong type or out of range, or contradictory settings.
    """
    return _build(read_toml(path), path, path.parent, data_dir_override)


def default_config(data_dir: Path) -> Config:
    """Build the configuration postguard uses when no file is given.

    Args:
        data_dir: The data directory (made absolute against the working directory).

    Returns:
        A configuration equal to loading an empty file with this data directory; its
        ``source`` is None.
    """
    return _build({}, None, Path(), data_dir)
