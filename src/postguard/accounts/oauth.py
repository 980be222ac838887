"""OAuth 2.0 bearer-token validation for SMTP AUTH XOAUTH2 and OAUTHBEARER (RFC 7628).

This module owns one question: *is this bearer token good, and whose is it?* It answers
it either locally, by checking a JWT against a JSON Web Key Set (``JwtValidator``), or by
asking the authorisation server (``IntrospectionValidator``, RFC 7662). It does not parse
SASL messages (``sasl/`` does), map identities to accounts or choose SMTP replies (the
session does), and it never logs: outcomes are returned (``TokenResult.detail`` is the
text for the log) or raised (``TokenServiceUnavailable``), and the caller logs them under
its own event. Secrets never leave it: no token, client secret or response body appears
in a result, an exception (messages and chained causes alike) or a ``repr``.

Theory of operation:

* ``validate`` returns ``TokenResult``: the identity on success, or the RFC 7628 §3.2.2
  error object the session sends in the SASL failure challenge. "The token is bad" is a
  *result*; "we cannot tell" (key set or introspection endpoint unreachable, answering
  garbage, too slow) is ``TokenServiceUnavailable``, which the session answers with
  ``454 4.7.0`` so the client retries instead of discarding a good token.
* Time comes from the injected ``clock`` (``time.time`` by default): ``exp``, ``nbf`` and
  ``iat`` are checked against it with ``CLOCK_LEEWAY_SECONDS`` of tolerance, and cache
  ages are measured with it. PyJWT therefore only verifies the signature; every claim is
  checked here, the same way for both validators.
* ``JwtValidator`` keeps the key set for ``cache_ttl`` seconds. A token naming an unknown
  ``kid`` triggers a reload, at most one every ``MIN_JWKS_REFRESH_INTERVAL_SECONDS``,
  so a stream of forged ``kid`` values cannot make us hammer the identity provider. A
  key published less than that interval after our last fetch is therefore refused for
  up to that interval. A failed fetch is remembered for the same interval, so sessions
  fail fast (454) instead of queueing behind one timeout after another.
* ``IntrospectionValidator`` caches positive answers only, keyed by SHA-256 of the token,
  for ``min(cache_ttl, exp - now)``: a revoked token stays usable for at most
  ``cache_ttl`` seconds.
* HTTP goes through ``httpx`` with postguard's strict client ``SSLContext``, no proxy or
  CA settings taken from the environment, no redirects, no compression, and a size and
  time budget for every answer.

Length: past STYLE's ~600 lines, because both validators share the result type, the
claim checks and the bounded HTTP fetch, which are most of the code. When it grows, split
it into a package: ``oauth/{results,claims,http,jwks,introspection}.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeGuard
from urllib.parse import quote_plus, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from postguard.tls.contexts import client_context

if TYPE_CHECKING:
    from jwt.types import Options  # recent PyJWT only; 2.10 has no such name

__all__ = [
    "CLOCK_LEEWAY_SECONDS",
    "DEFAULT_ALGORITHMS",
    "IntrospectionValidator",
    "JwtValidator",
    "TokenResult",
    "TokenServiceUnavailable",
    "TokenValidator",
    "build_validator",
]

SECONDS: Final = 1.0
KiB: Final = 1024

DEFAULT_ALGORITHMS: Final[tuple[str, ...]] = ("RS256", "ES256", "EdDSA")
"""Asymmetric JWS algorithms only (RFC 7518 §3.3, §3.4; RFC 8037 §3.1)."""

# Tolerance for clock skew between us and the issuer on exp/nbf/iat (RFC 7519 §4.1.4
# allows "a small leeway, usually no more than a few minutes"); 30 s covers NTP-synced
# hosts without meaningfully extending a stolen token's life.
CLOCK_LEEWAY_SECONDS: Final = 30 * SECONDS
MIN_JWKS_REFRESH_INTERVAL_SECONDS: Final = 30 * SECONDS
DEFAULT_CACHE_TTL_SECONDS: Final = 300 * SECONDS
# Far below the 5-minute client command timeouts of RFC 5321 §4.5.3.2, far above the
# few round trips (TCP + TLS + request, ~300 ms each across continents) a fetch needs.
DEFAULT_FETCH_TIMEOUT_SECONDS: Final = 10 * SECONDS
# A bearer token must fit an HTTP header line for every other use it has: nginx
# (large_client_header_buffers 8k) and Apache (LimitRequestFieldSize 8190) cap those at
# 8 KiB. Twice that leaves room and stops us parsing megabytes of attacker input.
MAX_TOKEN_OCTETS: Final = 16 * KiB
# Published key sets are a few KiB (roughly 2 KiB at Google, 10-20 KiB at Microsoft,
# whose entries carry x5c certificates); 256 KiB is an order of magnitude above that.
MAX_JWKS_OCTETS: Final = 256 * KiB
# An RFC 7662 answer is one flat JSON object of claims; 64 KiB is generous.
MAX_INTROSPECTION_OCTETS: Final = 64 * KiB
# One entry is a 32-octet digest, an identity and a float: ~10,000 entries is a few MiB.
MAX_CACHED_TOKENS: Final = 10_000
# 64 (local part) + 1 + 255 (domain), RFC 5321 §4.5.3.1; OIDC's "sub" is <= 255 ASCII.
MAX_IDENTITY_CHARS: Final = 320
# RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used" with RS256.
MIN_RSA_KEY_BITS: Final = 2048

# RFC 6750 §2.1 b64token; RFC 7628 §3.1 carries the token in this syntax.
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ASCII_FOLD: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class TokenServiceUnavailable(Exception):
    """The token could not be checked: the key set or introspection endpoint failed.

    Like ``accounts.store.StoreUnavailable``: the session answers ``454 4.7.0`` (RFC 4954
    §6) and should not count it as a failed attempt. The message is for the log; it never
    holds the token or a response body, and the exception never chains the underlying
    HTTP/JSON error (those can carry the request, and so the token).
    """


@dataclass(frozen=True)
class TokenResult:
    """The outcome of one validation: an identity, or the SASL error object.

    Attributes:
        subject_identity: The value of the configured identity claim, e.g.
            ``"alice@example.org"``; ``None`` when the token is invalid.
        error: The JSON object for the SASL failure challenge (RFC 7628 §3.2.2 and
            Google's XOAUTH2), e.g. ``{"status": "invalid_token", "schemes": "bearer"}``;
            ``None`` when the token is valid.
        detail: Why the token was refused, for the log only (never for the wire). A
            fixed phrase: it never quotes the token or its claims.
    """

    subject_identity: str | None
    error: dict[str, str] | None
    detail: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.subject_identity is None) == (self.error is None):
            raise ValueError("exactly one of subject_identity and error must be set")

    @property
    def is_valid(self) -> bool:
        """Whether the token was accepted."""
        return self.subject_identity is not None


class TokenValidator(Protocol):
    """Checks bearer tokens for the XOAUTH2 and OAUTHBEARER mechanisms."""

    async def validate(self, token: str, user_hint: str | None) -> TokenResult:
        """Check ``token`` and return whose it is.

        Contract: never raises for a bad token, only for an unreachable or misbehaving
        authority. Safe to call concurrently from many sessions.

        Args:
            token: The bearer token exactly as the client sent it.
            user_hint: The SASL user (XOAUTH2 ``user=``, OAUTHBEARER authzid) or
                ``None``; if given it must equal the identity (ASCII case-insensitive).

        Returns:
            A valid ``TokenResult`` with the identity, or an invalid one with the error
            object.

        Raises:
            TokenServiceUnavailable: The token could not be checked right now.
        """
        ...

    async def aclose(self) -> None:
        """Release the HTTP client if the validator created it."""
        ...


def _reject(detail: str, scope: str | None) -> TokenResult:
    # RFC 7628 §3.2.2: "status" is REQUIRED, "scope" OPTIONAL. "schemes" is Google's
    # XOAUTH2 member; extra members are ignored by OAUTHBEARER clients.
    error = {"status": "invalid_token", "schemes": "bearer"}
    if scope is not None:
        error["scope"] = scope
    return TokenResult(subject_identity=None, error=error, detail=detail)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_claims(
    claims: Mapping[str, Any],
    now: float,
    *,
    issuer: str | None,
    audience: str | None,
    require_exp: bool,
) -> str | None:
    """Check the registered claims; return why they fail, or ``None``."""
    exp = claims.get("exp")
    if exp is None:
        if require_exp:
            return "exp claim missing"
    elif not _is_number(exp):
        return "exp claim is not a number"
    # RFC 7519 §4.1.4: MUST NOT be accepted on or after exp (plus leeway for skew).
    elif now >= exp + CLOCK_LEEWAY_SECONDS:
        return "token expired"
    for name, problem in (("nbf", "token not yet valid"), ("iat", "token issued in the future")):
        value = claims.get(name)
        if value is None:
            continue
        if not _is_number(value):
            return f"{name} claim is not a number"
        # RFC 7519 §4.1.5 (nbf); an iat in the future means a skewed or forged issuer.
        if now + CLOCK_LEEWAY_SECONDS < value:
            return problem
    # SECURITY: exact comparison (CVE-2024-53861 was PyJWT matching issuer substrings).
    if issuer is not None and claims.get("iss") != issuer:
        return "issuer mismatch"
    if audience is not None:
        # RFC 7519 §4.1.3: a string or an array of strings; ours must be among them.
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or audience not in audiences:
            return "audience mismatch"
    return None


def _identity(claims: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """The first present identity claim, if well-formed and (for email) verified."""
    for name in names:
        value = claims.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_IDENTITY_CHARS:
            return None
        if not value.isprintable():
            return None
        # SECURITY: "nOAuth" (Descope, 2023): some providers let users set an
        # unverified email address, which would then log them in as its owner.
        verified = claims.get("email_verified", True)
        if name == "email" and verified is not True and verified != "true":
            return None
        return value
    return None


def _finish(
    claims: Mapping[str, Any],
    now: float,
    user_hint: str | None,
    *,
    issuer: str | None,
    audience: str | None,
    require_exp: bool,
    identity_claims: Sequence[str],
    scope: str | None,
) -> TokenResult:
    problem = _check_claims(claims, now, issuer=issuer, audience=audience, require_exp=require_exp)
    if problem is not None:
        return _reject(problem, scope)
    identity = _identity(claims, identity_claims)
    if identity is None:
        return _reject("identity claim missing, malformed or unverified", scope)
    return _match_hint(identity, user_hint, scope)


def _match_hint(identity: str, user_hint: str | None, scope: str | None) -> TokenResult:
    # SECURITY: ASCII-only folding. Unicode case folding maps distinct names onto one
    # ("STRASSE" and "straße" both fold to "strasse"), letting one user claim another.
    if user_hint is not None and (
        user_hint.translate(_ASCII_FOLD) != identity.translate(_ASCII_FOLD)
    ):
        return _reject("SASL user differs from the token's identity", scope)
    return TokenResult(subject_identity=identity, error=None)


def _is_well_formed(token: str) -> bool:
    return len(token) <= MAX_TOKEN_OCTETS and _B64TOKEN.fullmatch(token) is not None


def _check_url(url: str, *, allow_http: bool, what: str) -> str:
    parts = urlsplit(url)
    # SECURITY: over plain HTTP anyone on the path could serve their own keys (and so
    # mint tokens) or read tokens and client secrets.
    if parts.hostname and (parts.scheme == "https" or (parts.scheme == "http" and allow_http)):
        return url
    raise ValueError(f"{what} must be an https:// URL with a host name")


def _http_client(ca_file: Path | None, timeout: float) -> httpx.AsyncClient:
    # SECURITY: trust_env=False ignores HTTPS_PROXY, SSL_CERT_FILE and .netrc, so the
    # environment cannot redirect or re-root our trust; redirects are not followed.
    return httpx.AsyncClient(
        verify=client_context(ca_file),
        timeout=timeout,
        trust_env=False,
        follow_redirects=False,
    )


async def _fetch(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    limit: int,
    timeout: float,
    headers: Mapping[str, str],
    data: Mapping[str, str] | None = None,
) -> bytes:
    """Send one request; return the body of a 200 answer, or raise.

    Raises:
        TokenServiceUnavailable: Transport or TLS failure, timeout, a status other than
            200, a compressed or oversized body. Raised outside any ``except`` block, so
            it chains nothing.
    """
    # SECURITY: identity encoding only, so a small compressed body cannot expand into
    # gigabytes before our size check sees it (decompression bomb).
    request_headers = {**headers, "Accept-Encoding": "identity"}
    failure: str
    try:
        async with (
            asyncio.timeout(timeout),
            client.stream(method, url, headers=request_headers, data=data) as response,
        ):
            if response.status_code != httpx.codes.OK:
                # SECURITY: the body is not read or quoted: servers echo tokens in errors.
                failure = f"{what} answered HTTP {response.status_code}"
            elif response.headers.get("Content-Encoding", "identity") != "identity":
                failure = f"{what} sent a compressed body"
            else:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > limit:
                        break
                if len(body) <= limit:
                    return bytes(body)
                failure = f"{what} sent more than {limit} octets"
    except TimeoutError:
        failure = f"{what} did not answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        failure = f"{what} request failed: {type(exc).__name__}"
    raise TokenServiceUnavailable(failure)


def _json_object(document: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(document)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise TokenServiceUnavailable(f"{what} did not send a JSON object")
    return value


def _usable_key(entry: object, algorithms: frozenset[str]) -> jwt.PyJWK | None:
    """A JWKS entry as a verification key, or ``None`` if we must not use it."""
    # SECURITY: algorithm confusion (CVE-2015-9235, CVE-2022-29217): only public
    # asymmetric keys, never "oct" secrets or private halves ("d"), and only for
    # signatures (RFC 7517 §4.2 "use", §4.3 "key_ops").
    if not isinstance(entry, dict) or "d" in entry:
        return None
    if entry.get("kty") not in ("RSA", "EC", "OKP") or entry.get("use", "sig") != "sig":
        return None
    key_ops = entry.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    try:
        key = jwt.PyJWK(entry)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    material = key.key
    fits = {
        "RS256": isinstance(material, rsa.RSAPublicKey) and material.key_size >= MIN_RSA_KEY_BITS,
        # RFC 7518 §3.4: ES256 is ECDSA on P-256 only.
        "ES256": isinstance(material, ec.EllipticCurvePublicKey)
        and isinstance(material.curve, ec.SECP256R1),
        # RFC 8037 §3.1: EdDSA with Ed25519 or Ed448.
        "EdDSA": isinstance(material, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey),
    }
    if key.algorithm_name not in algorithms or not fits.get(key.algorithm_name, False):
        return None
    return key


def _parse_jwks(document: bytes, algorithms: frozenset[str]) -> tuple[jwt.PyJWK, ...]:
    """RFC 7517 §5; the document size limit also bounds the number of keys."""
    entries = _json_object(document, "JWKS").get("keys")
    if not isinstance(entries, list):
        raise TokenServiceUnavailable('JWKS has no "keys" array')
    keys = tuple(k for e in entries if (k := _usable_key(e, algorithms)) is not None)
    if not keys:
        raise TokenServiceUnavailable("JWKS holds no usable signing key")
    return keys


def _select_key(keys: Sequence[jwt.PyJWK], kid: str | None, alg: str) -> jwt.PyJWK | None:
    # SECURITY: the key's own algorithm must be the one the header names, so a token
    # cannot choose how a key is used.
    candidates = [k for k in keys if k.algorithm_name == alg and (kid is None or k.key_id == kid)]
    if kid is None and len(candidates) != 1:
        return None  # without a kid only an unambiguous key will do
    return candidates[0] if candidates else None


def _read_limited(path: Path, limit: int) -> bytes:
    with path.open("rb") as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise TokenServiceUnavailable(f"JWKS file {path} is larger than {limit} octets")
    return data


# Signature and JSON only: every claim is checked by _check_claims against our clock.
_SIGNATURE_ONLY: Final[Options] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": False,
    "verify_aud": False,
    "require": [],
}


class JwtValidator:
    """Validates JWT access tokens locally against a JSON Web Key Set.

    Checks the signature (RS256/ES256/EdDSA, never ``none`` or HMAC), ``iss``, ``aud``,
    ``exp`` (required), ``nbf`` and ``iat`` (if present, with ``CLOCK_LEEWAY_SECONDS``
    of skew), and takes the identity from ``identity_claim``. The ``typ`` header is not
    enforced: Google and Entra ID v1 do not issue RFC 9068 ``at+jwt`` tokens; the
    audience check is what keeps tokens meant for other services out.
    """

    def __init__(
        self,
        *,
        jwks_file: Path | None = None,
        jwks_url: str | None = None,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        identity_claim: str = "email",
        cache_ttl: float = DEFAULT_CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        http_client: httpx.AsyncClient | None = None,
        ca_file: Path | None = None,
        allow_insecure_url: bool = False,
        scope: str | None = None,
        timeout: float = DEFAULT_FETCH_TIMEOUT_SECONDS,
    ) -> None:
        """Configure the validator; no network I/O happens until the first ``validate``.

        Args:
            jwks_file: A local JWKS document (re-read on the same schedule as a URL).
            jwks_url: An https:// URL serving the JWKS. Exactly one source is required.
            issuer: The exact expected ``iss``.
            audience: The ``aud`` value that must be present.
            algorithms: Allowed JWS algorithms, a non-empty subset of
                ``DEFAULT_ALGORITHMS``.
            identity_claim: The claim holding the identity.
            cache_ttl: Seconds a fetched key set is used before it is fetched again.
            clock: Seconds since the epoch; used for claims and cache ages.
            http_client: A client to use (not closed by ``aclose``); by default one is
                created with postguard's strict TLS context.
            ca_file: Trust anchors for the created client; ``None`` uses the system's.
            allow_insecure_url: Accept an http:// ``jwks_url`` (a security weakening).
            scope: The ``scope`` member of the SASL error object, if any.
            timeout: Seconds one fetch may take in total.

        Raises:
            ValueError: Missing or duplicate source, bad URL, or disallowed algorithm.
            OSError, ssl.SSLError: ``ca_file`` cannot be read or holds no certificate.
        """
        if (jwks_file is None) == (jwks_url is None):
            raise ValueError("exactly one of jwks_file and jwks_url is required")
        allowed = frozenset(algorithms)
        if not allowed or not allowed <= frozenset(DEFAULT_ALGORITHMS):
            raise ValueError(f"algorithms must be a non-empty subset of {DEFAULT_ALGORITHMS}")
        if not issuer or not audience or not identity_claim:
            raise ValueError("issuer, audience and identity_claim must not be empty")
        self._file = jwks_file
        self._url = None
        if jwks_url is not None:
            self._url = _check_url(jwks_url, allow_http=allow_insecure_url, what="jwks_url")
        self._issuer = issuer
        self._audience = audience
        self._algorithms = allowed
        self._identity_claims = (identity_claim,)
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._scope = scope
        self._timeout = timeout
        self._owns_client = http_client is None and self._url is not None
        self._client = http_client
        if self._owns_client:
            self._client = _http_client(ca_file, timeout)
        self._lock = asyncio.Lock()
        self._keys: tuple[jwt.PyJWK, ...] = ()
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._last_failure: str | None = None

    def __repr__(self) -> str:
        source = self._url if self._url is not None else str(self._file)
        return f"JwtValidator(source={source!r}, issuer={self._issuer!r})"

    async def validate(self, token: str, user_hint: str | None) -> TokenResult:
        """See ``TokenValidator.validate``."""
        if not _is_well_formed(token):
            return _reject("malformed token", self._scope)
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            return _reject("malformed token", self._scope)
        alg, kid = header.get("alg"), header.get("kid")
        # SECURITY: "alg": "none" and HS256-with-the-public-key (algorithm confusion).
        if not isinstance(alg, str) or alg not in self._algorithms:
            return _reject("algorithm not allowed", self._scope)
        # RFC 7515 §4.1.11: we implement no extension, so any "crit" must be refused.
        if "crit" in header or (kid is not None and not isinstance(kid, str)):
            return _reject("unsupported header", self._scope)
        key = _select_key(await self._cached_keys(), kid, alg)
        if key is None:
            key = _select_key(await self._refreshed_keys(), kid, alg)
        if key is None:
            return _reject("no key matches the token's kid and alg", self._scope)
        try:
            claims = jwt.decode(token, key=key, algorithms=[alg], options=_SIGNATURE_ONLY)
        except jwt.InvalidSignatureError:
            return _reject("bad signature", self._scope)
        except (jwt.PyJWTError, ValueError, TypeError):
            return _reject("token rejected by the JWT decoder", self._scope)
        return _finish(
            claims,
            self._clock(),
            user_hint,
            issuer=self._issuer,
            audience=self._audience,
            require_exp=True,
            identity_claims=self._identity_claims,
            scope=self._scope,
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this validator created it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    def _is_fresh(self, now: float) -> bool:
        return self._loaded_at is not None and 0 <= now - self._loaded_at < self._cache_ttl

    def _tried_recently(self, now: float) -> bool:
        attempted = self._attempted_at
        return attempted is not None and 0 <= now - attempted < MIN_JWKS_REFRESH_INTERVAL_SECONDS

    async def _cached_keys(self) -> tuple[jwt.PyJWK, ...]:
        if self._is_fresh(self._clock()):
            return self._keys
        async with self._lock:
            now = self._clock()
            if self._is_fresh(now):
                return self._keys
            if self._last_failure is not None and self._tried_recently(now):
                raise TokenServiceUnavailable(self._last_failure)
            return await self._reload(now)

    async def _refreshed_keys(self) -> tuple[jwt.PyJWK, ...]:
        """Reload for an unknown kid, unless a load was tried too recently."""
        async with self._lock:
            now = self._clock()
            if not self._tried_recently(now):
                return await self._reload(now)
            if self._last_failure is not None:
                raise TokenServiceUnavailable(self._last_failure)
            # Rate-limited, but another session may have just reloaded: use its keys.
            return self._keys

    async def _reload(self, now: float) -> tuple[jwt.PyJWK, ...]:
        self._attempted_at = now
        try:
            keys = _parse_jwks(await self._read_document(), self._algorithms)
        except TokenServiceUnavailable as exc:
            self._last_failure = str(exc)
            raise
        self._keys, self._loaded_at, self._last_failure = keys, now, None
        return keys

    async def _read_document(self) -> bytes:
        if self._url is not None and self._client is not None:
            return await _fetch(
                self._client,
                "GET",
                self._url,
                what="JWKS endpoint",
                limit=MAX_JWKS_OCTETS,
                timeout=self._timeout,
                headers={"Accept": "application/jwk-set+json, application/json"},
            )
        assert self._file is not None
        failure: str
        try:
            return await asyncio.to_thread(_read_limited, self._file, MAX_JWKS_OCTETS)
        except OSError as exc:
            failure = f"cannot read JWKS file {self._file}: {exc.strerror}"
        raise TokenServiceUnavailable(failure)


class _Secret:
    """A string that never shows itself in ``repr``/``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class _CachedIdentity:
    identity: str
    expires_at: float


class IntrospectionValidator:
    """Validates opaque (or any) tokens by asking the authorisation server (RFC 7662).

    The answer must say ``"active": true``; ``exp``/``nbf``/``iat`` are checked if
    present, ``iss``/``aud`` if configured. Positive answers are cached by SHA-256 of the
    token (never the token itself) for ``min(cache_ttl, exp - now)``, bounded to
    ``MAX_CACHED_TOKENS`` entries; negative answers are not cached.
    """

    def __init__(
        self,
        *,
        introspection_url: str,
        client_id: str,
        client_secret_file: Path,
        issuer: str | None = None,
        audience: str | None = None,
        identity_claim: str = "email",
        fallback_claim: str | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        http_client: httpx.AsyncClient | None = None,
        ca_file: Path | None = None,
        scope: str | None = None,
        timeout: float = DEFAULT_FETCH_TIMEOUT_SECONDS,
    ) -> None:
        """Configure the validator and read the client secret.

        Args:
            introspection_url: The https:// introspection endpoint (never plain HTTP:
                every request carries a token and our client secret).
            client_id: Our client id at the authorisation server.
            client_secret_file: File holding the client secret (trailing line breaks
                are ignored).
            issuer: If set, ``iss`` must be present and equal.
            audience: If set, ``aud`` must be present and contain it.
            identity_claim: The member holding the identity.
            fallback_claim: Used when ``identity_claim`` is absent, e.g. ``"username"``
                (RFC 7662 §2.2).
            cache_ttl: Upper bound, in seconds, on how long a positive answer is reused.
            clock: Seconds since the epoch; used for claims and cache ages.
            http_client: A client to use (not closed by ``aclose``); by default one is
                created with postguard's strict TLS context.
            ca_file: Trust anchors for the created client; ``None`` uses the system's.
            scope: The ``scope`` member of the SASL error object, if any.
            timeout: Seconds one request may take in total.

        Raises:
            ValueError: Bad URL, empty client id or secret.
            OSError: The secret file cannot be read.
        """
        self._url = _check_url(introspection_url, allow_http=False, what="introspection_url")
        secret = client_secret_file.read_text(encoding="utf-8").rstrip("\r\n")
        if not client_id or not secret:
            raise ValueError("introspection client id and secret must not be empty")
        # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
        credentials = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
        self._authorization = _Secret("Basic " + base64.b64encode(credentials).decode("ascii"))
        self._client_id = client_id
        self._issuer = issuer
        self._audience = audience
        claims = (identity_claim,) if fallback_claim is None else (identity_claim, fallback_claim)
        self._identity_claims = claims
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._scope = scope
        self._timeout = timeout
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else _http_client(ca_file, timeout)
        self._cache: dict[bytes, _CachedIdentity] = {}

    def __repr__(self) -> str:
        return f"IntrospectionValidator(url={self._url!r}, client_id={self._client_id!r})"

    async def validate(self, token: str, user_hint: str | None) -> TokenResult:
        """See ``TokenValidator.validate``."""
        if not _is_well_formed(token):
            return _reject("malformed token", self._scope)
        digest = hashlib.sha256(token.encode("ascii")).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            # The upper bound also drops entries if the clock jumped backwards.
            if 0 < cached.expires_at - now <= self._cache_ttl:
                return _match_hint(cached.identity, user_hint, self._scope)
            del self._cache[digest]
        document = await _fetch(
            self._client,
            "POST",
            self._url,
            what="introspection endpoint",
            limit=MAX_INTROSPECTION_OCTETS,
            timeout=self._timeout,
            headers={"Authorization": self._authorization.reveal(), "Accept": "application/json"},
            # RFC 7662 §2.1.
            data={"token": token, "token_type_hint": "access_token"},
        )
        claims = _json_object(document, "introspection endpoint")
        # RFC 7662 §2.2: "active" is a REQUIRED boolean; anything but true is a no.
        if claims.get("active") is not True:
            return _reject("token not active", self._scope)
        now = self._clock()
        result = _finish(
            claims,
            now,
            None,
            issuer=self._issuer,
            audience=self._audience,
            require_exp=False,
            identity_claims=self._identity_claims,
            scope=self._scope,
        )
        if result.subject_identity is None:
            return result
        self._remember(digest, result.subject_identity, claims.get("exp"), now)
        return _match_hint(result.subject_identity, user_hint, self._scope)

    async def aclose(self) -> None:
        """Close the HTTP client if this validator created it."""
        if self._owns_client:
            await self._client.aclose()

    def _remember(self, digest: bytes, identity: str, exp: object, now: float) -> None:
        lifetime = self._cache_ttl
        if _is_number(exp):
            lifetime = min(lifetime, exp - now)
        if lifetime <= 0:
            return
        if len(self._cache) >= MAX_CACHED_TOKENS:
            for stale in [d for d, c in self._cache.items() if c.expires_at <= now]:
                del self._cache[stale]
        if len(self._cache) >= MAX_CACHED_TOKENS:
            del self._cache[next(iter(self._cache))]  # the oldest insertion
        self._cache[digest] = _CachedIdentity(identity, now + lifetime)


def build_validator(
    *,
    jwks_file: Path | None = None,
    jwks_url: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
    identity_claim: str = "email",
    introspection_url: str | None = None,
    introspection_client_id: str | None = None,
    introspection_client_secret_file: Path | None = None,
    introspection_fallback_claim: str | None = None,
    cache_ttl: float = DEFAULT_CACHE_TTL_SECONDS,
    allow_insecure_jwks_url: bool = False,
    ca_file: Path | None = None,
    scope: str | None = None,
) -> TokenValidator | None:
    """Build the validator the ``[auth.oauth]`` settings describe.

    Args:
        jwks_file, jwks_url, issuer, audience, algorithms, identity_claim, cache_ttl,
        allow_insecure_jwks_url, ca_file, scope: See ``JwtValidator``.
        introspection_url, introspection_client_id, introspection_client_secret_file,
        introspection_fallback_claim: See ``IntrospectionValidator`` (``url``,
        ``client_id``, ``client_secret_file``, ``fallback_claim``).

    Returns:
        A ``JwtValidator`` if a key set is configured, an ``IntrospectionValidator`` if
        an introspection endpoint is, or ``None`` if neither (OAuth is off).

    Raises:
        ValueError: Both kinds configured, or a required setting missing or invalid.
        OSError: The client secret file cannot be read.
    """
    wants_jwt = jwks_file is not None or jwks_url is not None
    if wants_jwt and introspection_url is not None:
        raise ValueError("configure either a JWKS (jwks_file/jwks_url) or introspection_url")
    if introspection_url is not None:
        if introspection_client_id is None or introspection_client_secret_file is None:
            raise ValueError(
                "introspection_url needs introspection_client_id and "
                "introspection_client_secret_file"
            )
        return IntrospectionValidator(
            introspection_url=introspection_url,
            client_id=introspection_client_id,
            client_secret_file=introspection_client_secret_file,
            issuer=issuer,
            audience=audience,
            identity_claim=identity_claim,
            fallback_claim=introspection_fallback_claim,
            cache_ttl=cache_ttl,
            ca_file=ca_file,
            scope=scope,
        )
    if not wants_jwt:
        if issuer is not None or audience is not None:
            raise ValueError("issuer/audience set without jwks_file, jwks_url or introspection_url")
        return None
    if issuer is None or audience is None:
        raise ValueError("a JWKS validator needs issuer and audience")
    return JwtValidator(
        jwks_file=jwks_file,
        jwks_url=jwks_url,
        issuer=issuer,
        audience=audience,
        algorithms=algorithms,
        identity_claim=identity_claim,
        cache_ttl=cache_ttl,
        ca_file=ca_file,
        allow_insecure_url=allow_insecure_jwks_url,
        scope=scope,
    )
