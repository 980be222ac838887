"""Stand-ins for an identity provider: an HTTP(S) server on loopback, keys and tokens.

``LoopbackHttpServer`` is a tiny asyncio HTTP/1.1 server (one request per connection,
``Connection: close``) on 127.0.0.1 port 0, optionally behind TLS with a trustme
certificate. Routes are plain functions from ``Request`` to ``Response`` that tests may
swap at any time; every request is recorded, so tests count fetches to prove caching.
``SigningKey`` wraps real RSA/P-256/Ed25519 keys from ``cryptography`` and signs tokens
with PyJWT; ``forge`` builds tokens PyJWT refuses to produce (``alg: none``, HMAC with
a public key). ``FakeClock`` is the clock the validators take by injection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import inspect
import json
import ssl
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

LOOPBACK = "127.0.0.1"
ISSUER = "https://idp.example.org"
AUDIENCE = "postguard-smtp"
IDENTITY = "alice@example.org"
# 2023-11-14T22:13:20Z: a fixed "now" so every time claim in a test is explicit.
START_TIME = 1_700_000_000.0
HOUR = 3600.0
# A request line and headers from httpx are a few hundred octets; 64 KiB is plenty.
MAX_HEAD_OCTETS = 64 * 1024


@dataclass(frozen=True)
class Request:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    """What a route answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: object, status: int = 200) -> Response:
        return cls(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


Route = Callable[[Request], Response | Awaitable[Response]]


class LoopbackHttpServer:
    """An HTTP/1.1 server on 127.0.0.1 port 0, with TLS if given a context."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def url(self, path: str) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}{path}"

    def serve_json(self, path: str, value: object, status: int = 200) -> None:
        self.routes[path] = lambda _request: Response.json(value, status)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await self._read_request(reader)
            self.requests.append(request)
            route = self.routes.get(request.path)
            answer = route(request) if route else Response(404, b"not found")
            response = await answer if inspect.isawaitable(answer) else answer
            head = [f"HTTP/1.1 {response.status} X", f"Content-Length: {len(response.body)}"]
            head += ["Connection: close", *(f"{k}: {v}" for k, v in response.headers.items())]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + response.body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> Request:
        head = await reader.readuntil(b"\r\n\r\n")
        assert len(head) <= MAX_HEAD_OCTETS
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Request(method, target.partition("?")[0], headers, body)


class FakeClock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self, now: float = START_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class SigningKey:
    """A private key, its JWS algorithm and its ``kid``."""

    kid: str
    alg: str
    private_key: Any

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        encoder = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}[self.alg]
        jwk: dict[str, Any] = encoder.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        fields = {"kid": self.kid, **header}
        return jwt.encode(
            claims,
            self.private_key,
            algorithm=self.alg,
            headers={k: v for k, v in fields.items() if v is not None},
        )

    def with_kid(self, kid: str) -> SigningKey:
        return SigningKey(kid, self.alg, self.private_key)


def new_key(alg: str, kid: str, rsa_bits: int = 2048) -> SigningKey:
    if alg == "RS256":
        return SigningKey(kid, alg, rsa.generate_private_key(65537, rsa_bits))
    if alg == "ES256":
        return SigningKey(kid, alg, ec.generate_private_key(ec.SECP256R1()))
    return SigningKey(kid, alg, ed25519.Ed25519PrivateKey.generate())


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def claims(now: float = START_TIME, **changes: Any) -> dict[str, Any]:
    """Good claims for ISSUER/AUDIENCE/IDENTITY; a change to ``None`` drops the claim."""
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "248289761001",
        "email": IDENTITY,
        "email_verified": True,
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now + HOUR),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None = None) -> str:
    """A compact JWS PyJWT would refuse to make: unsigned, or HMAC-SHA256 with any key."""
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    if hmac_key is None:
        return signing_input + "."
    mac = hmac.new(hmac_key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def assert_secret_absent(secret: str, *things: object) -> None:
    """``secret`` is in no ``str``/``repr`` of ``things``, nor in any exception chain."""
    for thing in things:
        texts = [str(thing), repr(thing)]
        if isinstance(thing, BaseException):
            texts.append("".join(traceback.format_exception(thing)))
            linked = thing.__cause__ or thing.__context__
            assert linked is None, f"{type(thing).__name__} chains {type(linked).__name__}"
        for text in texts:
            assert secret not in text, f"secret leaked into {type(thing).__name__}"
