"""Writing a commented `postguard.toml` that shows a configuration, key by key.

Owns `render_sample`: every key of the schema, with its current value and a comment saying
what it does, its units and allowed values. Loading the output gives back an equal `Config`
(the tests check this round trip), so ``postguard`` can write its defaults as a starting file.

Keys absent from the output on purpose, so that the round trip holds:
- unset optional keys (``server.user``, ``server.group``) appear commented out with an example;
- boolean weakenings (``allow_*`` in `weakenings.CATALOGUE`) appear commented out while false,
  under a ``# WEAKENS SECURITY:`` line; when a config turns one on it is written live;
- with no certificates, ``[[tls.certificate]]`` appears as a commented-out example;
- without ``[auth.oauth]`` (OAuth off), the table appears as a commented-out example;
- without ``[delivery.lmtp]`` (no LMTP server), so does that table;
- ``delivery.lmtp.lhlo_domain`` is commented out while it equals ``server.hostname`` (its
  default), so the file keeps following the host name when that is edited.

Must not: read or write files; the caller decides where the text goes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from postguard.config.schema import (
    DELIVERY_ROUTES,
    LMTP_TLS_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    OAUTH_ALGORITHMS,
    SASL_MECHANISMS,
    Config,
    LmtpSettings,
    OAuthSettings,
)
from postguard.config.syntax import format_address, quote
from postguard.config.units import format_duration, format_size
from postguard.config.weakenings import CATALOGUE

__all__ = ["render_sample"]

_HEADER = """\
# postguard.toml: configuration of the postguard SMTP server.
#
# Every key is shown with its current value; unknown keys are errors.
# Sizes are a whole number and a unit: B, KB, KiB, MB, MiB, GB, GiB (e.g. "50MiB").
# Durations are a whole number and a unit: ms, s, m, h, d (e.g. "30s").
# Settings marked WEAKENS SECURITY are commented out while off; postguard logs a WARNING
# at start-up for each one in effect."""

_WEAKENS = {rule.key: rule.explanation for rule in CATALOGUE}


def _strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(quote(value) for value in values) + "]"


def _boolean(value: bool) -> str:
    return "true" if value else "false"


def _integer(value: int) -> str:
    return str(value)


def _size(value: int) -> str:
    return quote(format_size(value))


def _duration(value: float) -> str:
    return quote(format_duration(value))


def _path(value: Path) -> str:
    return quote(str(value))


def _addresses(value: tuple[tuple[str, int], ...]) -> str:
    return _strings(format_address(address) for address in value)


def _address(value: tuple[str, int]) -> str:
    return quote(format_address(value))


# (key, value formatter, comment); comments are one line each.
_Entry = tuple[str, Callable[[Any], str], str]

