"""XOAUTH2 (Google, also Microsoft 365): an OAuth 2.0 bearer token and a user name.

    base64("user=" {User} "^Aauth=Bearer " {Access Token} "^A^A")     (^A is %x01)

as Google's "SASL XOAUTH2 mechanism" page defines it. On a rejected token the server sends a
JSON error challenge; Google's documented body is ``{"status":"401","schemes":"bearer",
"scope":"https://mail.google.com/"}`` (an HTTP status, unlike OAUTHBEARER's RFC 6750 error
code), so that is the default here without a scope. The client answers with an empty
response and the server fails the exchange (flow in :mod:`postguard.sasl.bearer`).

The ``user`` value travels as ``NeedTokenValidation.authzid``: the validator must check the
token really belongs to that user.

Must not: do I/O or validate tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from .base import NeedTokenValidation, Step
from .bearer import (
    UNSUPPORTED_SCHEME_ERROR,
    BearerClientBase,
    BearerServerBase,
    is_b64token,
    parse_bearer_credentials,
)
from .mechanism import MalformedInput, check_client_field, decode_utf8

XOAUTH2 = "XOAUTH2"
_SOH = b"\x01"


class XOAuth2Server(BearerServerBase):
    """Server half of XOAUTH2."""

    name = XOAUTH2
    default_error: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"status": "401", "schemes": "bearer"}
    )

    def _parse(self, message: bytes) -> Step:
        if not message.endswith(_SOH + _SOH):
            raise MalformedInput("XOAUTH2 message must end with two SOH")
        pairs: dict[bytes, bytes] = {}
        for item in message[:-2].split(_SOH):
            key, eq, value = item.partition(b"=")
            if not eq or key in pairs:
                raise MalformedInput("bad or repeated XOAUTH2 key")
            pairs[key] = value
        if b"user" not in pairs or b"auth" not in pairs:
            raise MalformedInput("XOAUTH2 needs user and auth")
        user = decode_utf8(pairs[b"user"])
        try:
            auth = pairs[b"auth"].decode("ascii")
        except UnicodeDecodeError:
            raise MalformedInput("XOAUTH2 auth is not ASCII") from None
        token = parse_bearer_credentials(auth)
        if token is None:
            return self._fail_with(UNSUPPORTED_SCHEME_ERROR)
        return NeedTokenValidation(user, token)


class XOAuth2Client(BearerClientBase):
    """Client half of XOAUTH2.

    Raises:
        ValueError: from the constructor, for a user that is not one line of text or a token
            that is not an RFC 6750 ``b64token``.
    """

    name = XOAUTH2
    dummy_response = b""

    def __init__(self, user: str, token: str) -> None:
        super().__init__()
        self._user = check_client_field(user, "user").encode("utf-8")
        if not is_b64token(token):
            raise ValueError("token: not an RFC 6750 b64token")
        self._token = token.encode("ascii")

    def _message(self) -> bytes:
        return b"user=" + self._user + b"\x01auth=Bearer " + self._token + b"\x01\x01"
