"""The [auth] and [auth.oauth] tables and listener.mx.auth: defaults, values, errors, sample.

Covers what other test modules check table-wide for the older sections (unknown keys are in
test_load_errors.py's TABLES, sample keys in test_sample.py's parametrisations).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from postguard.config import (
    AuthSettings,
    Config,
    ConfigError,
    OAuthSettings,
    default_config,
    find_weakenings,
    load_config,
    render_sample,
)
from postguard.config.units import MILLISECONDS, MINUTES, SECONDS

from .conftest import Loader

F = "postguard.toml"
JWKS = '[auth.oauth]\njwks_url = "https://idp.example.org/jwks.json"\nissuer = "https://idp.example.org"\naudience = "smtp"\n'  # noqa: E501


def test_auth_defaults(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    assert config.auth == AuthSettings(accounts_file=tmp_path / "accounts.toml")
    auth = config.auth
    assert auth.received_shows_identity is False
    assert auth.mechanisms == (
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-256",
        "OAUTHBEARER",
        "XOAUTH2",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
    )
    assert (auth.max_failures_per_ip, auth.max_failures_per_account) == (10, 20)
    assert (auth.failure_window, auth.lockout) == (15 * MINUTES, 15 * MINUTES)
    assert (auth.base_delay, auth.max_delay) == (250 * MILLISECONDS, 10 * SECONDS)
    assert auth.oauth is None


def test_listener_auth_flags(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    assert [(listener.name, listener.auth) for listener in config.listeners] == [
        ("mx", False),
        ("submission", True),
        ("submissions", True),
    ]


def test_mx_auth_can_be_turned_on(load: Loader) -> None:
    assert load("[listener.mx]\nauth = true\n").listener("mx").auth is True


@pytest.mark.parametrize("listener", ["submission", "submissions"])
def test_auth_is_not_settable_on_submission_listeners(load: Loader, listener: str) -> None:
    with pytest.raises(ConfigError, match=rf"listener\.{listener}\.auth: unknown key"):
        load(f"[listener.{listener}]\nauth = false\n")


def test_auth_values_are_read(load: Loader, workdir: Path) -> None:
    config = load(
        "[auth]\n"
        'accounts_file = "etc/users.toml"\n'
        "received_shows_identity = true\n"
        'mechanisms = ["SCRAM-SHA-256", "PLAIN"]\n'
        "max_failures_per_ip = 3\n"
        "max_failures_per_account = 5\n"
        'failure_window = "1h"\n'
        'lockout = "30m"\n'
        'base_delay = "0s"\n'
        'max_delay = "2s"\n'
    )
    auth = config.auth
    assert auth.accounts_file == workdir / "data" / "etc/users.toml"
    assert auth.received_shows_identity is True
    assert auth.mechanisms == ("SCRAM-SHA-256", "PLAIN")
    assert (auth.max_failures_per_ip, auth.max_failures_per_account) == (3, 5)
    assert (auth.failure_window, auth.lockout) == (60 * MINUTES, 30 * MINUTES)
    assert (auth.base_delay, auth.max_delay) == (0.0, 2.0)


def test_absolute_accounts_file_is_kept(load: Loader) -> None:
    config = load('[auth]\naccounts_file = "/etc/postguard/accounts.toml"\n')
    assert config.auth.accounts_file == Path("/etc/postguard/accounts.toml")


def test_jwks_oauth_settings_are_read(load: Loader, workdir: Path) -> None:
    config = load(
        "[auth.oauth]\n"
        'jwks_file = "oauth/jwks.json"\n'
        'issuer = "https://idp.example.org"\n'
        'audience = "smtp.example.org"\n'
        'algorithms = ["ES256"]\n'
        'identity_claim = "preferred_username"\n'
        'cache_ttl = "0s"\n'
    )
    assert config.auth.oauth == OAuthSettings(
        jwks_file=workdir / "data" / "oauth/jwks.json",
        issuer="https://idp.example.org",
        audience="smtp.example.org",
        algorithms=("ES256",),
        identity_claim="preferred_username",
        cache_ttl=0.0,
    )


def test_introspection_oauth_settings_are_read(load: Loader, workdir: Path) -> None:
    config = load(
        "[auth.oauth]\n"
        'introspection_url = "https://idp.example.org/introspect"\n'
        'introspection_client_id = "postguard"\n'
        'introspection_client_secret_file = "/etc/postguard/secret"\n'
    )
    oauth = config.auth.oauth
    assert oauth is not None
    assert oauth.introspection_url == "https://idp.example.org/introspect"
    assert oauth.introspection_client_secret_file == Path("/etc/postguard/secret")
    assert (oauth.issuer, oauth.audience) == (None, None)
    assert oauth.algorithms == ("RS256", "ES256", "EdDSA")


AUTH_ERRORS = [
    (
        "unknown-mechanism",
        '[auth]\nmechanisms = ["PLAIN", "DIGEST-MD5"]\n',
        'auth.mechanisms[1]: unknown value "DIGEST-MD5" (expected: SCRAM-SHA-256-PLUS,'
        " SCRAM-SHA-256, OAUTHBEARER, XOAUTH2, CRAM-MD5, PLAIN, LOGIN)",
    ),
    (
        "lowercase-mechanism",
        '[auth]\nmechanisms = ["plain"]\n',
        'auth.mechanisms[0]: unknown value "plain" (expected: SCRAM-SHA-256-PLUS,'
        " SCRAM-SHA-256, OAUTHBEARER, XOAUTH2, CRAM-MD5, PLAIN, LOGIN)",
    ),
    (
        "no-mechanisms",
        "[auth]\nmechanisms = []\n",
        "auth.mechanisms: must name at least one mechanism",
    ),
    (
        "duplicate-mechanism",
        '[auth]\nmechanisms = ["PLAIN", "PLAIN"]\n',
        "auth.mechanisms[1]: duplicate of auth.mechanisms[0]",
    ),
    (
        "zero-failures",
        "[auth]\nmax_failures_per_ip = 0\n",
        "auth.max_failures_per_ip: must be at least 1, got 0",
    ),
    ("zero-lockout", '[auth]\nlockout = "0s"\n', 'auth.lockout: must be greater than 0, got "0s"'),
    (
        "max-delay-below-base",
        '[auth]\nbase_delay = "2s"\nmax_delay = "1s"\n',
        "auth.max_delay: must not be less than auth.base_delay",
    ),
    (
        "oauth-no-source",
        '[auth.oauth]\nissuer = "x"\n',
        "auth.oauth: exactly one of jwks_file, jwks_url, introspection_url must be set",
    ),
    (
        "oauth-empty-table",
        "[auth.oauth]\n",
        "auth.oauth: exactly one of jwks_file, jwks_url, introspection_url must be set",
    ),
    (
        "oauth-two-sources",
        '[auth.oauth]\njwks_file = "a.json"\nintrospection_url = "https://i.example"\n',
        "auth.oauth.introspection_url: exactly one of jwks_file, jwks_url, introspection_url"
        " must be set (found: jwks_file, introspection_url)",
    ),
    (
        "jwks-without-issuer",
        '[auth.oauth]\njwks_file = "a.json"\naudience = "smtp"\n',
        "auth.oauth.issuer: missing (required with jwks_file)",
    ),
    (
        "jwks-without-audience",
        '[auth.oauth]\njwks_url = "https://i.example/k"\nissuer = "i"\n',
        "auth.oauth.audience: missing (required with jwks_url)",
    ),
    (
        "http-jwks-url",
        '[auth.oauth]\njwks_url = "http://idp.example/k"\nissuer = "i"\naudience = "a"\n',
        'auth.oauth.jwks_url: "http://idp.example/k" is not https;'
        " it needs auth.oauth.allow_insecure_jwks_url = true",
    ),
    (
        "ftp-jwks-url",
        '[auth.oauth]\njwks_url = "ftp://idp.example/k"\nissuer = "i"\naudience = "a"\n',
        'auth.oauth.jwks_url: invalid URL "ftp://idp.example/k" (expected https://host/...)',
    ),
    (
        "http-introspection-url",
        '[auth.oauth]\nintrospection_url = "http://idp.example/i"\n',
        'auth.oauth.introspection_url: "http://idp.example/i" is not https',
    ),
    (
        "introspection-without-client-id",
        '[auth.oauth]\nintrospection_url = "https://idp.example/i"\n'
        'introspection_client_secret_file = "s"\n',
        "auth.oauth.introspection_client_id: missing (required with introspection_url)",
    ),
    (
        "introspection-without-secret",
        '[auth.oauth]\nintrospection_url = "https://idp.example/i"\n'
        'introspection_client_id = "pg"\n',
        "auth.oauth.introspection_client_secret_file: missing (required with introspection_url)",
    ),
    (
        "client-id-without-introspection",
        JWKS + 'introspection_client_id = "pg"\n',
        "auth.oauth.introspection_client_id: only meaningful with introspection_url",
    ),
    (
        "unknown-algorithm",
        JWKS + 'algorithms = ["HS256"]\n',
        'auth.oauth.algorithms[0]: unknown value "HS256" (expected: RS256, ES256, EdDSA)',
    ),
    (
        "no-algorithms",
        JWKS + "algorithms = []\n",
        "auth.oauth.algorithms: must name at least one algorithm",
    ),
    (
        "empty-claim",
        JWKS + 'identity_claim = ""\n',
        "auth.oauth.identity_claim: must be a non-empty name",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in AUTH_ERRORS]
)
def test_bad_auth_settings_name_file_and_key(load: Loader, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert str(caught.value) == f"{F}: {expected}"


def test_credentials_in_a_url_are_refused_without_echoing_them(load: Loader) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            "[auth.oauth]\n"
            'introspection_url = "https://pg:s3cr3t@idp.example/i"\n'
            'introspection_client_id = "pg"\nintrospection_client_secret_file = "s"\n'
        )
    assert str(caught.value) == (
        f"{F}: auth.oauth.introspection_url: the URL must not contain credentials (user:password@)"
    )
    assert "s3cr3t" not in str(caught.value)


def test_http_jwks_url_with_the_opt_in_loads_and_is_a_weakening(load: Loader) -> None:
    config = load(
        '[auth.oauth]\njwks_url = "http://idp.internal/k"\nissuer = "i"\naudience = "a"\n'
        "allow_insecure_jwks_url = true\n"
    )
    assert config.auth.oauth is not None
    assert config.auth.oauth.jwks_url == "http://idp.internal/k"
    (weakening,) = find_weakenings(config)
    assert weakening.key == "auth.oauth.allow_insecure_jwks_url"
    assert str(weakening).startswith(f"{F}: auth.oauth.allow_insecure_jwks_url: OAuth signing")


def test_insecure_opt_in_without_an_http_url_is_not_reported(load: Loader) -> None:
    config = load(JWKS + "allow_insecure_jwks_url = true\n")
    assert find_weakenings(config) == []


def test_cram_md5_and_mx_auth_are_not_weakenings(load: Loader) -> None:
    config = load('[listener.mx]\nauth = true\n[auth]\nmechanisms = ["CRAM-MD5"]\n')
    assert find_weakenings(config) == []


def _round_trip(config: Config, path: Path) -> Config:
    path.write_text(render_sample(config), encoding="utf-8")
    return load_config(path)


def test_sample_with_changed_auth_loads_back(tmp_path: Path) -> None:
    base = default_config(tmp_path / "data")
    data_dir = base.server.data_dir
    mx = dataclasses.replace(base.listeners[0], auth=True)
    config = dataclasses.replace(
        base,
        listeners=(mx, *base.listeners[1:]),
        auth=dataclasses.replace(
            base.auth,
            accounts_file=Path("/etc/postguard/accounts.toml"),
            received_shows_identity=True,
            mechanisms=("PLAIN",),
            base_delay=0.5,
            oauth=OAuthSettings(
                jwks_file=data_dir / "keys.json",
                issuer="https://idp.example.org",
                audience="smtp",
                algorithms=("EdDSA", "RS256"),
            ),
        ),
    )
    assert _round_trip(config, tmp_path / "postguard.toml") == config
    sample = render_sample(config)
    assert "\n[auth.oauth]\n" in sample
    assert '\njwks_file = "keys.json"\n' in sample  # relative to data_dir, as loaded
    assert '\n# jwks_url = "https://' in sample


@pytest.mark.parametrize(
    "oauth",
    [
        pytest.param(
            OAuthSettings(
                jwks_url="http://idp.internal/k",
                allow_insecure_jwks_url=True,
                issuer="i",
                audience="a",
            ),
            id="insecure-jwks-url",
        ),
        pytest.param(
            OAuthSettings(
                introspection_url="https://idp.example/i",
                introspection_client_id="pg",
                introspection_client_secret_file=Path("/etc/pg/secret"),
                audience="smtp",
                cache_ttl=0.0,
            ),
            id="introspection",
        ),
    ],
)
def test_sample_with_oauth_loads_back(tmp_path: Path, oauth: OAuthSettings) -> None:
    base = default_config(tmp_path / "data")
    config = dataclasses.replace(base, auth=dataclasses.replace(base.auth, oauth=oauth))
    assert _round_trip(config, tmp_path / "postguard.toml") == config


def test_sample_without_oauth_shows_it_commented_out(tmp_path: Path) -> None:
    sample = render_sample(default_config(tmp_path))
    assert "\n# [auth.oauth]\n" in sample
    assert "\n[auth.oauth]\n" not in sample
    assert "\n# allow_insecure_jwks_url = false\n" in sample
