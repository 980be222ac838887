"""Loading `postguard.toml` into a validated `Config`.

Owns reading the file (tomllib), checking every key against the schema, converting values
(units, paths, addresses) and the checks that span keys (legacy TLS needs its opt-in, aliases
point at mailboxes, two listeners never share a socket). Every failure is a `ConfigError`
naming the file and the dotted key path.

Theory of operation: `Table` is a typed accessor over one TOML table that knows its key path
and rejects keys it was not told about. Each section is a table of ``key -> reader``; a
reader converts one value (or raises at that key), and keys present in the file replace the
dataclass defaults in `schema.py`. Sections with relations between keys (`[tls]`,
`[listener.*]`, `[local]`) get a short check after the table-driven read.

Paths: ``server.data_dir`` is relative to the config file's directory; other relative paths
(``tls.certificate[i].cert``/``key``, ``local.maildir_root``) are relative to data_dir. All
paths in a `Config` are absolute. Certificate files are not opened here: they may be
provisioned after start-up, and `tls/` reports a missing or bad file when it loads them.

Must not: open sockets, touch the data directory, or log. Start-up warnings for weakenings
come from `weakenings.py`.
"""

from __future__ import annotations

import dataclasses
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
    DEFAULT_LISTENERS,
    DEFAULT_MAILDIR_NAME,
    LEGACY_TLS_VERSIONS,
    LISTENER_NAMES,
    LOG_FORMATS,
    LOG_LEVELS,
    TLS_VERSIONS,
    CertificateSettings,
    Config,
    LimitsSettings,
    ListenerSettings,
    LocalSettings,
    LogSettings,
    ServerSettings,
    TlsMode,
    TlsSettings,
)
from postguard.config.syntax import (
    addresses_conflict,
    format_address,
    normalize_domain,
    normalize_mailbox,
    parse_address,
    quote,
)
from postguard.config.units import parse_duration, parse_size

__all__ = ["default_config", "load_config"]

_SECTIONS = ("server", "limits", "tls", "listener", "local", "log")
_path = string(lambda text: Path(non_empty(text)))

_SERVER: Mapping[str, Reader] = {
    "hostname": string(normalize_domain),
    "data_dir": _path,
    "user": string(non_empty),
    "group": string(non_empty),
    "shutdown_grace": quantity(parse_duration, "duration", "30s", positive=False),
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
}
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
    if not values and "aliases" not in table:
        return LocalSettings(maildir_root=maildir_root)
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
    )


def _build(
    document: Mapping[str, object],
    source: Path | None,
    config_dir: Path,
    data_dir_override: Path | None,
) -> Config:
    root = Table(source, "", document)
    root.check_keys(_SECTIONS)
    server = _read_server(root.table("server"), config_dir, data_dir_override)
    return Config(
        server=server,
        limits=_read_limits(root.table("limits")),
        tls=_read_tls(root.table("tls"), server.data_dir),
        listeners=_read_listeners(root.table("listener")),
        local=_read_local(root.table("local"), server.data_dir),
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