_SERVER: tuple[_Entry, ...] = (
    ("hostname", quote, "Host name used in the greeting, the EHLO reply and Received headers."),
    ("data_dir", _path, "Queue, spool and mail live here. Relative: to this file's directory."),
    ("user", quote, 'User to run as when started as root; unset means "nobody".'),
    ("group", quote, "Group to run as when started as root; unset means the user's group."),
    ("shutdown_grace", _duration, "On shutdown, time given to sessions and deliveries to end."),
    (
        "workers",
        _integer,
        "Processes serving the listeners (share the sockets and the queue); 1 per core at most.",
    ),
)
_LIMITS: tuple[_Entry, ...] = (
    ("max_message_size", _size, "Largest message accepted (a size; advertised as SIZE)."),
    ("max_recipients", _integer, "Most recipients per message (RFC 5321 asks for >= 100)."),
    ("idle_timeout", _duration, "Close a connection idle this long between transactions."),
    ("command_timeout", _duration, "Wait this long for the next command (RFC 5321: 5m)."),
    ("data_timeout", _duration, "Wait this long for each read of a message body (RFC 5321: 3m)."),
    ("max_connections", _integer, "Most concurrent connections, all listeners together."),
    ("max_connections_per_ip", _integer, "Most concurrent connections from one IP address."),
)
_TLS: tuple[_Entry, ...] = (
    ("min_version", quote, 'Lowest TLS version accepted: "1.2" or "1.3" (or a legacy one).'),
    ("allow_legacy_tls_versions", _boolean, 'Allow min_version "1.0" or "1.1".'),
    ("watch_interval", _duration, "How often certificate files are checked for changes."),
)
_CERTIFICATE = "Certificate chain (PEM) and its private key. Relative paths: to data_dir."
_ADDRESSES = 'Where: "IPv4:port", "[IPv6]:port", "localhost:port" or "*:port"; port 0 = any.'
_LISTENER_COMMON: tuple[_Entry, ...] = (
    ("enabled", _boolean, "Whether this listener runs."),
    ("addresses", _addresses, _ADDRESSES),
)
_LISTENER_EXTRA: dict[str, tuple[_Entry, ...]] = {
    "mx": (
        ("tls", lambda mode: quote(mode.value), 'STARTTLS: "opportunistic" or "required".'),
        ("auth", _boolean, "Offer AUTH here too (MX is server-to-server; submission has it)."),
    ),
    "submission": (("allow_plaintext", _boolean, "Accept AUTH and MAIL before STARTTLS."),),
    "submissions": (),
}
_LISTENER_TITLES = {
    "mx": "Mail from other servers (port 25 in production). STARTTLS is offered.",
    "submission": "Mail from your users' clients (port 587). STARTTLS is required.",
    "submissions": "Mail from your users' clients over implicit TLS (port 465, RFC 8314).",
}
_LOCAL: tuple[_Entry, ...] = (
    ("domains", _strings, "Domains delivered here (lowercase; IDNs as xn--)."),
    ("mailboxes", _strings, "Addresses with a mailbox; each in one of the domains above."),
    ("maildir_root", _path, "One Maildir per mailbox under here. Relative paths: to data_dir."),
    (
        "mailbox_quota",
        _size,
        'Most a Maildir may hold; a delivery past it bounces (552 5.2.2). "0B": no quota.',
    ),
)
_AUTH: tuple[_Entry, ...] = (
    (
        "accounts_file",
        _path,
        "Accounts (TOML, managed with `postguard user`). Relative paths: to data_dir.",
    ),
    ("received_shows_identity", _boolean, "Name the authenticated user in Received headers."),
    ("mechanisms", _strings, f"SASL mechanisms that may be offered: {', '.join(SASL_MECHANISMS)}."),
    (
        "max_failures_per_ip",
        _integer,
        "Failed AUTHs from one IP address in failure_window that lock it out.",
    ),
    (
        "max_failures_per_account",
        _integer,
        "Failed AUTHs for one account in failure_window that lock it out.",
    ),
    ("failure_window", _duration, "Failures count within this window."),
    ("lockout", _duration, "How long a locked-out address or account is refused."),
    ("base_delay", _duration, "A failed AUTH is answered after this delay, doubled each time..."),
    ("max_delay", _duration, "... up to this delay."),
)
_QUEUE: tuple[_Entry, ...] = (
    ("first_retry", _duration, "First retry this long after a failed attempt; doubles after..."),
    ("max_backoff", _duration, "... up to this (at least first_retry)."),
    ("max_lifetime", _duration, "Mail still undelivered after this long is returned to sender."),
    ("delay_warning", _duration, 'Tell the sender after mail has waited this long; "0s": never.'),
    (
        "min_free_disk",
        _size,
        'Below this free space on the queue\'s disk, new mail gets 452; "0B": no reserve.',
    ),
    ("concurrency", _integer, "Deliveries in flight at once."),
    (
        "per_destination_concurrency",
        _integer,
        "Deliveries in flight to one mailbox (maildir) or server (lmtp); <= concurrency.",
    ),
    ("lease", _duration, "After a crash, claimed mail is retried by others after this long."),
    ("scan_interval", _duration, "How often the queue is checked for due mail and changes."),
    (
        "group_commit",
        _boolean,
        "Share one fsync among concurrent commits; false (one each) is for benchmarks.",
    ),
)
_ROUTES = " or ".join(quote(route) for route in DELIVERY_ROUTES)
_DELIVERY: tuple[_Entry, ...] = (
    ("default", quote, f"Route for local recipients not in [delivery.routes]: {_ROUTES}."),
)
_LMTP_TLS = f'STARTTLS: {", ".join(map(quote, LMTP_TLS_MODES))} (a Unix socket: only "none").'
_LMTP: tuple[_Entry, ...] = (
    ("address", _address, 'TCP server: "IPv4:port", "[IPv6]:port" or "localhost:port".'),
    ("socket", _path, "Or: a Unix socket. Relative paths: to data_dir."),
    ("tls", quote, _LMTP_TLS),
    ("ca_file", _path, "CA certificates (PEM) for the server; unset: the system's."),
    ("server_name", quote, "Name in the server's certificate; unset: the address's host."),
)
_LMTP_TITLE = (
    'LMTP server (RFC 2033), e.g. Dovecot, for the "lmtp" route; without it, no such route.'
)
_OAUTH: tuple[_Entry, ...] = (
    ("jwks_file", _path, "A local JSON Web Key Set. Relative paths: to data_dir."),
    ("jwks_url", quote, "Or: the URL of the JSON Web Key Set (https)."),
    ("allow_insecure_jwks_url", _boolean, "Allow an http:// jwks_url."),
    ("issuer", quote, 'Required "iss" of tokens (required with jwks_file or jwks_url).'),
    ("audience", quote, 'Required "aud" of tokens (required with jwks_file or jwks_url).'),
    (
        "algorithms",
        _strings,
        f"Token signature algorithms accepted: {', '.join(OAUTH_ALGORITHMS)}.",
    ),
    ("identity_claim", quote, "Claim holding the address of the account the token is for."),
    ("introspection_url", quote, "Or: an RFC 7662 token introspection endpoint (https)."),
    ("introspection_client_id", quote, "Client id for the introspection endpoint."),
    ("introspection_client_secret_file", _path, "File holding its client secret (one line)."),
    (
        "cache_ttl",
        _duration,
        "Validated tokens, keys and introspection answers are reused this long.",
    ),
)
_OAUTH_TITLE = (
    "OAuth 2.0 bearer tokens (OAUTHBEARER, XOAUTH2); without this table they are not offered."
)
_LOG: tuple[_Entry, ...] = (
    ("format", quote, f"Log format: {', '.join(LOG_FORMATS)}."),
    ("level", quote, f"Least severe level logged: {', '.join(LOG_LEVELS)}."),
)
_EXAMPLES = {
    "server.user": '"postguard"',
    "server.group": '"postguard"',
    "auth.oauth.jwks_file": '"oauth/jwks.json"',
    "auth.oauth.jwks_url": '"https://idp.example.org/.well-known/jwks.json"',
    "auth.oauth.issuer": '"https://idp.example.org"',
    "auth.oauth.audience": '"smtp.example.org"',
    "auth.oauth.introspection_url": '"https://idp.example.org/oauth2/introspect"',
    "auth.oauth.introspection_client_id": '"postguard"',
    "auth.oauth.introspection_client_secret_file": '"oauth/client-secret"',
    "delivery.lmtp.address": '"127.0.0.1:24"',
    "delivery.lmtp.socket": '"/run/dovecot/lmtp"',
    "delivery.lmtp.ca_file": '"certs/lmtp-ca.pem"',
    "delivery.lmtp.server_name": '"lmtp.example.org"',
}


