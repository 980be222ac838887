"""CRAM-MD5 (RFC 2195): a keyed-MD5 answer to a server challenge.

    S: <random.timestamp@hostname>                  (RFC 2195 §2, a msg-id)
    C: user SP hex(HMAC-MD5(secret, challenge))     (32 lowercase hex digits)

The password never crosses the wire, but the server must hold a plaintext-equivalent secret,
and a passive attacker can run a dictionary attack on one exchange; SCRAM supersedes it. The
random part and the timestamp are injected (STYLE.md §2): the caller passes a fresh nonce per
AUTH and the current time.

Server: after the client's answer, asks for the user's secret
(:class:`~postguard.sasl.base.NeedCramSecret`) and compares digests in constant time. An
unknown user (``CramLookup(None, None)``) runs the same computation with a dummy key and fails
the same way, so neither the reply nor the timing says whether the user exists.

Must not: do I/O or read the clock.
"""

from __future__ import annotations

import hmac
import re

from .base import (
    Challenge,
    CramLookup,
    Failure,
    FailureKind,
    NeedCramSecret,
    Resumption,
    SaslAuthenticationError,
    SaslUsageError,
    Step,
    Success,
)
from .mechanism import (
    ClientMechanismBase,
    MalformedInput,
    ServerMechanismBase,
    check_client_field,
    decode_utf8,
)

CRAM_MD5 = "CRAM-MD5"
_DIGEST_HEX_DIGITS = 32  # MD5 is 16 octets (RFC 1321)
# RFC 5322 §3.2.3 atext plus ".": what may sit left of "@" in a msg-id.
_NONCE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,128}")
_HOSTNAME = re.compile(r"[A-Za-z0-9.-]{1,253}")
_HEX = re.compile(rb"[0-9a-fA-F]{32}")


def _hexdigest(secret: bytes, challenge: bytes) -> bytes:
    return hmac.new(secret, challenge, "md5").hexdigest().encode("ascii")


class CramMd5Server(ServerMechanismBase):
    """Server half of CRAM-MD5.

    Args:
        nonce: fresh random text for this exchange (``secrets.token_hex(8)``), atext only.
        timestamp: the current time in seconds since the epoch.
        hostname: the server's host name.

    Raises:
        ValueError: a nonce, timestamp or host name that cannot form a msg-id.
    """

    name = CRAM_MD5

    def __init__(self, *, nonce: str, timestamp: int, hostname: str) -> None:
        super().__init__()
        if not _NONCE.fullmatch(nonce) or not _HOSTNAME.fullmatch(hostname) or timestamp < 0:
            raise ValueError("CRAM-MD5 challenge parts must form a msg-id")
        self.challenge = f"<{nonce}.{timestamp}@{hostname}>".encode("ascii")
        self._username = ""
        self._digest = b""

    def _on_start(self, initial_response: bytes | None) -> Step:
        if initial_response is not None:
            # RFC 4954 §4: an initial response to a server-first mechanism is a 501.
            raise MalformedInput("CRAM-MD5 takes no initial response")
        return Challenge(self.challenge)

    def _on_respond(self, data: bytes) -> Step:
        user, space, digest = data.rpartition(b" ")
        if not space or not _HEX.fullmatch(digest):
            raise MalformedInput("CRAM-MD5 response is not 'user SP digest'")
        self._username = decode_utf8(user)
        self._digest = digest.lower()
        return NeedCramSecret(self._username)

    def _on_resume(self, result: Resumption) -> Step:
        if not isinstance(result, CramLookup):
            raise SaslUsageError(f"expected CramLookup, not {type(result).__name__}")
        known = result.secret is not None and result.account is not None
        # SECURITY: same work for unknown users (no user enumeration by timing).
        key = result.secret.encode("utf-8") if result.secret is not None else b"\x00" * 16
        matches = hmac.compare_digest(_hexdigest(key, self.challenge), self._digest)
        if matches and known and result.account:
            return Success(result.account)
        return Failure("invalid credentials", FailureKind.AUTH_FAILED)


class CramMd5Client(ClientMechanismBase):
    """Client half of CRAM-MD5.

    Raises:
        ValueError: from the constructor, for a user name or password CRAM-MD5 cannot carry.
    """

    name = CRAM_MD5

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self._username = check_client_field(username, "username").encode("utf-8")
        self._secret = check_client_field(password, "password", secret=True).encode("utf-8")
        self._answered = False

    def initial_response(self) -> bytes | None:
        """None: CRAM-MD5 has no initial response; the server speaks first."""
        self._mark_initial()
        return None

    def respond(self, challenge: bytes) -> bytes:
        """``user SP digest`` for the server's challenge."""
        self._begin_respond(challenge)
        if self._answered or not challenge:
            raise SaslAuthenticationError("CRAM-MD5: unexpected challenge from server")
        self._answered = True
        return self._username + b" " + _hexdigest(self._secret, challenge)
