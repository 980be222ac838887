"""``JwtValidator``: JWT bearer tokens checked against a JWKS served over real HTTPS.

Covers RS256/ES256/EdDSA acceptance; refusal (``invalid_token``) of expired,
not-yet-valid, wrong-issuer, wrong-audience, badly signed, unknown-kid, ``alg: none``,
HS256-with-the-public-key and user-mismatched tokens; the JWKS from a file; caching,
TTL expiry and the rate-limited refresh on an unknown ``kid`` (counted on the server);
``TokenServiceUnavailable`` when the JWKS cannot be had; the https-only rule; and that
no token ever shows in a result or an exception.
"""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from oauth.loopback import (
    AUDIENCE,
    HOUR,
    IDENTITY,
    ISSUER,
    START_TIME,
    FakeClock,
    LoopbackHttpServer,
    Request,
    Response,
    SigningKey,
    assert_secret_absent,
    b64url,
    claims,
    forge,
    jwks,
    new_key,
)
from postguard.accounts.oauth import (
    CLOCK_LEEWAY_SECONDS,
    MAX_JWKS_OCTETS,
    MIN_JWKS_REFRESH_INTERVAL_SECONDS,
    JwtValidator,
    TokenResult,
    TokenServiceUnavailable,
)

JWKS_PATH = "/.well-known/jwks.json"
INVALID = {"status": "invalid_token", "schemes": "bearer"}
CACHE_TTL = 300.0

MakeValidator = Callable[..., JwtValidator]


@pytest.fixture
async def make_validator(
    https_server: LoopbackHttpServer, http_client: httpx.AsyncClient, clock: FakeClock
) -> AsyncIterator[MakeValidator]:
    """``make_validator(**overrides)``: a JwtValidator on the HTTPS JWKS, closed after."""
    made: list[JwtValidator] = []

    def make(**overrides: Any) -> JwtValidator:
        args: dict[str, Any] = {
            "jwks_url": https_server.url(JWKS_PATH),
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "cache_ttl": CACHE_TTL,
            "clock": clock,
            "http_client": http_client,
        }
        args.update(overrides)
        validator = JwtValidator(**args)
        made.append(validator)
        return validator

    yield make
    for validator in made:
        await validator.aclose()


@pytest.fixture
def served(
    https_server: LoopbackHttpServer, rsa_key: SigningKey, ec_key: SigningKey, ed_key: SigningKey
) -> LoopbackHttpServer:
    """The HTTPS server publishing the RSA, P-256 and Ed25519 keys."""
    https_server.serve_json(JWKS_PATH, jwks(rsa_key, ec_key, ed_key))
    return https_server


def assert_invalid(result: TokenResult) -> None:
    assert result.subject_identity is None
    assert result.error == INVALID
    assert not result.is_valid


# --- acceptance ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_valid_token_yields_identity(
    alg: str,
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    request: pytest.FixtureRequest,
) -> None:
    key = request.getfixturevalue({"RS256": "rsa_key", "ES256": "ec_key", "EdDSA": "ed_key"}[alg])
    result = await make_validator().validate(key.sign(claims()), None)
    assert result == TokenResult(subject_identity=IDENTITY, error=None)
    assert result.is_valid


