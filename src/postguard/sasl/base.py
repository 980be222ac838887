"""The SASL contract: the steps a server mechanism returns, the results the caller feeds back,
the two mechanism protocols, and the errors. (The shared implementation is ``mechanism.py``.)

Theory of operation
-------------------
A server mechanism is a pure state machine. The session drives it (RFC 4954 §4):

1. ``step = mech.start(initial_response)`` — ``None`` when ``AUTH <name>`` carried no initial
   response, ``b""`` when it carried ``=`` (an empty one), else the base64-decoded bytes.
2. Then, until the step is :class:`Success` or :class:`Failure`:

   * :class:`Challenge` → send ``334 <base64(data)>``; a ``*`` line cancels (501, session's
     job); otherwise ``step = mech.respond(base64-decoded line)``.
   * ``Need...`` → verify outside ``sasl`` (argon2, a credential store, an OAuth introspection;
     all async and I/O), then ``step = mech.resume(<matching result>)``. Any of them may be
     answered with :class:`VerifierUnavailable` when the store is down (→ ``454 4.7.0``).
3. :class:`Success` → ``235 2.7.0``; :class:`Failure` → the reply its :class:`FailureKind` names.

SMTP cannot carry "additional data with success" (RFC 4954 §4): a mechanism that ends with
server data (SCRAM's ``v=`` verifier) returns it as one more :class:`Challenge`, and only after
the client's empty response returns ``Success(account, None)``. So ``Success.final_data`` is
always ``None`` for every mechanism in this package; the field exists so a protocol with
success data (XMPP's ``<success/>``, RFC 6120 §6.4.6) can reuse the types.

Out-of-order calls (``respond`` while a ``Need...`` is pending, anything after the end) raise
:class:`SaslUsageError`: a bug in the caller, never the peer's doing. Whatever the peer sends,
a server mechanism returns a step and raises nothing else.

Must not: do I/O, read clocks or make randomness (STYLE.md §2) — nonces and the unknown-user
mock seed are injected; put secrets in ``repr``, exceptions or a :attr:`Failure.reason`
(reasons are constant strings, never peer data).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

# RFC 4954 §4: a client response line may be 12288 octets; base64 carries 3 octets per 4.
MAX_RESPONSE_OCTETS = 12288 // 4 * 3  # 9216
# RFC 4616 §2: servers "MUST accept up to 255 octets" per identity and password; we accept
# exactly that floor for every identity (and PLAIN/LOGIN passwords) in this package.
MAX_IDENTITY_OCTETS = 255


class SaslError(Exception):
    """Base class of the exceptions ``postguard.sasl`` raises."""


class SaslUsageError(SaslError):
    """A mechanism was driven out of order or with the wrong result type (a caller bug)."""


class SaslAuthenticationError(SaslError):
    """Client side: the server's messages are malformed or it failed to prove itself (SCRAM)."""


class FailureKind(enum.Enum):
    """Why an exchange failed, which fixes the SMTP reply (RFC 4954 §6, RFC 3463).

    * ``AUTH_FAILED`` → ``535 5.7.8`` (credentials invalid, unknown user, bad proof).
    * ``MALFORMED`` → ``501 5.5.2`` (the client broke the mechanism's syntax).
    * ``AUTHZ_DENIED`` → ``535 5.7.8`` (authenticated, but may not act as the authzid).
    * ``TEMPORARY`` → ``454 4.7.0`` (the verifier was unavailable; try again later).
    """

    AUTH_FAILED = "auth-failed"
    MALFORMED = "malformed"
    AUTHZ_DENIED = "authz-denied"
    TEMPORARY = "temporary"


# --- steps a server mechanism returns -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``334 <base64(data)>`` and pass the client's decoded answer to ``respond``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class NeedPassword:
    """Verify ``password`` for ``authcid``; answer with :class:`PasswordVerdict`.

    ``authzid`` is ``None`` or equal to ``authcid`` (anything else already failed).
    """

    authcid: str
    authzid: str | None
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NeedScramCredentials:
    """Look up the SCRAM credentials of ``username`` (SASLprepped); answer with ScramLookup."""

    username: str


@dataclass(frozen=True, slots=True)
class NeedCramSecret:
    """Look up the CRAM-MD5 shared secret of ``username``; answer with :class:`CramLookup`."""

    username: str


