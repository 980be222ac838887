"""msmtp (GnuTLS, GNU SASL) authenticating with every mechanism postguard offers.

Covers: ``auth scram-sha-256``, ``plain``, ``login`` and ``cram-md5`` with a password, on
submission (STARTTLS) and submissions (``tls_starttls off``); ``auth oauthbearer`` and
``auth xoauth2`` with ``passwordeval`` printing an ES256 access token (user = the token's
email claim); each delivers to test@localhost with ``ESMTPSA`` in Received. A wrong
password makes msmtp exit 77 (EX_NOPERM) after 535 5.7.8; an expired token likewise, after
the JSON error challenge.

Debian 12's msmtp 1.8.23 is built with GNU SASL ("Authentication library: GNU SASL;
oauthbearer and xoauth2: built-in" in ``msmtp --version``), so SCRAM-SHA-256 works;
:func:`require_mechanism` skips (fails under CI) a mechanism a build lacks, instead of
reporting a server failure.

msmtp runs as a child process of the test's event loop (see ``harness``). Each test writes
its own configuration file, mode 0600 as msmtp expects, and passes it with ``-C`` so no
system or user configuration is read; the password sits in that file, never in argv.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from helpers.accounts import OAuthIssuer, assert_authenticated_delivery, start_auth_server
from interop.harness import MarkedMessage, assert_nothing_accepted, run_tool

pytestmark = pytest.mark.interop

OAUTH_USER = "alice@example.org"


def require_mechanism(msmtp: str, mechanism: str) -> None:
    """Skip (fail under CI) when this msmtp build cannot do ``mechanism``."""
    version = subprocess.run(
        [msmtp, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    supported = version.partition("Supported authentication methods:")[2].split("\n")[1:2]
    if mechanism not in " ".join(supported).split():
        # The interop rule (conftest.py): loud skip locally, failure in CI.
        what = f"this msmtp build lacks the {mechanism} mechanism (see msmtp --version)"
        if os.environ.get("CI"):
            pytest.fail(f"CI: {what}; .ci/run must install a msmtp built with GNU SASL")
        pytest.skip(f"INTEROP TOOL MISSING - {what}; this test did NOT run")


@pytest.fixture
async def auth_server(server_factory, tmp_path: Path, issuer: OAuthIssuer):
    return await start_auth_server(
        server_factory, tmp_path / "accounts", cram_md5=True, oauth=issuer
    )


def write_config(
    path: Path,
    server,
    *,
    listener: str,
    auth: str,
    user: str,
    secret_line: str,
    mail_from: str,
) -> Path:
    path.write_text(
        "defaults\n"
        "syslog off\n"
        "account default\n"
        "host 127.0.0.1\n"
        f"port {server.ports[listener]}\n"
        "domain msmtp.client.test\n"
        "tls on\n"
        f"tls_starttls {'off' if listener == 'submissions' else 'on'}\n"
        f"tls_trust_file {server.ca}\n"
        f"auth {auth}\n"
        f"user {user}\n"
        f"{secret_line}\n"
        f"from {mail_from}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("listener", ["submission", "submissions"])
@pytest.mark.parametrize("mechanism", ["scram-sha-256", "plain", "login", "cram-md5"])
async def test_msmtp_password_mechanisms_are_delivered(
    msmtp, auth_server, tmp_path: Path, listener: str, mechanism: str
) -> None:
    require_mechanism(msmtp, mechanism)
    server, alice = auth_server
    sent = MarkedMessage.new("msmtp-auth")
    config = write_config(
        tmp_path / "msmtprc",
        server,
        listener=listener,
        auth=mechanism,
        user=alice.name,
        secret_line=f"password {alice.password}",
        mail_from=sent.mail_from,
    )
    # --debug prints the dialogue (credentials masked); the AUTH line proves the mechanism.
    result = await run_tool(msmtp, "-C", str(config), "--debug", "-t", stdin=sent.as_bytes(b"\n"))
    assert result.returncode == 0, result.describe()
    assert f"--> AUTH {mechanism.upper()}" in result.transcript, result.describe()
    assert "<-- 235 2.7.0 Authentication successful" in result.transcript, result.describe()
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


@pytest.mark.parametrize("mechanism", ["oauthbearer", "xoauth2"])
async def test_msmtp_bearer_token_mechanisms_are_delivered(
    msmtp, auth_server, issuer: OAuthIssuer, tmp_path: Path, mechanism: str
) -> None:
    require_mechanism(msmtp, mechanism)
    server, _ = auth_server
    sent = MarkedMessage.new("msmtp-oauth")
    token_file = tmp_path / "token"
    token_file.write_text(issuer.token(OAUTH_USER) + "\n", encoding="utf-8")
    config = write_config(
        tmp_path / "msmtprc",
        server,
        listener="submission",
        auth=mechanism,
        user=OAUTH_USER,
        secret_line=f"passwordeval cat {token_file}",
        mail_from=sent.mail_from,
    )
    result = await run_tool(msmtp, "-C", str(config), "--debug", "-t", stdin=sent.as_bytes(b"\n"))
    assert result.returncode == 0, result.describe()
    assert f"--> AUTH {mechanism.upper()}" in result.transcript, result.describe()
    assert "<-- 235 2.7.0 Authentication successful" in result.transcript, result.describe()
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


async def test_msmtp_with_a_wrong_password_fails_with_535(
    msmtp, auth_server, tmp_path: Path
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("msmtp-auth")
    config = write_config(
        tmp_path / "msmtprc",
        server,
        listener="submissions",
        auth="plain",
        user=alice.name,
        secret_line="password not-the-password",
        mail_from=sent.mail_from,
    )
    result = await run_tool(msmtp, "-C", str(config), "-t", stdin=sent.as_bytes(b"\n"))
    assert result.returncode == os.EX_NOPERM, result.describe()
    assert "535 5.7.8 Authentication credentials invalid" in result.stderr, result.describe()
    assert_nothing_accepted(server)


async def test_msmtp_oauthbearer_with_an_expired_token_fails_with_535(
    msmtp, auth_server, issuer: OAuthIssuer, tmp_path: Path
) -> None:
    require_mechanism(msmtp, "oauthbearer")
    server, _ = auth_server
    sent = MarkedMessage.new("msmtp-oauth")
    token_file = tmp_path / "token"
    token_file.write_text(issuer.token(OAUTH_USER, expires_in=-3600) + "\n", encoding="utf-8")
    config = write_config(
        tmp_path / "msmtprc",
        server,
        listener="submissions",
        auth="oauthbearer",
        user=OAUTH_USER,
        secret_line=f"passwordeval cat {token_file}",
        mail_from=sent.mail_from,
    )
    result = await run_tool(msmtp, "-C", str(config), "--debug", "-t", stdin=sent.as_bytes(b"\n"))
    assert result.returncode == os.EX_NOPERM, result.describe()
    assert "<-- 334 " in result.transcript, result.describe()  # the JSON error challenge
    assert "<-- 535 5.7.8 Authentication credentials invalid" in result.transcript, (
        result.describe()
    )
    assert_nothing_accepted(server)