async def test_user_hint_matches_identity_ascii_case_insensitively(
    served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    result = await make_validator().validate(rsa_key.sign(claims()), "Alice@Example.ORG")
    assert result.subject_identity == IDENTITY


async def test_audience_list_containing_ours_is_accepted(
    served: LoopbackHttpServer, make_validator: MakeValidator, ec_key: SigningKey
) -> None:
    token = ec_key.sign(claims(aud=["other-service", AUDIENCE]))
    assert (await make_validator().validate(token, None)).subject_identity == IDENTITY


async def test_configured_identity_claim_is_used(
    served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(claims(preferred_username="alice"))
    validator = make_validator(identity_claim="preferred_username")
    assert (await validator.validate(token, "alice")).subject_identity == "alice"


@pytest.mark.parametrize(
    ("exp_offset", "valid"),
    [(-CLOCK_LEEWAY_SECONDS + 1, True), (-CLOCK_LEEWAY_SECONDS, False), (-HOUR, False)],
    ids=["expired-within-leeway", "expired-by-leeway", "expired-an-hour-ago"],
)
async def test_expired_token_is_invalid_token_beyond_the_leeway(
    exp_offset: float,
    valid: bool,
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    token = rsa_key.sign(claims(iat=int(clock.now - 2 * HOUR), nbf=None, exp=int(clock.now)))
    clock.advance(-exp_offset)
    result = await make_validator().validate(token, None)
    assert result.is_valid is valid
    if not valid:
        assert_invalid(result)
        assert result.detail == "token expired"


@pytest.mark.parametrize(
    ("nbf_offset", "valid"),
    [(CLOCK_LEEWAY_SECONDS, True), (CLOCK_LEEWAY_SECONDS + 1, False), (HOUR, False)],
    ids=["starts-within-leeway", "starts-beyond-leeway", "starts-in-an-hour"],
)
async def test_not_yet_valid_token_is_invalid_token_beyond_the_leeway(
    nbf_offset: float,
    valid: bool,
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    start = int(clock.now + nbf_offset)
    token = rsa_key.sign(claims(iat=None, nbf=start, exp=start + int(HOUR)))
    result = await make_validator().validate(token, None)
    assert result.is_valid is valid
    if not valid:
        assert_invalid(result)
        assert result.detail == "token not yet valid"


# --- refusal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"iss": "https://idp.example.org.evil.test"}, "issuer mismatch"),
        ({"iss": "https://idp.example"}, "issuer mismatch"),  # a prefix (CVE-2024-53861)
        ({"iss": None}, "issuer mismatch"),
        ({"aud": "another-service"}, "audience mismatch"),
        ({"aud": ["another-service"]}, "audience mismatch"),
        ({"aud": None}, "audience mismatch"),
        ({"exp": None}, "exp claim missing"),
        ({"exp": "tomorrow"}, "exp claim is not a number"),
        ({"iat": int(START_TIME + HOUR)}, "token issued in the future"),
        ({"email": None}, "identity claim missing, malformed or unverified"),
        (
            {"email": "alice@example.org\r\nBcc: x"},
            "identity claim missing, malformed or unverified",
        ),
        ({"email_verified": False}, "identity claim missing, malformed or unverified"),
    ],
    ids=[
        "wrong-iss",
        "iss-prefix",
        "no-iss",
        "wrong-aud",
        "wrong-aud-list",
        "no-aud",
        "no-exp",
        "exp-not-number",
        "iat-in-future",
        "no-email",
        "email-with-crlf",
        "email-unverified",
    ],
)
async def test_bad_claims_are_invalid_token(
    changes: dict[str, Any],
    detail: str,
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
) -> None:
    result = await make_validator().validate(rsa_key.sign(claims(**changes)), None)
    assert_invalid(result)
    assert result.detail == detail


async def test_user_hint_differing_from_identity_is_invalid_token(
    served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    result = await make_validator().validate(rsa_key.sign(claims()), "bob@example.org")
    assert_invalid(result)


async def test_user_hint_does_not_match_through_unicode_case_folding(
    served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(claims(email="strasse@example.org"))
    assert_invalid(await make_validator().validate(token, "straße@example.org"))


async def test_bad_signature_is_invalid_token(
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    other_rsa_key: SigningKey,
) -> None:
    forged = other_rsa_key.with_kid(rsa_key.kid).sign(claims())
    result = await make_validator().validate(forged, None)
    assert_invalid(result)
    assert result.detail == "bad signature"


async def test_tampered_payload_is_invalid_token(
    served: LoopbackHttpServer, make_validator: MakeValidator, ed_key: SigningKey
) -> None:
    header, _payload, signature = ed_key.sign(claims()).split(".")
    payload = b64url(json.dumps(claims(email="mallory@example.org")).encode())
    result = await make_validator().validate(f"{header}.{payload}.{signature}", None)
    assert_invalid(result)
    assert result.detail == "bad signature"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_invalid_token_without_fetching_keys(
    alg: str, served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    token = forge({"alg": alg, "typ": "JWT", "kid": rsa_key.kid}, claims())
    result = await make_validator().validate(token, None)
    assert_invalid(result)
    assert result.detail == "algorithm not allowed"
    assert served.count(JWKS_PATH) == 0


@pytest.mark.parametrize("encoding", ["pem", "der", "jwk-json"])
async def test_hs256_signed_with_the_public_key_is_invalid_token(
    encoding: str, served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    public = rsa_key.private_key.public_key()
    secret = {
        "pem": lambda: public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": lambda: public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": lambda: json.dumps(rsa_key.public_jwk()).encode(),
    }[encoding]()
    token = forge({"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}, claims(), hmac_key=secret)
    assert_invalid(await make_validator().validate(token, None))


async def test_algorithm_outside_the_configured_list_is_invalid_token(
    served: LoopbackHttpServer, make_validator: MakeValidator, ec_key: SigningKey
) -> None:
    validator = make_validator(algorithms=["RS256"])
    result = await validator.validate(ec_key.sign(claims()), None)
    assert_invalid(result)
    assert result.detail == "algorithm not allowed"


async def test_header_alg_differing_from_the_keys_alg_is_invalid_token(
    served: LoopbackHttpServer, make_validator: MakeValidator, ec_key: SigningKey
) -> None:
    # Signed with ES256 but pointing at the RSA key's kid.
    token = ec_key.with_kid("rsa-1").sign(claims())
    assert_invalid(await make_validator().validate(token, None))


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "a.b.c", "x" * 20_000, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln\r\n", "tök.en.x"],
    ids=["empty", "no-dots", "garbage-segments", "oversized", "crlf", "non-ascii"],
)
async def test_malformed_token_is_invalid_token(
    token: str, served: LoopbackHttpServer, make_validator: MakeValidator
) -> None:
    result = await make_validator().validate(token, None)
    assert_invalid(result)
    assert result.detail == "malformed token"


async def test_critical_header_extension_is_invalid_token(
    served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    header = {"alg": "RS256", "kid": rsa_key.kid, "crit": ["exp"], "exp": 1}
    token = forge(header, claims(), hmac_key=b"any")
    result = await make_validator().validate(token, None)
    assert_invalid(result)


async def test_token_without_kid_needs_an_unambiguous_key(
    https_server: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    other_rsa_key: SigningKey,
) -> None:
    token = rsa_key.sign(claims(), kid=None)
    https_server.serve_json(JWKS_PATH, jwks(rsa_key))
    assert (await make_validator().validate(token, None)).subject_identity == IDENTITY
    https_server.serve_json(JWKS_PATH, jwks(rsa_key, other_rsa_key))
    assert_invalid(await make_validator().validate(token, None))


async def test_rsa_key_below_2048_bits_is_never_used(
    https_server: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    weak = new_key("RS256", "weak", rsa_bits=1024)
    https_server.serve_json(JWKS_PATH, jwks(weak, rsa_key))
    with warnings.catch_warnings():  # recent PyJWT warns when signing with a short key
        warnings.simplefilter("ignore")
        token = weak.sign(claims())
    assert_invalid(await make_validator().validate(token, None))


async def test_symmetric_and_private_jwks_entries_are_never_used(
    https_server: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    private = {**rsa_key.public_jwk(), "d": b64url(b"\x01" * 256)}
    symmetric = {"kty": "oct", "kid": "hmac", "k": b64url(b"s" * 32), "alg": "HS256"}
    https_server.serve_json(JWKS_PATH, {"keys": [symmetric, private]})
    with pytest.raises(TokenServiceUnavailable, match="no usable signing key"):
        await make_validator().validate(rsa_key.sign(claims()), None)


# --- key set sources, caching and refresh ----------------------------------------------


async def test_jwks_file_is_used(
    tmp_path: Path, make_validator: MakeValidator, ec_key: SigningKey
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(ec_key)))
    validator = make_validator(jwks_url=None, jwks_file=path, http_client=None)
    assert (await validator.validate(ec_key.sign(claims()), None)).subject_identity == IDENTITY


async def test_jwks_file_is_reread_for_an_unknown_kid(
    tmp_path: Path,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    other_rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(rsa_key)))
    validator = make_validator(jwks_url=None, jwks_file=path, http_client=None)
    assert (await validator.validate(rsa_key.sign(claims()), None)).is_valid
    path.write_text(json.dumps(jwks(rsa_key, other_rsa_key)))
    clock.advance(MIN_JWKS_REFRESH_INTERVAL_SECONDS)
    assert (await validator.validate(other_rsa_key.sign(claims(clock.now)), None)).is_valid


async def test_missing_jwks_file_is_service_unavailable(
    tmp_path: Path, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    validator = make_validator(jwks_url=None, jwks_file=tmp_path / "absent.json")
    with pytest.raises(TokenServiceUnavailable, match="cannot read JWKS file"):
        await validator.validate(rsa_key.sign(claims()), None)


async def test_jwks_url_is_cached_until_the_ttl_expires(
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    validator = make_validator()
    token = rsa_key.sign(claims(exp=int(clock.now + 2 * CACHE_TTL)))
    assert (await validator.validate(token, None)).is_valid
    assert (await validator.validate(token, None)).is_valid
    assert served.count(JWKS_PATH) == 1
    clock.advance(CACHE_TTL - 1)
    assert (await validator.validate(token, None)).is_valid
    assert served.count(JWKS_PATH) == 1
    clock.advance(1)
    assert (await validator.validate(token, None)).is_valid
    assert served.count(JWKS_PATH) == 2


async def test_concurrent_validations_share_one_jwks_fetch(
    served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    validator = make_validator()
    token = rsa_key.sign(claims())
    results = await asyncio.gather(*(validator.validate(token, None) for _ in range(20)))
    assert all(r.subject_identity == IDENTITY for r in results)
    assert served.count(JWKS_PATH) == 1


async def test_unknown_kid_refreshes_the_jwks_and_finds_a_rotated_key(
    https_server: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    other_rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    https_server.serve_json(JWKS_PATH, jwks(rsa_key))
    validator = make_validator()
    assert (await validator.validate(rsa_key.sign(claims()), None)).is_valid
    https_server.serve_json(JWKS_PATH, jwks(rsa_key, other_rsa_key))
    clock.advance(MIN_JWKS_REFRESH_INTERVAL_SECONDS)
    result = await validator.validate(other_rsa_key.sign(claims(clock.now)), None)
    assert result.subject_identity == IDENTITY
    assert https_server.count(JWKS_PATH) == 2


async def test_unknown_kid_after_refresh_is_invalid_token(
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    other_rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    validator = make_validator()
    assert (await validator.validate(rsa_key.sign(claims()), None)).is_valid
    clock.advance(MIN_JWKS_REFRESH_INTERVAL_SECONDS)
    result = await validator.validate(other_rsa_key.sign(claims(clock.now)), None)
    assert_invalid(result)
    assert result.detail == "no key matches the token's kid and alg"
    assert served.count(JWKS_PATH) == 2


async def test_unknown_kid_refresh_happens_at_most_once_per_interval(
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    validator = make_validator()
    assert (await validator.validate(rsa_key.sign(claims()), None)).is_valid
    for kid in ("forged-1", "forged-2", "forged-3"):
        assert_invalid(await validator.validate(rsa_key.with_kid(kid).sign(claims()), None))
    assert served.count(JWKS_PATH) == 1  # the initial fetch counts: too recent to repeat
    clock.advance(MIN_JWKS_REFRESH_INTERVAL_SECONDS)
    for kid in ("forged-4", "forged-5"):
        token = rsa_key.with_kid(kid).sign(claims(clock.now))
        assert_invalid(await validator.validate(token, None))
    assert served.count(JWKS_PATH) == 2


# --- the key set cannot be had ---------------------------------------------------------


async def test_jwks_server_down_is_service_unavailable(
    https_server: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    validator = make_validator()
    await https_server.stop()
    with pytest.raises(TokenServiceUnavailable, match="JWKS endpoint request failed"):
        await validator.validate(rsa_key.sign(claims()), None)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (Response(500, b"oops"), "answered HTTP 500"),
        (Response(302, b"", {"Location": "http://127.0.0.1/jwks"}), "answered HTTP 302"),
        (Response(200, b"<html>not json</html>"), "did not send a JSON object"),
        (Response.json({"keys": "none"}), 'no "keys" array'),
        (Response(200, b" " * (MAX_JWKS_OCTETS + 1)), f"more than {MAX_JWKS_OCTETS} octets"),
        (Response(200, b"\x1f\x8b", {"Content-Encoding": "gzip"}), "compressed body"),
    ],
    ids=["http-500", "redirect", "not-json", "no-keys", "oversized", "compressed"],
)
async def test_bad_jwks_answer_is_service_unavailable(
    response: Response,
    message: str,
    https_server: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
) -> None:
    https_server.routes[JWKS_PATH] = lambda _request: response
    with pytest.raises(TokenServiceUnavailable, match=message):
        await make_validator().validate(rsa_key.sign(claims()), None)


async def test_silent_jwks_server_is_service_unavailable_after_the_timeout(
    https_server: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    async def never_answer(_request: Request) -> Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    https_server.routes[JWKS_PATH] = never_answer
    with pytest.raises(TokenServiceUnavailable, match=re.escape("did not answer within 0.2 s")):
        await make_validator(timeout=0.2).validate(rsa_key.sign(claims()), None)


async def test_failed_fetch_fails_fast_until_the_refresh_interval_passes(
    https_server: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    https_server.serve_json(JWKS_PATH, {}, status=503)
    validator = make_validator()
    token = rsa_key.sign(claims(exp=int(clock.now + HOUR)))
    for _ in range(3):
        with pytest.raises(TokenServiceUnavailable, match="answered HTTP 503"):
            await validator.validate(token, None)
    assert https_server.count(JWKS_PATH) == 1
    https_server.serve_json(JWKS_PATH, jwks(rsa_key))
    clock.advance(MIN_JWKS_REFRESH_INTERVAL_SECONDS)
    assert (await validator.validate(token, None)).is_valid
    assert https_server.count(JWKS_PATH) == 2


async def test_expired_cache_with_unreachable_server_is_service_unavailable(
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    clock: FakeClock,
) -> None:
    validator = make_validator()
    token = rsa_key.sign(claims(exp=int(clock.now + HOUR)))
    assert (await validator.validate(token, None)).is_valid
    served.serve_json(JWKS_PATH, {}, status=500)
    clock.advance(CACHE_TTL)
    with pytest.raises(TokenServiceUnavailable):
        await validator.validate(token, None)


async def test_untrusted_jwks_certificate_is_service_unavailable(
    served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    # No http_client and no ca_file: the system trust store does not know the test CA.
    validator = make_validator(http_client=None)
    with pytest.raises(TokenServiceUnavailable, match="ConnectError"):
        await validator.validate(rsa_key.sign(claims()), None)


async def test_ca_file_makes_the_created_client_trust_the_jwks_server(
    served: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey, ca_file: Path
) -> None:
    validator = make_validator(http_client=None, ca_file=ca_file)
    assert (await validator.validate(rsa_key.sign(claims()), None)).is_valid


# --- configuration ---------------------------------------------------------------------


async def test_http_jwks_url_is_refused_unless_allowed(
    http_server: LoopbackHttpServer, make_validator: MakeValidator, rsa_key: SigningKey
) -> None:
    http_server.serve_json(JWKS_PATH, jwks(rsa_key))
    with pytest.raises(ValueError, match="https://"):
        make_validator(jwks_url=http_server.url(JWKS_PATH))
    validator = make_validator(
        jwks_url=http_server.url(JWKS_PATH), http_client=None, allow_insecure_url=True
    )
    assert (await validator.validate(rsa_key.sign(claims()), None)).is_valid
    assert http_server.count(JWKS_PATH) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"algorithms": ["HS256"]},
        {"algorithms": ["RS256", "none"]},
        {"algorithms": []},
        {"jwks_url": None},
        {"jwks_file": Path("/etc/jwks.json")},
        {"jwks_url": "ftp://idp.example.org/jwks"},
        {"jwks_url": "https:///jwks"},
        {"issuer": ""},
    ],
    ids=[
        "hs256",
        "none",
        "empty-algorithms",
        "no-source",
        "two-sources",
        "ftp",
        "no-host",
        "empty-iss",
    ],
)
def test_invalid_configuration_is_refused(
    overrides: dict[str, Any], make_validator: MakeValidator
) -> None:
    with pytest.raises(ValueError):
        make_validator(**overrides)


# --- secrets ---------------------------------------------------------------------------


async def test_token_never_appears_in_results_or_exceptions(
    served: LoopbackHttpServer,
    make_validator: MakeValidator,
    rsa_key: SigningKey,
    other_rsa_key: SigningKey,
) -> None:
    validator = make_validator()
    good = rsa_key.sign(claims())
    forged = other_rsa_key.with_kid(rsa_key.kid).sign(claims())
    results = [await validator.validate(good, None), await validator.validate(forged, None)]
    served.routes[JWKS_PATH] = lambda request: Response(500, str(request.headers).encode())
    with pytest.raises(TokenServiceUnavailable) as caught:
        await make_validator().validate(good, None)
    for token in (good, forged):
        assert_secret_absent(token, validator, *results, caught.value)