def _relative(path: Path, base: Path) -> Path:
    """Write ``path`` relative to ``base`` when it lies under it, as the loader resolves it."""
    return path.relative_to(base) if path.is_relative_to(base) else path


class _Writer:
    """Accumulates the sample's lines: table headers, comments and keys."""

    def __init__(self) -> None:
        self.lines: list[str] = [_HEADER]

    def table(self, header: str, comment: str | None = None) -> None:
        self.lines.append("")
        if comment:
            self.lines.append(f"# {comment}")
        self.lines.append(header)

    def entries(
        self, table: str, settings: object, entries: Iterable[_Entry], *, commented: bool = False
    ) -> None:
        """Write each key with the comment above it; ``commented`` comments out every key."""
        for name, render, comment in entries:
            key = f"{table}.{name}"
            value = getattr(settings, name)
            self.lines.append(f"# {comment}")
            if key in _WEAKENS:
                self.lines.append(f"# WEAKENS SECURITY: {_WEAKENS[key]}")
            if value is None:
                self.lines.append(f"# {name} = {_EXAMPLES[key]}")
            elif value is False and key in _WEAKENS:
                self.lines.append(f"# {name} = false")
            else:
                self.lines.append(f"{'# ' if commented else ''}{name} = {render(value)}")


def _render_auth(out: _Writer, config: Config) -> None:
    data_dir = config.server.data_dir
    auth = replace(config.auth, accounts_file=_relative(config.auth.accounts_file, data_dir))
    out.table(
        "[auth]", "SMTP AUTH (RFC 4954): submission, submissions, and mx if listener.mx.auth is on."
    )
    out.entries("auth", auth, _AUTH)
    if auth.oauth is None:
        out.lines += [
            "",
            f"# {_OAUTH_TITLE}",
            "# Set exactly one of jwks_file, jwks_url and introspection_url.",
            "# [auth.oauth]",
        ]
        out.entries("auth.oauth", OAuthSettings(), _OAUTH, commented=True)
        return
    jwks_file, secret_file = auth.oauth.jwks_file, auth.oauth.introspection_client_secret_file
    oauth = replace(
        auth.oauth,
        jwks_file=None if jwks_file is None else _relative(jwks_file, data_dir),
        introspection_client_secret_file=(
            None if secret_file is None else _relative(secret_file, data_dir)
        ),
    )
    out.table("[auth.oauth]", _OAUTH_TITLE)
    out.entries("auth.oauth", oauth, _OAUTH)


