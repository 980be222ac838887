"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677; channel binding RFC 9266).

Theory of operation (RFC 5802 §5, as SMTP carries it)::

    C: AUTH SCRAM-SHA-256 base64(n,,n=user,r=<cnonce>)        start()   → NeedScramCredentials
    (caller looks up the stored keys)                          resume()  → Challenge(server-first)
    S: 334 base64(r=<cnonce><snonce>,s=<salt>,i=<iterations>)
    C: base64(c=<cbind>,r=<nonce>,p=<proof>)                  respond() → Challenge(v=<sig>)
    S: 334 base64(v=<server signature>)        SMTP has no success data (RFC 4954 §4), so the
    C: (empty line)                            verifier is one more challenge;
    S: 235 2.7.0                                               respond(b"") → Success(account)

The server stores only StoredKey and ServerKey (:func:`scram_keys`), never the password, and
the client proves the password without sending it; the ``v=`` signature proves the server
knew the keys. Failures at the proof are ``535`` without a SCRAM ``e=`` message: the SMTP
reply already says it.

SECURITY decisions:

* Unknown users: the lookup answers ``ScramLookup(None)`` and the exchange continues with
  mock credentials derived by HMAC from the caller's secret ``mock_seed`` and the user name,
  so salt and iterations are stable per name and the flow has exactly the same shape; it
  fails at the proof like a wrong password (as PostgreSQL's "mock authentication" does). The
  seed must persist across restarts, or a changing salt would reveal a missing user.
* Channel binding (RFC 5802 §6): ``channel_binding`` is this connection's RFC 9266
  ``tls-exporter`` value (32 octets), or None. With None the -PLUS variant must not be offered
  and ``p=`` fails. With a value the session must offer -PLUS, and a client that says ``y``
  ("I could bind, but you can't") to plain SCRAM-SHA-256 is being downgraded: it fails.
* Iterations: at least 4096 (RFC 7677 §4); the client also refuses more than
  ``max_iterations`` so a hostile server cannot make it burn CPU.

SASLprep (:mod:`postguard.sasl.saslprep`) applies to user names (query strings) and
passwords (stored strings), RFC 5802 §2.2 and §5.1.

Must not: do I/O or make randomness: nonces are injected (``secrets.token_urlsafe(18)``).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re

from .base import (
    Challenge,
    Failure,
    FailureKind,
    NeedScramCredentials,
    Resumption,
    SaslAuthenticationError,
    SaslUsageError,
    ScramLookup,
    Step,
    Success,
)
from .gs2 import decode_saslname, encode_saslname, format_gs2_header, parse_gs2_header
from .mechanism import ClientMechanismBase, MalformedInput, ServerMechanismBase, decode_base64
from .saslprep import saslprep

SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS"
CHANNEL_BINDING_TYPE = "tls-exporter"  # RFC 9266 §2
CHANNEL_BINDING_OCTETS = 32  # RFC 9266 §2: the exporter's output length
MIN_SCRAM_ITERATIONS = 4096  # RFC 7677 §4
# Client-side ceiling: 10 times OWASP's 2023 PBKDF2-HMAC-SHA256 figure (600,000), a few seconds.
MAX_SCRAM_ITERATIONS = 6_000_000
SCRAM_SALT_OCTETS = 16  # what stores should generate; mock salts have this length too
_MIN_MOCK_SEED_OCTETS = 16  # 128 bits: the seed is a server secret
_KEY_OCTETS = 32  # SHA-256 output
# RFC 5802 §7: printable = %x21-2B / %x2D-7E (no ","); 255 caps a peer's nonce (ours are ~24).
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,255}")
_SERVER_ERROR = re.compile(r"[a-z-]{1,64}")  # RFC 5802 §7 server-error-value


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, "sha256").digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _prepare_password(password: str) -> bytes:
    prepared = saslprep(password)  # RFC 5802 §2.2: Normalize() treats it as a stored string
    if not prepared:
        raise ValueError("SASLprep: password is empty")
    return prepared.encode("utf-8")


def scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """Derive the stored verifier for an account (RFC 5802 §3).

    Args:
        password: the account's password (SASLprepped here).
        salt: random octets, :data:`SCRAM_SALT_OCTETS` long (``secrets.token_bytes(16)``).
        iterations: PBKDF2 rounds, at least :data:`MIN_SCRAM_ITERATIONS`.

    Returns:
        ``(stored_key, server_key)``, 32 octets each.

    Raises:
        ValueError: too few iterations, an empty salt, or a password SASLprep refuses.
    """
    if iterations < MIN_SCRAM_ITERATIONS or not salt:
        raise ValueError(f"SCRAM needs a salt and at least {MIN_SCRAM_ITERATIONS} iterations")
    salted = hashlib.pbkdf2_hmac("sha256", _prepare_password(password), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key")


def _split_attributes(text: str) -> list[tuple[str, str]]:
    """``a=value,b=value`` → pairs (RFC 5802 §7: attr-val = ALPHA "=" value)."""
    pairs = []
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not ("a" <= part[0].lower() <= "z"):
            raise MalformedInput("bad SCRAM attribute")
        pairs.append((part[0], part[2:]))
    return pairs


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedInput("SCRAM message is not UTF-8") from None


class _Phase(enum.Enum):
    CLIENT_FIRST = enum.auto()
    CLIENT_FINAL = enum.auto()
    ACKNOWLEDGE = enum.auto()


class ScramServer(ServerMechanismBase):
    """Server half of SCRAM-SHA-256 (``plus=False``) or SCRAM-SHA-256-PLUS (``plus=True``).

    Args:
        nonce: fresh server nonce for this exchange, printable ASCII without ``,``.
        mock_seed: persistent server secret (≥ 16 octets) for unknown-user credentials.
        channel_binding: this connection's ``tls-exporter`` value, or None (see module doc).
        plus: run the -PLUS variant (requires ``channel_binding``).
        mock_iterations: iteration count shown for unknown users; set it to what the account
            store uses for new accounts, or the count itself reveals a missing user.

    Raises:
        ValueError: a bad nonce, a short seed, a -PLUS server without channel binding, or a
            channel-binding value that is not 32 octets.
    """

    def __init__(
        self,
        *,
        nonce: str,
        mock_seed: bytes,
        channel_binding: bytes | None = None,
        plus: bool = False,
        mock_iterations: int = MIN_SCRAM_ITERATIONS,
    ) -> None:
        super().__init__()
        if not _NONCE.fullmatch(nonce):
            raise ValueError("SCRAM nonce: printable ASCII without ','")
        if len(mock_seed) < _MIN_MOCK_SEED_OCTETS or mock_iterations < MIN_SCRAM_ITERATIONS:
            raise ValueError("SCRAM mock seed too short or mock iterations too few")
        if channel_binding is not None and len(channel_binding) != CHANNEL_BINDING_OCTETS:
            raise ValueError("channel binding must be the 32-octet tls-exporter value")
        if plus and channel_binding is None:
            raise ValueError("SCRAM-SHA-256-PLUS needs channel binding")
        self.name = SCRAM_SHA_256_PLUS if plus else SCRAM_SHA_256
        self._plus = plus
        self._server_nonce = nonce
        self._mock_seed = mock_seed
        self._mock_iterations = mock_iterations
        self._channel_binding = channel_binding
        self._phase = _Phase.CLIENT_FIRST
        self._gs2_header = ""
        self._client_first_bare = ""
        self._client_nonce = ""
        self._username = ""
        self._nonce = ""
        self._server_first = ""
        self._stored_key = b""
        self._server_key = b""
        self._account: str | None = None

    def _on_start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Challenge(b"")  # client-first mechanism: invite the client-first message
        return self._client_first(initial_response)

    def _on_respond(self, data: bytes) -> Step:
        if self._phase is _Phase.CLIENT_FIRST:
            return self._client_first(data)
        if self._phase is _Phase.CLIENT_FINAL:
            return self._client_final(data)
        if data:  # RFC 4954 §4: the answer to the verifier challenge is empty
            raise MalformedInput("non-empty response to the SCRAM verifier")
        if self._account is None:
            raise SaslUsageError("SCRAM: no account at the end")  # unreachable by design
        return Success(self._account)

    def _on_resume(self, result: Resumption) -> Step:
        if not isinstance(result, ScramLookup):
            raise SaslUsageError(f"expected ScramLookup, not {type(result).__name__}")
        creds = result.credentials
        if creds is None:
            salt, iterations = self._mock("salt")[:SCRAM_SALT_OCTETS], self._mock_iterations
            self._stored_key, self._server_key = self._mock("stored"), self._mock("server")
        else:
            salt, iterations = creds.salt, creds.iterations
            self._stored_key, self._server_key = creds.stored_key, creds.server_key
            self._account = creds.account
        self._nonce = self._client_nonce + self._server_nonce
        self._server_first = f"r={self._nonce},s={_b64(salt)},i={iterations}"
        self._phase = _Phase.CLIENT_FINAL
        return Challenge(self._server_first.encode("ascii"))

    def _mock(self, label: str) -> bytes:
        return _hmac(self._mock_seed, f"scram-mock-{label}\x00{self._username}".encode())

    def _client_first(self, data: bytes) -> Step:
        header, bare = parse_gs2_header(_decode(data))
        if self._plus:
            if header.cb_flag != "p":
                raise MalformedInput("SCRAM-SHA-256-PLUS without channel binding")
            if header.cb_name != CHANNEL_BINDING_TYPE:
                return Failure("unsupported channel-binding type", FailureKind.AUTH_FAILED)
        elif header.cb_flag == "p":
            raise MalformedInput("channel binding requested with SCRAM-SHA-256")
        elif header.cb_flag == "y" and self._channel_binding is not None:
            # SECURITY: RFC 5802 §6 downgrade protection; we offered -PLUS, the client
            # could bind, yet it was told we cannot: someone stripped -PLUS from EHLO.
            return Failure("channel-binding downgrade", FailureKind.AUTH_FAILED)
        attrs = _split_attributes(bare)
        if attrs[0][0] == "m":
            raise MalformedInput("SCRAM mandatory extension unsupported")
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            raise MalformedInput("SCRAM client-first needs n= and r=")
        if not _NONCE.fullmatch(attrs[1][1]):
            raise MalformedInput("bad SCRAM client nonce")
        username = _prepare_name(decode_saslname(attrs[0][1]))
        if header.authzid is not None and _prepare_name(header.authzid) != username:
            return Failure("authzid differs from username", FailureKind.AUTHZ_DENIED)
        self._gs2_header, self._client_first_bare = header.raw, bare
        self._client_nonce, self._username = attrs[1][1], username
        return NeedScramCredentials(username)

    def _client_final(self, data: bytes) -> Step:
        without_proof, sep, proof_text = _decode(data).rpartition(",p=")
        if not sep:
            raise MalformedInput("SCRAM client-final without proof")
        attrs = _split_attributes(without_proof)
        if len(attrs) < 2 or attrs[0][0] != "c" or attrs[1][0] != "r":
            raise MalformedInput("SCRAM client-final needs c= and r=")
        cbind = decode_base64(attrs[0][1])
        proof = decode_base64(proof_text)
        if len(proof) != _KEY_OCTETS:
            raise MalformedInput("SCRAM proof has the wrong length")
        # The same checks in the same order for real and mock users.
        if not hmac.compare_digest(attrs[1][1].encode(), self._nonce.encode()):
            return Failure("nonce mismatch", FailureKind.AUTH_FAILED)
        expected = self._gs2_header.encode()
        if self._plus and self._channel_binding is not None:
            expected += self._channel_binding
        if not hmac.compare_digest(cbind, expected):
            # SECURITY: a different TLS channel on the client's side: a man in the middle.
            return Failure("channel bindings do not match", FailureKind.AUTH_FAILED)
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_key = _xor(proof, _hmac(self._stored_key, auth_message))
        valid = hmac.compare_digest(hashlib.sha256(client_key).digest(), self._stored_key)
        if self._account is None:
            return Failure("unknown user", FailureKind.AUTH_FAILED)
        if not valid:
            return Failure("invalid proof", FailureKind.AUTH_FAILED)
        self._phase = _Phase.ACKNOWLEDGE
        return Challenge(b"v=" + _b64(_hmac(self._server_key, auth_message)).encode())


def _prepare_name(name: str) -> str:
    try:
        prepared = saslprep(name, allow_unassigned=True)  # RFC 5802 §5.1: a query string
    except ValueError:
        raise MalformedInput("user name fails SASLprep") from None
    if not prepared:
        raise MalformedInput("user name empty after SASLprep")
    return prepared


class _ClientPhase(enum.Enum):
    INITIAL = enum.auto()
    SERVER_FIRST = enum.auto()
    SERVER_FINAL = enum.auto()
    DONE = enum.auto()


class ScramClient(ClientMechanismBase):
    """Client half of SCRAM-SHA-256 / -PLUS.

    Args:
        username: the user (SASLprepped as a query string).
        password: the password (SASLprepped as a stored string, like :func:`scram_keys`).
        nonce: fresh client nonce, printable ASCII without ``,``.
        channel_binding: this connection's ``tls-exporter`` value, or None.
        plus: use -PLUS (binds to ``channel_binding``). Without it, a client that has
            ``channel_binding`` sends ``y``: use that only when the server did not offer -PLUS.
        authzid: an authorisation identity, or None.
        max_iterations: refuse servers asking for more PBKDF2 rounds.

    Raises:
        ValueError: from the constructor, for values SCRAM cannot carry.
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        nonce: str,
        channel_binding: bytes | None = None,
        plus: bool = False,
        authzid: str | None = None,
        max_iterations: int = MAX_SCRAM_ITERATIONS,
    ) -> None:
        super().__init__()
        prepared = saslprep(username, allow_unassigned=True)
        if not prepared or not _NONCE.fullmatch(nonce):
            raise ValueError("SCRAM: empty user name or bad nonce")
        if plus and (channel_binding is None or len(channel_binding) != CHANNEL_BINDING_OCTETS):
            raise ValueError("SCRAM-SHA-256-PLUS needs the 32-octet tls-exporter value")
        self.name = SCRAM_SHA_256_PLUS if plus else SCRAM_SHA_256
        self._password = _prepare_password(password)
        self._nonce = nonce
        self._max_iterations = max_iterations
        flag = "p" if plus else ("y" if channel_binding is not None else "n")
        self._gs2_header = format_gs2_header(flag, CHANNEL_BINDING_TYPE, authzid)
        self._cbind_data = channel_binding if plus and channel_binding is not None else b""
        self._client_first_bare = f"n={encode_saslname(prepared)},r={nonce}"
        self._phase = _ClientPhase.INITIAL
        self._server_signature = b""

    def initial_response(self) -> bytes:
        """The client-first message."""
        self._mark_initial()
        self._phase = _ClientPhase.SERVER_FIRST
        return (self._gs2_header + self._client_first_bare).encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        """Client-first (after an empty challenge), client-final, then the empty ack."""
        self._begin_respond(challenge)
        if self._phase is _ClientPhase.INITIAL and challenge == b"":
            self._phase = _ClientPhase.SERVER_FIRST
            return (self._gs2_header + self._client_first_bare).encode("utf-8")
        if self._phase is _ClientPhase.SERVER_FIRST:
            return self._client_final(challenge)
        if self._phase is _ClientPhase.SERVER_FINAL:
            self._check_server_final(challenge)
            return b""
        raise SaslAuthenticationError(f"{self.name}: unexpected challenge")

    def verify_final(self, final_data: bytes | None = None) -> None:
        """On 235: the server must have sent a valid ``v=`` (as a challenge or here)."""
        if final_data is not None and self._phase is _ClientPhase.SERVER_FINAL:
            self._check_server_final(final_data)
        if self._phase is not _ClientPhase.DONE:
            # SECURITY: a 235 without the verifier comes from a server that never proved it
            # knows the keys (an impostor accepting anything).
            raise SaslAuthenticationError(f"{self.name}: server did not prove itself")
        self._finished = True

    def _client_final(self, challenge: bytes) -> bytes:
        try:
            server_first = _decode(challenge)
            attrs = _split_attributes(server_first)
        except MalformedInput:
            raise SaslAuthenticationError("SCRAM: malformed server-first message") from None
        if len(attrs) < 3 or [a for a, _ in attrs[:3]] != ["r", "s", "i"]:
            raise SaslAuthenticationError("SCRAM: server-first needs r=, s=, i=")
        nonce, salt_text, iter_text = (v for _, v in attrs[:3])
        if not (_NONCE.fullmatch(nonce) and nonce.startswith(self._nonce)):
            raise SaslAuthenticationError("SCRAM: server nonce does not extend ours")
        if len(nonce) == len(self._nonce):
            raise SaslAuthenticationError("SCRAM: server added no nonce")
        try:
            salt = decode_base64(salt_text)
        except MalformedInput:
            salt = b""
        if not salt:
            raise SaslAuthenticationError("SCRAM: bad salt")
        if not (iter_text.isascii() and iter_text.isdigit() and len(iter_text) <= 10):
            raise SaslAuthenticationError("SCRAM: bad iteration count")
        iterations = int(iter_text)
        if not MIN_SCRAM_ITERATIONS <= iterations <= self._max_iterations:
            raise SaslAuthenticationError("SCRAM: iteration count out of range")
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        cbind = _b64(self._gs2_header.encode("utf-8") + self._cbind_data)
        without_proof = f"c={cbind},r={nonce}"
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        proof = _xor(client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        self._phase = _ClientPhase.SERVER_FINAL
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def _check_server_final(self, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        attr = text.split(",", 1)[0]
        if attr.startswith("e="):
            error = attr[2:] if _SERVER_ERROR.fullmatch(attr[2:]) else "unrecognised"
            raise SaslAuthenticationError(f"SCRAM: server error {error}")
        try:
            signature = decode_base64(attr[2:]) if attr.startswith("v=") else b""
        except MalformedInput:
            signature = b""
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslAuthenticationError("SCRAM: wrong server signature")
        self._phase = _ClientPhase.DONE
