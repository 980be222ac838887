"""OAUTHBEARER (RFC 7628): an OAuth 2.0 bearer token inside a GS2 framing.

    client-resp = gs2-header kvsep *kvpair kvsep               (RFC 7628 §3.1)
    kvpair      = key "=" value kvsep       kvsep = %x01
    e.g.  n,a=user@example.com,^Ahost=server.example.com^Aport=143^Aauth=Bearer <token>^A^A

``host`` and ``port`` are what the client believes it connected to; they are passed on to the
validator, which may use them against token audience confusion. Unknown keys are ignored
(RFC 7628 §3.1). OAUTHBEARER defines no channel binding, so ``p=`` in the GS2 header is
malformed; ``n`` and ``y`` are both fine. A well-formed message with another scheme than
Bearer (RFC 7628 §4.2's OAuth 1.0a credentials belong to OAUTH10A, which postguard does not
offer) gets the error challenge ``{"status":"invalid_request","schemes":"bearer"}``. A rejected
token gets the caller's error object, by default ``{"status":"invalid_token",
"schemes":"bearer"}`` (RFC 7628 §3.2.2); the client answers ``%x01`` and the exchange fails.

Must not: do I/O or validate tokens.
"""

from __future__ import annotations

import re
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
from .gs2 import format_gs2_header, parse_gs2_header
from .mechanism import MalformedInput, check_client_field

OAUTHBEARER = "OAUTHBEARER"
_KVSEP = "\x01"
_KEY = re.compile(r"[A-Za-z]+")  # RFC 7628 §3.1: key = 1*(ALPHA)
_VALUE = re.compile(r"[\x21-\x7e \t\r\n]*")  # value = *(VCHAR / SP / HTAB / CR / LF)
_HOST = re.compile(r"[\x21-\x7e]{1,255}")  # one token of printable ASCII (it reaches logs)
_PORT = re.compile(r"[0-9]{1,5}")


class OAuthBearerServer(BearerServerBase):
    """Server half of OAUTHBEARER."""

    name = OAUTHBEARER
    default_error: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"status": "invalid_token", "schemes": "bearer"}
    )

    def _parse(self, message: bytes) -> Step:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedInput("OAUTHBEARER message is not UTF-8") from None
        header, rest = parse_gs2_header(text)
        if header.cb_flag == "p":
            raise MalformedInput("OAUTHBEARER has no channel binding")
        if not rest.startswith(_KVSEP) or not rest.endswith(_KVSEP * 2):
            raise MalformedInput("OAUTHBEARER key/value framing")
        pairs: dict[str, str] = {}
        for item in rest[1:-1].split(_KVSEP)[:-1]:
            key, eq, value = item.partition("=")
            if not eq or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
                raise MalformedInput("bad OAUTHBEARER key/value pair")
            if key in pairs:
                raise MalformedInput("repeated OAUTHBEARER key")
            pairs[key] = value
        host = pairs.get("host")
        if host is not None and not _HOST.fullmatch(host):
            raise MalformedInput("bad OAUTHBEARER host")
        port_text = pairs.get("port")
        if port_text is not None and not (_PORT.fullmatch(port_text) and int(port_text) <= 65535):
            raise MalformedInput("bad OAUTHBEARER port")
        if "auth" not in pairs:
            raise MalformedInput("OAUTHBEARER needs auth")
        token = parse_bearer_credentials(pairs["auth"])
        if token is None:
            return self._fail_with(UNSUPPORTED_SCHEME_ERROR)
        port = int(port_text) if port_text is not None else None
        return NeedTokenValidation(header.authzid, token, host, port)


class OAuthBearerClient(BearerClientBase):
    """Client half of OAUTHBEARER.

    Args:
        authzid: the user to act as (``a=``), or None to let the token decide.
        token: the OAuth 2.0 access token.
        host: the server name the client connected to, sent as ``host=``.
        port: the port, sent as ``port=``.

    Raises:
        ValueError: from the constructor, for values the framing cannot carry.
    """

    name = OAUTHBEARER
    dummy_response = b"\x01"  # RFC 7628 §3.2.3

    def __init__(
        self,
        authzid: str | None,
        token: str,
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__()
        if authzid is not None:
            check_client_field(authzid, "authzid")
        if not is_b64token(token):
            raise ValueError("token: not an RFC 6750 b64token")
        if host is not None and not _HOST.fullmatch(host):
            raise ValueError("host: one token of printable ASCII")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError("port: 0..65535")
        pairs = []
        if host is not None:
            pairs.append(f"host={host}")
        if port is not None:
            pairs.append(f"port={port}")
        pairs.append(f"auth=Bearer {token}")
        header = format_gs2_header("n", None, authzid)
        self._encoded = (header + _KVSEP + "".join(p + _KVSEP for p in pairs) + _KVSEP).encode()

    def _message(self) -> bytes:
        return self._encoded