def _render_delivery(out: _Writer, config: Config) -> None:
    data_dir, hostname = config.server.data_dir, config.server.hostname
    delivery = config.delivery
    out.table("[delivery]", "How mail for local recipients reaches their mailbox.")
    out.entries("delivery", delivery, _DELIVERY)
    lhlo = "Our name in LHLO; unset means server.hostname."
    if delivery.lmtp is None:
        out.lines += [
            "",
            f"# {_LMTP_TITLE}",
            "# Set exactly one of address and socket.",
            "# [delivery.lmtp]",
        ]
        example = LmtpSettings(address=("127.0.0.1", 24), lhlo_domain=hostname)
        out.entries("delivery.lmtp", example, _LMTP, commented=True)
        out.lines += [f"# {lhlo}", f"# lhlo_domain = {quote(hostname)}"]
    else:
        socket, ca_file = delivery.lmtp.socket, delivery.lmtp.ca_file
        lmtp = replace(
            delivery.lmtp,
            socket=None if socket is None else _relative(socket, data_dir),
            ca_file=None if ca_file is None else _relative(ca_file, data_dir),
        )
        out.table("[delivery.lmtp]", _LMTP_TITLE)
        out.entries("delivery.lmtp", lmtp, _LMTP)
        commented = "# " if lmtp.lhlo_domain == hostname else ""
        out.lines += [f"# {lhlo}", f"{commented}lhlo_domain = {quote(lmtp.lhlo_domain)}"]
    out.table(
        "[delivery.routes]",
        f"Local domain or address = route ({_ROUTES}); an address's own route comes first.",
    )
    out.lines += [f"{quote(key)} = {quote(route)}" for key, route in delivery.routes.items()]


def render_sample(config: Config) -> str:
    """Render ``config`` as a commented `postguard.toml`.

    Args:
        config: The configuration to show, e.g. `default_config(data_dir)`.

    Returns:
        TOML text that `load_config` reads back into a `Config` equal to ``config``.
    """
    data_dir = config.server.data_dir
    out = _Writer()
    out.table("[server]")
    out.entries("server", config.server, _SERVER)
    out.table("[limits]", "Budgets that keep one client from exhausting the server.")
    out.entries("limits", config.limits, _LIMITS)
    out.table("[tls]")
    out.entries("tls", config.tls, _TLS)
    if not config.tls.certificates:
        out.lines += [
            "",
            "# Certificates to serve, one [[tls.certificate]] table each; with none, postguard",
            "# generates development certificates that clients will not trust.",
            f"# {_CERTIFICATE}",
            "# [[tls.certificate]]",
            '# cert = "certs/mail.example.org.pem"',
            '# key = "certs/mail.example.org.key"',
        ]
    for certificate in config.tls.certificates:
        out.table("[[tls.certificate]]", _CERTIFICATE)
        out.lines.append(f"cert = {quote(str(_relative(certificate.cert, data_dir)))}")
        out.lines.append(f"key = {quote(str(_relative(certificate.key, data_dir)))}")
    for listener in config.listeners:
        out.table(f"[listener.{listener.name}]", _LISTENER_TITLES[listener.name])
        table = f"listener.{listener.name}"
        out.entries(table, listener, _LISTENER_COMMON + _LISTENER_EXTRA[listener.name])
    out.table("[local]", "Local delivery.")
    local = replace(config.local, maildir_root=_relative(config.local.maildir_root, data_dir))
    out.entries("local", local, _LOCAL)
    out.table("[local.aliases]", "Alias address = mailbox it delivers to (a local mailbox).")
    out.lines += [f"{quote(alias)} = {quote(target)}" for alias, target in local.aliases.items()]
    out.table("[queue]", "The mail queue: retries, how long mail may wait, deliveries at once.")
    out.entries("queue", config.queue, _QUEUE)
    _render_delivery(out, config)
    _render_auth(out, config)
    out.table("[log]")
    out.entries("log", config.log, _LOG)
    return "\n".join(out.lines) + "\n"
