"""``build_validator``: from ``[auth.oauth]`` keyword settings to a validator, or ``None``.

Covers which validator each combination of settings yields, the settings it refuses,
and one end-to-end validation per kind through the validator it built (with ``ca_file``
making its own HTTP client trust the loopback HTTPS server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from oauth.loopback import (
    AUDIENCE,
    IDENTITY,
    ISSUER,
    LoopbackHttpServer,
    SigningKey,
    claims,
    jwks,
)
from postguard.accounts.oauth import (
    IntrospectionValidator,
    JwtValidator,
    TokenValidator,
    build_validator,
)

Build = Callable[..., TokenValidator | None]
# build_validator uses the real clock: an exp in 2286 keeps these tokens valid.
FAR_FUTURE = 9_999_999_999


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """``build_validator`` whose results are closed after the test."""
    built: list[TokenValidator] = []

    def make(**settings: Any) -> TokenValidator | None:
        validator = build_validator(**settings)
        if validator is not None:
            built.append(validator)
        return validator

    yield make
    for validator in built:
        await validator.aclose()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    return path


def test_nothing_configured_builds_no_validator(build: Build) -> None:
    assert build() is None


def test_jwks_url_builds_a_jwt_validator(build: Build) -> None:
    validator = build(jwks_url="https://idp.example.org/jwks", issuer=ISSUER, audience=AUDIENCE)
    assert isinstance(validator, JwtValidator)


def test_introspection_url_builds_an_introspection_validator(
    build: Build, secret_file: Path
) -> None:
    validator = build(
        introspection_url="https://idp.example.org/introspect",
        introspection_client_id="postguard",
        introspection_client_secret_file=secret_file,
    )
    assert isinstance(validator, IntrospectionValidator)


@pytest.mark.parametrize(
    "settings",
    [
        {"jwks_url": "https://idp.example.org/jwks", "introspection_url": "https://i.example"},
        {"jwks_url": "https://idp.example.org/jwks", "issuer": ISSUER},
        {"jwks_url": "https://idp.example.org/jwks", "audience": AUDIENCE},
        {"jwks_url": "http://idp.example.org/jwks", "issuer": ISSUER, "audience": AUDIENCE},
        {"issuer": ISSUER, "audience": AUDIENCE},
        {"introspection_url": "https://idp.example.org/introspect"},
        {
            "jwks_url": "https://idp.example.org/jwks",
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "algorithms": ["RS256", "HS256"],
        },
    ],
    ids=[
        "jwks-and-introspection",
        "no-audience",
        "no-issuer",
        "http-jwks-url",
        "no-source",
        "introspection-without-client",
        "hs256",
    ],
)
def test_incomplete_or_unsafe_settings_are_refused(settings: dict[str, Any], build: Build) -> None:
    with pytest.raises(ValueError):
        build(**settings)


async def test_built_jwt_validator_validates_over_https_with_ca_file(
    https_server: LoopbackHttpServer, build: Build, ca_file: Path, ec_key: SigningKey
) -> None:
    https_server.serve_json("/jwks", jwks(ec_key))
    validator = build(
        jwks_url=https_server.url("/jwks"),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["ES256"],
        ca_file=ca_file,
    )
    assert validator is not None
    token = ec_key.sign(claims(exp=FAR_FUTURE))
    assert (await validator.validate(token, None)).subject_identity == IDENTITY


async def test_built_insecure_jwks_validator_works_only_when_allowed(
    http_server: LoopbackHttpServer, build: Build, rsa_key: SigningKey
) -> None:
    http_server.serve_json("/jwks", jwks(rsa_key))
    validator = build(
        jwks_url=http_server.url("/jwks"),
        issuer=ISSUER,
        audience=AUDIENCE,
        allow_insecure_jwks_url=True,
    )
    assert validator is not None
    token = rsa_key.sign(claims(exp=FAR_FUTURE))
    assert (await validator.validate(token, None)).is_valid


async def test_built_introspection_validator_validates_over_https_with_ca_file(
    https_server: LoopbackHttpServer, build: Build, ca_file: Path, secret_file: Path
) -> None:
    https_server.serve_json("/introspect", {"active": True, "username": "alice"})
    validator = build(
        introspection_url=https_server.url("/introspect"),
        introspection_client_id="postguard",
        introspection_client_secret_file=secret_file,
        identity_claim="username",
        scope="https://mail.example.org/",
        ca_file=ca_file,
    )
    assert validator is not None
    assert (await validator.validate("opaque-token", "alice")).subject_identity == "alice"
    refused = await validator.validate("opaque-token", "bob")
    assert refused.error == {
        "status": "invalid_token",
        "schemes": "bearer",
        "scope": "https://mail.example.org/",
    }
