"""What XOAUTH2 and OAUTHBEARER share: bearer-token syntax, the JSON error challenge, and the
server state machine around token validation.

Flow (RFC 7628 §3.2, and Google's XOAUTH2 description, which it generalises)::

    C: <client response with the token>            start()/respond() → NeedTokenValidation
    (caller validates the token)                   resume(TokenVerdict)
    ok:   S: 235                                   → Success(account)
    fail: S: 334 base64({"status": ...})           → Challenge(error JSON)
          C: dummy response (%x01, or empty)       respond() → Failure(AUTH_FAILED)
          S: 535

The error challenge lets a client learn which scope to ask for before it fails; the dummy
response only closes the exchange, so *anything* the client answers ends in failure.

Must not: do I/O or validate tokens (that needs the network; ``accounts/`` does it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from .base import (
    Challenge,
    Failure,
    FailureKind,
    Resumption,
    SaslAuthenticationError,
    SaslUsageError,
    Step,
    Success,
    TokenVerdict,
)
from .mechanism import ClientMechanismBase, MalformedInput, ServerMechanismBase

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

# RFC 7628 §3.2.2, for a request that is well-formed but not a bearer token (e.g. OAuth 1.0a).
UNSUPPORTED_SCHEME_ERROR: Mapping[str, str] = MappingProxyType(
    {"status": "invalid_request", "schemes": "bearer"}
)


def is_b64token(token: str) -> bool:
    """True when ``token`` has RFC 6750 §2.1 ``b64token`` syntax."""
    return _B64TOKEN.fullmatch(token) is not None


def parse_bearer_credentials(auth_value: str) -> str | None:
    """The token of ``Bearer <b64token>`` (scheme case-insensitive, RFC 6750 §2.1).

    Returns:
        The token, or None when the credentials use another scheme.

    Raises:
        MalformedInput: a Bearer scheme with a missing or malformed token.
    """
    scheme, _, rest = auth_value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.lstrip(" ")
    if not is_b64token(token):
        raise MalformedInput("malformed bearer token")
    return token


def format_error_challenge(error: Mapping[str, str]) -> bytes:
    """Compact JSON, keys in the given order (RFC 7628 §4.3's example is byte-for-byte so)."""
    return json.dumps(dict(error), separators=(",", ":")).encode("utf-8")


class BearerServerBase(ServerMechanismBase):
    """Server state machine shared by XOAUTH2 and OAUTHBEARER; subclasses parse messages."""

    default_error: ClassVar[Mapping[str, str]]

    def __init__(self) -> None:
        super().__init__()
        self._error_sent = False

    def _on_start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Challenge(b"")  # client-first mechanism: invite the client response
        return self._parse(initial_response)

    def _on_respond(self, data: bytes) -> Step:
        if self._error_sent:
            # RFC 7628 §3.2.3: the dummy response after an error challenge only ends the
            # exchange; whatever it holds, the authentication has failed.
            return Failure("token rejected", FailureKind.AUTH_FAILED)
        return self._parse(data)

    def _on_resume(self, result: Resumption) -> Step:
        if not isinstance(result, TokenVerdict):
            raise SaslUsageError(f"expected TokenVerdict, not {type(result).__name__}")
        if result.account is not None:
            return Success(result.account)
        return self._fail_with(result.error or self.default_error)

    def _fail_with(self, error: Mapping[str, str]) -> Step:
        self._error_sent = True
        return Challenge(format_error_challenge(error))

    def _parse(self, message: bytes) -> Step:
        raise NotImplementedError


class BearerClientBase(ClientMechanismBase):
    """Client bookkeeping shared by XOAUTH2 and OAUTHBEARER.

    After a failure, :attr:`server_error` holds the server's JSON error object (or None when
    it was not JSON), for the client library to report the scope the server wants.
    """

    dummy_response: ClassVar[bytes]

    def __init__(self) -> None:
        super().__init__()
        self.server_error: dict[str, Any] | None = None
        self._error_seen = False

    def _message(self) -> bytes:
        raise NotImplementedError

    def initial_response(self) -> bytes:
        """The client response carrying the token."""
        self._mark_initial()
        return self._message()

    def respond(self, challenge: bytes) -> bytes:
        """The message after an empty challenge; the dummy response after an error."""
        if self._begin_respond(challenge) and challenge == b"":
            return self._message()
        if self._error_seen:
            raise SaslAuthenticationError(f"{self.name}: challenge after the error challenge")
        self._error_seen = True
        try:
            parsed = json.loads(challenge)
        except ValueError:
            parsed = None
        self.server_error = parsed if isinstance(parsed, dict) else None
        return self.dummy_response
