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

from postguard.config.units import DAYS, HOURS, MILLISECONDS, MINUTES, SECONDS, MiB

__all__ = [
    "DEFAULT_LISTENERS",
    "DELIVERY_ROUTES",
    "LEGACY_TLS_VERSIONS",
    "LISTENER_NAMES",
    "LMTP_TLS_MODES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "OAUTH_ALGORITHMS",
    "SASL_MECHANISMS",
    "TLS_VERSIONS",
    "AuthSettings",
    "CertificateSettings",
    "Config",
    "DeliveryRoute",
    "DeliverySettings",
    "LimitsSettings",
    "ListenerSettings",
    "LmtpSettings",
    "LmtpTlsMode",
    "LocalSettings",
    "LogSettings",
    "OAuthSettings",
    "QueueSettings",
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

DeliveryRoute = Literal["maildir", "lmtp"]
DELIVERY_ROUTES: tuple[DeliveryRoute, ...] = ("maildir", "lmtp")
LmtpTlsMode = Literal["opportunistic", "required", "none"]
LMTP_TLS_MODES: tuple[LmtpTlsMode, ...] = ("opportunistic", "required", "none")

DEFAULT_HOSTNAME = "localhost"
DEFAULT_SHUTDOWN_GRACE = 30 * SECONDS
MAX_WORKERS = 256  # processes per server (server/balance.py keeps one slot each)
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
DEFAULT_ACCOUNTS_FILE_NAME = "accounts.toml"

# SASL mechanisms postguard implements, strongest first; the default offers all of them (each
# only where it can work: OAuth ones need [auth.oauth], CRAM-MD5 an account with a secret).
SASL_MECHANISMS = (
    "SCRAM-SHA-256-PLUS",  # RFC 7677 with channel binding (RFC 5802 §6, RFC 9266)
    "SCRAM-SHA-256",  # RFC 7677
    "OAUTHBEARER",  # RFC 7628
    "XOAUTH2",  # Google's pre-standard bearer-token mechanism, still what many clients send
    "CRAM-MD5",  # RFC 2195; needs a plaintext-equivalent secret
    "PLAIN",  # RFC 4616
    "LOGIN",  # draft-murchison-sasl-login
)
# JWS algorithms accepted for OAuth access tokens (RFC 7518 §3.3/§3.4, RFC 8037 §3.1). No
# HS* (a shared secret is not a public key) and never "none".
OAUTH_ALGORITHMS = ("RS256", "ES256", "EdDSA")
DEFAULT_OAUTH_IDENTITY_CLAIM = "email"
DEFAULT_OAUTH_CACHE_TTL = 5 * MINUTES
# Brute-force defaults: 10 failures per client address and 20 per account in 15 minutes lock
# that address or account out for 15 minutes. Each failure is answered after a delay that
# doubles from 250 ms up to 10 s (250 ms * 2**5 = 8 s is the last step below the cap).
DEFAULT_MAX_FAILURES_PER_IP = 10
DEFAULT_MAX_FAILURES_PER_ACCOUNT = 20
DEFAULT_FAILURE_WINDOW = 15 * MINUTES
DEFAULT_LOCKOUT = 15 * MINUTES
DEFAULT_BASE_DELAY = 250 * MILLISECONDS
DEFAULT_MAX_DELAY = 10 * SECONDS
# Retry timing after Postfix: minimal_backoff_time 300s, maximal_backoff_time 4000s,
# maximal_queue_lifetime 5d. Postfix leaves delay_warning_time off by default; postguard
# sends delay notices (RFC 3461 NOTIFY=DELAY) after 4 hours, as queue/schedule.py does.
DEFAULT_FIRST_RETRY = 5 * MINUTES
DEFAULT_MAX_BACKOFF = 4000 * SECONDS
DEFAULT_MAX_LIFETIME = 5 * DAYS
DEFAULT_DELAY_WARNING = 4 * HOURS
# Headroom kept free on the queue's filesystem: below it new mail gets 452 4.3.1 (RFC 3463
# X.3.1 "mail system full") rather than a 250 for a message that might not fit. 100 MiB is
# two default-maximum (50 MiB) messages.
DEFAULT_MIN_FREE_DISK = 100 * MiB
# Local delivery is disk- or LMTP-bound; per destination (one mailbox, or one LMTP server)
# fewer are in flight, so one slow destination cannot take every slot.
DEFAULT_CONCURRENCY = 20
DEFAULT_PER_DESTINATION_CONCURRENCY = 5
# After a crash a leased recipient is claimable again once its lease has passed. Delivery is
# at-least-once: a lease shorter than a delivery attempt lets a slow delivery happen twice.
DEFAULT_LEASE = 10 * MINUTES
DEFAULT_SCAN_INTERVAL = 1 * SECONDS


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """``[server]``: identity, storage and process settings.

    Attributes:
        hostname: Name used in the greeting, EHLO reply and Received headers.
        data_dir: Absolute directory for queue, spool and mail.
        user: User to drop privileges to when started as root; None means ``nobody``.
        group: Group to drop privileges to; None means the user's primary group.
        shutdown_grace: Seconds to let sessions and deliveries finish on shutdown.
        workers: Processes serving the listeners; they share the listening sockets and
            the queue store (leases keep their deliveries apart).
    """

    hostname: str = DEFAULT_HOSTNAME
    data_dir: Path
    user: str | None = None
    group: str | None = None
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    workers: int = 1


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
        auth: Whether the listener offers AUTH. Settable only for mx (default off); always
            true for submission and submissions, where AUTH is required before MAIL.
    """

    name: str
    enabled: bool
    addresses: tuple[tuple[str, int], ...]
    tls: TlsMode
    allow_plaintext: bool = False
    auth: bool = False


LISTENER_NAMES = ("mx", "submission", "submissions")
DEFAULT_LISTENERS = (
    ListenerSettings(
        name="mx", enabled=True, addresses=(("127.0.0.1", 2525),), tls=TlsMode.OPPORTUNISTIC
    ),
    ListenerSettings(
        name="submission",
        enabled=True,
        addresses=(("127.0.0.1", 2587),),
        tls=TlsMode.REQUIRED,
        auth=True,
    ),
    ListenerSettings(
        name="submissions",
        enabled=True,
        addresses=(("127.0.0.1", 2465),),
        tls=TlsMode.IMPLICIT,
        auth=True,
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
        mailbox_quota: Octets one Maildir may hold (0: no quota); a delivery that would
            exceed it bounces with 552 5.2.2.
    """

    domains: tuple[str, ...] = ("localhost",)
    mailboxes: tuple[str, ...] = ("test@localhost",)
    aliases: Mapping[str, str] = field(default_factory=_default_aliases, hash=False)
    maildir_root: Path
    mailbox_quota: int = 0


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
class OAuthSettings:
    """``[auth.oauth]``: validating OAuth 2.0 bearer tokens (OAUTHBEARER, XOAUTH2).

    Exactly one source of truth is set: a local JWKS file, a JWKS URL (tokens are JWTs whose
    signature, ``iss``, ``aud`` and ``exp`` are checked locally), or a token introspection
    endpoint (RFC 7662). The loader enforces this, and that a JWKS source comes with
    ``issuer`` and ``audience``.

    Attributes:
        jwks_file: Absolute path of a JSON Web Key Set (RFC 7517 §5).
        jwks_url: ``https://`` URL of a JWKS; ``http://`` needs `allow_insecure_jwks_url`.
        allow_insecure_jwks_url: Accept an ``http://`` jwks_url (a weakening: whoever can
            alter the response can mint tokens).
        issuer: Required ``iss`` claim.
        audience: Required ``aud`` claim (one of its values).
        algorithms: JWS ``alg`` values accepted, a non-empty subset of `OAUTH_ALGORITHMS`.
        identity_claim: Claim holding the address that names the account (`find_by_address`).
        introspection_url: ``https://`` URL of an RFC 7662 introspection endpoint.
        introspection_client_id: Client id postguard authenticates to the endpoint with.
        introspection_client_secret_file: Absolute path of a file holding the client secret
            (the secret itself never appears in the config).
        cache_ttl: Seconds a validated token, a fetched JWKS or an introspection answer is
            reused; 0 means no caching.
    """

    jwks_file: Path | None = None
    jwks_url: str | None = None
    allow_insecure_jwks_url: bool = False
    issuer: str | None = None
    audience: str | None = None
    algorithms: tuple[str, ...] = OAUTH_ALGORITHMS
    identity_claim: str = DEFAULT_OAUTH_IDENTITY_CLAIM
    introspection_url: str | None = None
    introspection_client_id: str | None = None
    introspection_client_secret_file: Path | None = None
    cache_ttl: float = DEFAULT_OAUTH_CACHE_TTL


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    """``[auth]``: SMTP AUTH (RFC 4954) on the listeners that offer it.

    Attributes:
        accounts_file: Absolute path of the accounts file (`accounts.file_store`).
        received_shows_identity: Whether the Received header names the authenticated
            identity (off: only that the client authenticated, RFC 3848 ``ESMTPSA``).
        mechanisms: SASL mechanisms that may be offered, a subset of `SASL_MECHANISMS` in
            the configured order. A mechanism is offered only where it can work (see there).
        max_failures_per_ip: Failed AUTH attempts from one client address within
            `failure_window` before that address is locked out.
        max_failures_per_account: Failed AUTH attempts for one account within
            `failure_window` before the account is locked out.
        failure_window: Seconds over which failures are counted.
        lockout: Seconds a locked-out address or account is refused.
        base_delay: Seconds the first failure is answered after; each further failure
            doubles it.
        max_delay: Upper bound of that delay, in seconds.
        oauth: ``[auth.oauth]``; None means OAUTHBEARER and XOAUTH2 are not offered.
    """

    accounts_file: Path
    received_shows_identity: bool = False
    mechanisms: tuple[str, ...] = SASL_MECHANISMS
    max_failures_per_ip: int = DEFAULT_MAX_FAILURES_PER_IP
    max_failures_per_account: int = DEFAULT_MAX_FAILURES_PER_ACCOUNT
    failure_window: float = DEFAULT_FAILURE_WINDOW
    lockout: float = DEFAULT_LOCKOUT
    base_delay: float = DEFAULT_BASE_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    oauth: OAuthSettings | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSettings:
    """``[queue]``: retries, lifetimes and how much is delivered at once (times in s).

    Attributes:
        first_retry: Delay after the first failed attempt; it doubles per attempt (Postfix
            ``minimal_backoff_time``).
        max_backoff: Upper bound of that delay, at least `first_retry` (Postfix
            ``maximal_backoff_time``).
        max_lifetime: A message still undelivered after this long in the queue bounces
            (Postfix ``maximal_queue_lifetime``).
        delay_warning: Send a delay notice (RFC 3461 NOTIFY=DELAY) once a message has waited
            this long; 0 means never.
        min_free_disk: Bytes that must stay free on the queue's filesystem; below that, new
            mail is refused with 452 4.3.1. 0 means only a full disk refuses mail.
        concurrency: Deliveries in flight at once, all destinations together.
        per_destination_concurrency: Deliveries in flight to one destination (a mailbox for
            maildir, the server for lmtp), at most `concurrency`.
        lease: How long a claimed recipient stays leased; after a crash another worker may
            take it once this has passed.
        scan_interval: How often the queue manager looks for due work and operator changes.
        group_commit: Commit concurrent messages in one transaction (one fsync); false
            forces one transaction per message (for benchmarks; equally durable).
    """

    first_retry: float = DEFAULT_FIRST_RETRY
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_lifetime: float = DEFAULT_MAX_LIFETIME
    delay_warning: float = DEFAULT_DELAY_WARNING
    min_free_disk: int = DEFAULT_MIN_FREE_DISK
    concurrency: int = DEFAULT_CONCURRENCY
    per_destination_concurrency: int = DEFAULT_PER_DESTINATION_CONCURRENCY
    lease: float = DEFAULT_LEASE
    scan_interval: float = DEFAULT_SCAN_INTERVAL
    group_commit: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class LmtpSettings:
    """``[delivery.lmtp]``: the LMTP server (RFC 2033) the ``lmtp`` route delivers to.

    Exactly one of `address` and `socket` is set (the loader enforces this). On a Unix socket
    TLS is never used, so `tls` is ``"none"`` and `ca_file`/`server_name` are unset.

    Attributes:
        address: ``(host, port)`` of a TCP server; host is an IP literal (IPv6 unbracketed)
            or ``localhost``, port 1-65535.
        socket: Absolute path of a Unix socket.
        tls: ``"opportunistic"`` (STARTTLS when offered), ``"required"`` (no mail without
            it) or ``"none"`` (never; a weakening unless the server is on loopback).
        ca_file: Absolute path of the PEM CA bundle that verifies the server's certificate;
            None means the system trust store.
        server_name: Name (or IP) to verify in the server's certificate; None means the
            address's host.
        lhlo_domain: Our name in LHLO; the loader defaults it to ``server.hostname``.
    """

    address: tuple[str, int] | None = None
    socket: Path | None = None
    tls: LmtpTlsMode = "opportunistic"
    ca_file: Path | None = None
    server_name: str | None = None
    lhlo_domain: str


def _no_routes() -> Mapping[str, DeliveryRoute]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySettings:
    """``[delivery]``: how mail for local recipients reaches their mailbox.

    Attributes:
        default: Route for a local recipient with no entry in `routes`: ``"maildir"``
            (a Maildir under ``local.maildir_root``) or ``"lmtp"`` (needs `lmtp`).
        lmtp: ``[delivery.lmtp]``; None means the ``lmtp`` route is not available.
        routes: Lowercase local domain or address -> route (read-only mapping). Keys are
            domains in ``local.domains``, or addresses in ``local.mailboxes`` or
            ``local.aliases``.
    """

    default: DeliveryRoute = "maildir"
    lmtp: LmtpSettings | None = None
    routes: Mapping[str, DeliveryRoute] = field(default_factory=_no_routes, hash=False)

    def route_for(self, mailbox: str) -> DeliveryRoute:
        """Return the route for ``mailbox``: its own entry, else its domain's, else `default`.

        Args:
            mailbox: A recipient address (any case). Pass the address a route was configured
                for: an alias's route applies only when routing happens before the alias is
                expanded to its mailbox.

        Returns:
            ``"maildir"`` or ``"lmtp"``.
        """
        address = mailbox.lower()
        domain = address.rpartition("@")[2]
        return self.routes.get(address) or self.routes.get(domain) or self.default


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
        queue: ``[queue]``.
        delivery: ``[delivery]``.
        auth: ``[auth]``.
        log: ``[log]``.
        source: The file this was loaded from, None for built-in defaults. Provenance only:
            it does not take part in equality.
    """

    server: ServerSettings
    limits: LimitsSettings
    tls: TlsSettings
    listeners: tuple[ListenerSettings, ...]
    local: LocalSettings
    queue: QueueSettings
    delivery: DeliverySettings
    auth: AuthSettings
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
