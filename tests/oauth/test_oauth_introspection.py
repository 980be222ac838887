"""``IntrospectionValidator``: RFC 7662 token introspection against a real HTTPS server.

The loopback authorisation server checks our HTTP Basic client credentials and the form
body on every request, and answers from a table of tokens. Covers active, inactive and
expired tokens, ``iss``/``aud`` checks, the identity claim and its fallback, caching by
token hash (counted on the server, bounded by ``exp``), service failures
(``TokenServiceUnavailable``), https-only, and that neither the token nor the client
secret shows up in results, exceptions or reprs.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

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
    assert_secret_absent,
)
from postguard.accounts.oauth import (
    CLOCK_LEEWAY_SECONDS,
    IntrospectionValidator,
    TokenResult,
    TokenServiceUnavailable,
)

PATH = "/oauth2/introspect"
CLIENT_ID = "postguard"
# Characters that RFC 6749 §2.3.1 requires us to form-urlencode before Basic encoding.
CLIENT_SECRET = "s3cr3t:with spaces+symbols"
EXPECTED_AUTHORIZATION = "Basic " + base64.b64encode(
    b"postguard:s3cr3t%3Awith+spaces%2Bsymbols"
).decode("ascii")
CACHE_TTL = 300.0
INVALID = {"status": "invalid_token", "schemes": "bearer"}
ACTIVE_TOKEN = "mF_9.B5f-4.1JqM"  # RFC 6750 §2.1's example b64token
OTHER_TOKEN = "2YotnFZFEjr1zCsicMWpAA"  # RFC 6749 §4.1.3's example

MakeValidator = Callable[..., IntrospectionValidator]


class AuthorisationServer:
    """The introspection endpoint: checks client auth, answers from ``tokens``."""

    def __init__(self, server: LoopbackHttpServer, clock: FakeClock) -> None:
        self.server = server
        self.tokens: dict[str, dict[str, Any]] = {}
        self.clock = clock
        server.routes[PATH] = self.introspect

    def introspect(self, request: Request) -> Response:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        form = parse_qs(request.body.decode("ascii"), strict_parsing=True)
        token = form["token"][0]
        if request.headers.get("authorization") != EXPECTED_AUTHORIZATION:
            # Echo the token, as careless servers do: it must not reach our exceptions.
            return Response.json({"error": "invalid_client", "token": token}, status=401)
        assert form["token_type_hint"] == ["access_token"]
        return Response.json(self.tokens.get(token, {"active": False}))

    def active(self, **changes: Any) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "active": True,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "client_id": "thunderbird",
            "username": "alice",
            "email": IDENTITY,
            "token_type": "Bearer",
            "iat": int(self.clock.now),
            "exp": int(self.clock.now + HOUR),
        }
        answer.update(changes)
        return {k: v for k, v in answer.items() if v is not None}

    @property
    def calls(self) -> int:
        return self.server.count(PATH)


@pytest.fixture
def authority(https_server: LoopbackHttpServer, clock: FakeClock) -> AuthorisationServer:
    return AuthorisationServer(https_server, clock)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text(CLIENT_SECRET + "\n")
    return path


@pytest.fixture
async def make_validator(
    https_server: LoopbackHttpServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
    secret_file: Path,
) -> AsyncIterator[MakeValidator]:
    made: list[IntrospectionValidator] = []

    def make(**overrides: Any) -> IntrospectionValidator:
        args: dict[str, Any] = {
            "introspection_url": https_server.url(PATH),
            "client_id": CLIENT_ID,
            "client_secret_file": secret_file,
            "cache_ttl": CACHE_TTL,
            "clock": clock,
            "http_client": http_client,
        }
        args.update(overrides)
        validator = IntrospectionValidator(**args)
        made.append(validator)
        return validator

    yield make
    for validator in made:
        await validator.aclose()


def assert_invalid(result: TokenResult) -> None:
    assert result.subject_identity is None
    assert result.error == INVALID


# --- answers ---------------------------------------------------------------------------


async def test_active_token_yields_identity_with_client_credentials_checked(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active()
    result = await make_validator().validate(ACTIVE_TOKEN, "ALICE@example.org")
    assert result == TokenResult(subject_identity=IDENTITY, error=None)
    (request,) = authority.server.requests
    assert request.headers["authorization"] == EXPECTED_AUTHORIZATION
    assert parse_qs(request.body.decode()) == {
        "token": [ACTIVE_TOKEN],
        "token_type_hint": ["access_token"],
    }


@pytest.mark.parametrize(
    "answer",
    [{"active": False}, {"active": "true", "email": IDENTITY}, {"email": IDENTITY}, {}],
    ids=["inactive", "active-as-string", "active-missing", "empty"],
)
async def test_token_not_reported_active_is_invalid_token(
    answer: dict[str, Any], authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    authority.tokens[ACTIVE_TOKEN] = answer
    result = await make_validator().validate(ACTIVE_TOKEN, None)
    assert_invalid(result)
    assert result.detail == "token not active"


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"exp": int(START_TIME - CLOCK_LEEWAY_SECONDS)}, "token expired"),
        ({"nbf": int(START_TIME + HOUR)}, "token not yet valid"),
        ({"iss": "https://elsewhere.example"}, "issuer mismatch"),
        ({"aud": ["another-service"]}, "audience mismatch"),
        ({"email": None}, "identity claim missing, malformed or unverified"),
        ({"email": 42}, "identity claim missing, malformed or unverified"),
    ],
    ids=["expired", "not-yet-valid", "wrong-iss", "wrong-aud", "no-email", "email-not-string"],
)
async def test_active_but_unacceptable_token_is_invalid_token(
    changes: dict[str, Any],
    detail: str,
    authority: AuthorisationServer,
    make_validator: MakeValidator,
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active(**changes)
    validator = make_validator(issuer=ISSUER, audience=AUDIENCE)
    result = await validator.validate(ACTIVE_TOKEN, None)
    assert_invalid(result)
    assert result.detail == detail


async def test_iss_and_aud_are_only_checked_when_configured(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active(iss=None, aud=None, exp=None, iat=None)
    assert (await make_validator().validate(ACTIVE_TOKEN, None)).subject_identity == IDENTITY


async def test_username_fallback_is_used_only_when_configured(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active(email=None)
    assert_invalid(await make_validator().validate(ACTIVE_TOKEN, None))
    validator = make_validator(fallback_claim="username")
    assert (await validator.validate(ACTIVE_TOKEN, "alice")).subject_identity == "alice"


async def test_user_hint_differing_from_identity_is_invalid_token(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active()
    assert_invalid(await make_validator().validate(ACTIVE_TOKEN, "bob@example.org"))


async def test_malformed_token_is_refused_without_asking_the_server(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    result = await make_validator().validate("token with spaces&x=1", None)
    assert_invalid(result)
    assert authority.calls == 0


# --- caching ---------------------------------------------------------------------------


async def test_positive_answer_is_cached_for_the_cache_ttl(
    authority: AuthorisationServer, make_validator: MakeValidator, clock: FakeClock
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active()
    validator = make_validator()
    assert (await validator.validate(ACTIVE_TOKEN, None)).is_valid
    clock.advance(CACHE_TTL - 1)
    assert (await validator.validate(ACTIVE_TOKEN, IDENTITY)).is_valid
    assert authority.calls == 1
    clock.advance(1)
    assert (await validator.validate(ACTIVE_TOKEN, None)).is_valid
    assert authority.calls == 2


async def test_cache_is_keyed_by_the_token_hash_not_the_token(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active()
    authority.tokens[OTHER_TOKEN] = authority.active(email="bob@example.org")
    validator = make_validator()
    assert (await validator.validate(ACTIVE_TOKEN, None)).subject_identity == IDENTITY
    assert (await validator.validate(OTHER_TOKEN, None)).subject_identity == "bob@example.org"
    assert (await validator.validate(ACTIVE_TOKEN, None)).subject_identity == IDENTITY
    assert authority.calls == 2
    # White-box: the only place the cache lives; it must hold digests, not tokens.
    cache = validator._cache
    assert set(cache) == {hashlib.sha256(t.encode()).digest() for t in (ACTIVE_TOKEN, OTHER_TOKEN)}
    assert_secret_absent(ACTIVE_TOKEN, cache, validator)


async def test_cached_entry_never_outlives_the_token_exp(
    authority: AuthorisationServer, make_validator: MakeValidator, clock: FakeClock
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active(exp=int(clock.now + 10))
    validator = make_validator()
    assert (await validator.validate(ACTIVE_TOKEN, None)).is_valid
    clock.advance(10)
    authority.tokens[ACTIVE_TOKEN] = {"active": False}
    assert_invalid(await validator.validate(ACTIVE_TOKEN, None))
    assert authority.calls == 2


async def test_negative_answer_is_not_cached(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    validator = make_validator()
    assert_invalid(await validator.validate(ACTIVE_TOKEN, None))
    authority.tokens[ACTIVE_TOKEN] = authority.active()
    assert (await validator.validate(ACTIVE_TOKEN, None)).is_valid
    assert authority.calls == 2


async def test_user_hint_is_checked_on_cached_answers_too(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active()
    validator = make_validator()
    assert (await validator.validate(ACTIVE_TOKEN, IDENTITY)).is_valid
    assert_invalid(await validator.validate(ACTIVE_TOKEN, "bob@example.org"))
    assert authority.calls == 1


# --- the authority cannot answer -------------------------------------------------------


async def test_wrong_client_secret_is_service_unavailable_without_leaking(
    authority: AuthorisationServer, make_validator: MakeValidator, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret\n")
    with pytest.raises(TokenServiceUnavailable, match="answered HTTP 401") as caught:
        await make_validator(client_secret_file=wrong).validate(ACTIVE_TOKEN, None)
    assert_secret_absent(ACTIVE_TOKEN, caught.value)
    assert_secret_absent("not-the-secret", caught.value)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (Response(500, f"token={ACTIVE_TOKEN}".encode()), "answered HTTP 500"),
        (Response(200, b"active=true"), "did not send a JSON object"),
        (Response.json([{"active": True}]), "did not send a JSON object"),
    ],
    ids=["http-500-echoing-token", "not-json", "json-array"],
)
async def test_bad_introspection_answer_is_service_unavailable(
    response: Response,
    message: str,
    authority: AuthorisationServer,
    make_validator: MakeValidator,
) -> None:
    authority.server.routes[PATH] = lambda _request: response
    with pytest.raises(TokenServiceUnavailable, match=message) as caught:
        await make_validator().validate(ACTIVE_TOKEN, None)
    assert_secret_absent(ACTIVE_TOKEN, caught.value)


async def test_introspection_server_down_is_service_unavailable(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    validator = make_validator()
    await authority.server.stop()
    with pytest.raises(TokenServiceUnavailable, match="request failed") as caught:
        await validator.validate(ACTIVE_TOKEN, None)
    assert_secret_absent(ACTIVE_TOKEN, caught.value)


# --- configuration and secrets ---------------------------------------------------------


async def test_http_introspection_url_is_always_refused(
    http_server: LoopbackHttpServer, make_validator: MakeValidator
) -> None:
    with pytest.raises(ValueError, match="https://"):
        make_validator(introspection_url=http_server.url(PATH))


@pytest.mark.parametrize("content", ["", "\n"], ids=["empty", "newline-only"])
def test_empty_client_secret_is_refused(
    content: str, make_validator: MakeValidator, tmp_path: Path
) -> None:
    path = tmp_path / "secret"
    path.write_text(content)
    with pytest.raises(ValueError, match="secret"):
        make_validator(client_secret_file=path)


async def test_token_and_secret_never_appear_in_results_or_reprs(
    authority: AuthorisationServer, make_validator: MakeValidator
) -> None:
    authority.tokens[ACTIVE_TOKEN] = authority.active()
    validator = make_validator()
    good = await validator.validate(ACTIVE_TOKEN, None)
    bad = await validator.validate(OTHER_TOKEN, None)
    for secret in (ACTIVE_TOKEN, OTHER_TOKEN, CLIENT_SECRET, EXPECTED_AUTHORIZATION):
        assert_secret_absent(secret, good, bad, validator, vars(validator))
