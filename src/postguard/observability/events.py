"""The closed catalogue of things postguard logs (Stalwart's ``trc`` idea).

Every log record names one of these events; metrics (later) count the same
names. Adding an event means adding it here, so the set stays reviewable.
"""

from __future__ import annotations

from enum import Enum


class SmtpEvent(Enum):
    """Session-level events."""

    CONNECTED = "smtp.connected"
    REJECTED_CONNECTION_LIMIT = "smtp.connection_limit"
    ACCEPT_FAILED = "smtp.accept_failed"
    COMMAND = "smtp.command"
    PROTOCOL_ERROR = "smtp.protocol_error"
    STARTTLS_INJECTION = "smtp.starttls_injection"
    MESSAGE_ACCEPTED = "smtp.message_accepted"
    MESSAGE_REJECTED = "smtp.message_rejected"
    MESSAGE_TOO_LARGE = "smtp.message_too_large"
    TIMEOUT = "smtp.timeout"
    TOO_MANY_ERRORS = "smtp.too_many_errors"
    DISCONNECTED = "smtp.disconnected"
    SESSION_CRASHED = "smtp.session_crashed"


class AuthEvent(Enum):
    """SMTP AUTH events (never with a password, token or SASL payload)."""

    SUCCEEDED = "auth.succeeded"
    FAILED = "auth.failed"
    BLOCKED = "auth.blocked"
    SENDER_REFUSED = "auth.sender_refused"
    ACCOUNTS_WARNING = "auth.accounts_warning"


class TlsEvent(Enum):
    """TLS events."""

    HANDSHAKE_DONE = "tls.handshake_done"
    HANDSHAKE_FAILED = "tls.handshake_failed"
    CERTIFICATES_RELOADED = "tls.certificates_reloaded"
    CERTIFICATE_RELOAD_FAILED = "tls.certificate_reload_failed"


class QueueEvent(Enum):
    """Queue and delivery events."""

    COMMITTED = "queue.committed"
    COMMIT_FAILED = "queue.commit_failed"
    RECOVERED = "queue.recovered"
    DELIVERED = "queue.delivered"
    DEFERRED = "queue.deferred"
    BOUNCED = "queue.bounced"
    QUARANTINED = "queue.quarantined"
    STORE_FAILED = "queue.store_failed"


class ServerEvent(Enum):
    """Process-level events."""

    STARTED = "server.started"
    LISTENING = "server.listening"
    WEAKENING = "server.weakening"
    PRIVILEGES_DROPPED = "server.privileges_dropped"
    SHUTDOWN_REQUESTED = "server.shutdown_requested"
    STOPPED = "server.stopped"
    WORKER_DIED = "server.worker_died"
    WORKER_STARTED = "server.worker_started"
    SPAWNER_DIED = "server.spawner_died"