@dataclass(frozen=True, slots=True)
class NeedTokenValidation:
    """Validate an OAuth 2.0 bearer token; answer with :class:`TokenVerdict`.

    SECURITY: the validator must check that the token's subject may act as ``authzid`` (the
    XOAUTH2 ``user=`` or the OAUTHBEARER ``a=``); the mechanism cannot. ``host`` and ``port``
    are what the client claims to have connected to (RFC 7628 §3.1), or ``None``.
    """

    authzid: str | None
    token: str = field(repr=False)
    host: str | None = None
    port: int | None = None


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as ``account`` (``235 2.7.0``); ``final_data`` is always None in SMTP."""

    account: str
    final_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """The exchange failed. ``reason`` is for the log only: a constant, never a secret."""

    reason: str
    kind: FailureKind


Step: TypeAlias = (
    Challenge
    | NeedPassword
    | NeedScramCredentials
    | NeedCramSecret
    | NeedTokenValidation
    | Success
    | Failure
)

# --- results the caller feeds back through ``resume`` --------------------------------------


@dataclass(frozen=True, slots=True)
class PasswordVerdict:
    """Answer to :class:`NeedPassword`: the account on success, ``None`` when wrong/unknown."""

    account: str | None


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """One account's stored SCRAM-SHA-256 verifier (RFC 5802 §3), from :func:`scram_keys`."""

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    account: str

    def __post_init__(self) -> None:
        # RFC 7677 §4: at least 4096 iterations; SHA-256 keys are 32 octets.
        if not self.salt or self.iterations < 4096:
            raise ValueError("SCRAM credentials need a salt and at least 4096 iterations")
        if len(self.stored_key) != 32 or len(self.server_key) != 32 or not self.account:
            raise ValueError("SCRAM credentials need 32-octet keys and an account")


@dataclass(frozen=True, slots=True)
class ScramLookup:
    """Answer to :class:`NeedScramCredentials`; ``None`` for an unknown user.

    An unknown user is not revealed: the exchange continues with mock credentials and fails
    only at the end, exactly like a wrong password.
    """

    credentials: ScramCredentials | None


@dataclass(frozen=True, slots=True)
class CramLookup:
    """Answer to :class:`NeedCramSecret`: the plaintext-equivalent secret and the account."""

    secret: str | None = field(repr=False)
    account: str | None


@dataclass(frozen=True, slots=True)
class TokenVerdict:
    """Answer to :class:`NeedTokenValidation`.

    ``account`` on success. On failure ``account`` is None and ``error`` is the JSON object sent
    to the client (RFC 7628 §3.2.2: ``status``, optional ``scope`` and
    ``openid-configuration``); ``None`` sends the mechanism's default.
    """

    account: str | None
    error: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.account is not None and self.error is not None:
            raise ValueError("a token verdict is a success or an error, not both")


@dataclass(frozen=True, slots=True)
class VerifierUnavailable:
    """Answer to any ``Need...`` when the verifier could not decide (store down): 454 4.7.0."""

    reason: str = "verifier unavailable"


Resumption: TypeAlias = (
    PasswordVerdict | ScramLookup | CramLookup | TokenVerdict | VerifierUnavailable
)

# --- the two protocols ---------------------------------------------------------------------


class SaslServerMechanism(Protocol):
    """The server half of one mechanism, for one AUTH exchange (create one per AUTH).

    Contract: ``start`` exactly once, first; then ``respond`` after each :class:`Challenge`
    and ``resume`` after each ``Need...``; nothing after :class:`Success` or :class:`Failure`.
    Any other order raises :class:`SaslUsageError`. Peer input never raises.
    """

    name: str

    def start(self, initial_response: bytes | None) -> Step:
        """Begin; ``None`` means no initial response, ``b""`` an empty one (``=``)."""
        ...

    def respond(self, data: bytes) -> Step:
        """Take the client's decoded answer to the last :class:`Challenge`."""
        ...

    def resume(self, result: Resumption) -> Step:
        """Take the caller's answer to the last ``Need...`` step."""
        ...


class SaslClientMechanism(Protocol):
    """The client half of one mechanism, for one AUTH exchange.

    Contract: optionally ``initial_response()`` first (a client that does not send it, e.g.
    because the AUTH line would exceed 512 octets, gets the same bytes back from the first
    ``respond(b"")``); ``respond`` for each 334 challenge; ``verify_final()`` on 235. Server
    misbehaviour raises :class:`SaslAuthenticationError`; misuse :class:`SaslUsageError`.
    """

    name: str

    def initial_response(self) -> bytes | None:
        """The initial response, or None when the server speaks first (LOGIN, CRAM-MD5)."""
        ...

    def respond(self, challenge: bytes) -> bytes:
        """Answer one decoded 334 challenge."""
        ...

    def verify_final(self, final_data: bytes | None = None) -> None:
        """Call on 235: raise :class:`SaslAuthenticationError` if the server is unproven."""
        ...
