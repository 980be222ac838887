"""The configuration schema: frozen dataclasses, and every default postguard ships with.

Owns the shape of a loaded configuration and its defaults. A `Config` is plain, immutable
data: other components receive the section they need (or a small options object built from
it, STYLE.md §3) and never read TOML themselves.

Theory of operation: `load.py` reads `postguard.toml` table by table; a key present in the
file replaces the dataclass default below, a key absent keeps it. So the defaults live here
and only here. By the time a `Config` exists every value has been checked and normalised
(paths absolute, domains and mailboxes lowercased); consumers need not re-validate.

Must not: do I/O, parse text, or raise `ConfigError` (that is `load.py`'s job).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from postguard.config.units import MINUTES, SECONDS, MiB

__all__ = [
    "DEFAULT_LISTENERS",
    "LEGACY_TLS_VERSIONS",
    "LISTENER_NAMES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "TLS_VERSIONS",
    "CertificateSettings",
    "Config",
    "LimitsSettings",
    "ListenerSettings",
    "LocalSettings",
    "LogSettings",
    "ServerSettings",
    "TlsMode",
    "TlsSettings",
]


class TlsMode(enum.Enum):
    """How a listener uses TLS."""

    OPPORTUNISTIC = "opportunistic"
    """STARTTLS offered, plaintext allowed: what RFC 3207 §4 expects of a public MX."""
    REQUIRED = "required"
    """STARTTLS offered and required before MAIL (530 5.7.0 otherwise)."""
    IMPLICIT = "implicit"
    """TLS from the first byte (RFC 8314 §3.3, port 465)."""


TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
# RFC 8996 deprecates TLS 1.0 and 1.1; they need tls.allow_legacy_tls_versions = true.
LEGACY_TLS_VERSIONS = ("1.0", "1.1")

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")

DEFAULT_HOSTNAME = "localhost"
DEFAULT_SHUTDOWN_GRACE = 30 * SECONDS
DEFAULT_MAX_MESSAGE_SIZE = 50 * MiB
# RFC 5321 §4.5.3.1.8: a server must be able to buffer at least 100 recipients.
DEFAULT_MAX_RECIPIENTS = 100
DEFAULT_IDLE_TIMEOUT = 5 * MINUTES
# RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for the next command.
DEFAULT_COMMAND_TIMEOUT = 5 * MINUTES
# RFC 5321 §4.5.3.2.5: 3 minutes per read ("DATA block") while the body is arriving.
DEFAULT_DATA_TIMEOUT = 3 * MINUTES
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_CONNECTIONS_PER_IP = 20
DEFAULT_CERT_WATCH_INTERVAL = 5 * SECONDS
DEFAULT_MAILDIR_NAME = "mail"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """``[server]``: identity, storage and process settings.

    Attributes:
        hostname: Name used in the greeting, EHLO reply and Received headers.
        data_dir: Absolute directory for queue, spool and mail.
        user: User to drop privileges to when started as root; None means ``nobody``.
        group: Group to drop privileges to; None means the user's primary group.
        shutdown_grace: Seconds to let sessions and deliveries finish on shutdown.
    """

    hostname: str = DEFAULT_HOSTNAME
    data_dir: Path
    user: str | None = None
    group: str | None = None
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsSettings:
    """``[limits]``: per-message and per-connection budgets (sizes in bytes, times in s).

    Attributes:
        max_message_size: Largest accepted message (advertised as SIZE, RFC 1870).
        max_recipients: Most RCPT TO per transaction.
        idle_timeout: Close a connection idle this long between transactions.
        command_timeout: Wait this long for the next command.
        data_timeout: Wait this long for each read inside DATA/BDAT.
        max_connections: Concurrent connections, all listeners together.
        max_connections_per_ip: Concurrent connections from one client address.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    data_timeout: float = DEFAULT_DATA_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateSettings:
    """One ``[[tls.certificate]]``: a PEM certificate chain and its private key (absolute)."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """``[tls]``: server-side TLS.

    Attributes:
        min_version: Lowest TLS version accepted, one of `TLS_VERSIONS`.
        allow_legacy_tls_versions: Permit `min_version` "1.0" or "1.1" (a weakening).
        certificates: Certificates to serve; empty means generated development certificates.
        watch_interval: How often certificate files are checked for changes, in seconds.
    """

    min_version: str = "1.2"
    allow_legacy_tls_versions: bool = False
    certificates: tuple[CertificateSettings, ...] = ()
    watch_interval: float = DEFAULT_CERT_WATCH_INTERVAL


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerSettings:
    """``[listener.<name>]``: one of the three SMTP listeners.

    Attributes:
        name: ``mx``, ``submission`` or ``submissions``.
        enabled: Whether the listener binds at all.
        addresses: ``(host, port)`` pairs; host is an IP literal, ``localhost`` or ``*``
            (all interfaces); port 0 means any free port.
        tls: TLS mode; settable only for mx, fixed for the other two.
        allow_plaintext: Submission only: accept AUTH and MAIL without STARTTLS (a weakening).
    """

    name: str
    enabled: bool
    addresses: tuple[tuple[str, int], ...]
    tls: TlsMode
    allow_plaintext: bool = False


LISTENER_NAMES = ("mx", "submission", "submissions")
DEFAULT_LISTENERS = (
    ListenerSettings(
        name="mx", enabled=True, addresses=(("127.0.0.1", 2525),), tls=TlsMode.OPPORTUNISTIC
    ),
    ListenerSettings(
        name="submission", enabled=True, addresses=(("127.0.0.1", 2587),), tls=TlsMode.REQUIRED
    ),
    ListenerSettings(
        name="submissions", enabled=True, addresses=(("127.0.0.1", 2465),), tls=TlsMode.IMPLICIT
    ),
)


def _default_aliases() -> Mapping[str, str]:
    return MappingProxyType({"postmaster@localhost": "test@localhost"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalSettings:
    """``[local]``: domains delivered here, their mailboxes and aliases.

    The defaults are a development set-up (``test@localhost``, with ``postmaster@localhost``
    aliased to it). They apply as a set: the loader uses them only when the file sets none of
    ``domains``, ``mailboxes`` and ``aliases``, so a real domain never inherits them.

    Attributes:
        domains: Lowercase domains whose mail is delivered locally.
        mailboxes: Lowercase addresses with a Maildir; each in one of `domains`.
        aliases: Lowercase alias address -> mailbox in `mailboxes` (read-only mapping).
        maildir_root: Absolute directory holding one Maildir per mailbox.
    """

    domains: tuple[str, ...] = ("localhost",)
    mailboxes: tuple[str, ...] = ("test@localhost",)
    aliases: Mapping[str, str] = field(default_factory=_default_aliases, hash=False)
    maildir_root: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """``[log]``: log output.

    Attributes:
        format: ``text`` for people, ``json`` for collectors.
        level: Least severe level written.
    """

    format: LogFormat = "text"
    level: LogLevel = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A complete, validated configuration.

    Attributes:
        server: ``[server]``.
        limits: ``[limits]``.
        tls: ``[tls]``.
        listeners: All three listeners, in the order mx, submission, submissions (disabled
            ones included, with ``enabled=False``).
        local: ``[local]``.
        log: ``[log]``.
        source: The file this was loaded from, None for built-in defaults. Provenance only:
            it does not take part in equality.
    """

    server: ServerSettings
    limits: LimitsSettings
    tls: TlsSettings
    listeners: tuple[ListenerSettings, ...]
    local: LocalSettings
    log: LogSettings
    source: Path | None = field(default=None, compare=False)

    def listener(self, name: str) -> ListenerSettings:
        """Return the listener called ``name`` (``mx``, ``submission`` or ``submissions``).

        Raises:
            KeyError: No listener has that name.
        """
        for listener in self.listeners:
            if listener.name == name:
                return listener
        raise KeyError(name)
