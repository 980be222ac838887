"""swaks authenticating with PLAIN, LOGIN and CRAM-MD5 over STARTTLS and implicit TLS.

Covers: ``--auth PLAIN|LOGIN|CRAM-MD5`` with ``--auth-user``/``--auth-password``, on
submission (``--tls``, STARTTLS with the certificate verified against the development CA)
and on submissions (``--tls-on-connect``); each delivers to test@localhost with ``ESMTPSA``
in Received. A wrong password ends swaks with its "error in AUTH" status 28 after 535 5.7.8.

swaks runs as a child process of the test's event loop (see ``harness``); exit statuses
are swaks(1)'s documented ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.accounts import assert_authenticated_delivery, start_auth_server
from interop.harness import MarkedMessage, assert_nothing_accepted, run_tool

pytestmark = pytest.mark.interop

SWAKS_AUTH_ERROR = 28  # swaks(1), EXIT CODES: "error in AUTH"


@pytest.fixture
async def auth_server(server_factory, tmp_path: Path):
    return await start_auth_server(server_factory, tmp_path / "accounts", cram_md5=True)


def swaks_argv(swaks: str, server, listener: str, sent: MarkedMessage, *options: str) -> list[str]:
    tls = "--tls-on-connect" if listener == "submissions" else "--tls"
    return [
        swaks,
        "--server", "127.0.0.1",
        "--port", str(server.ports[listener]),
        "--ehlo", "swaks.client.test",
        "--from", sent.mail_from,
        "--to", sent.rcpt_to,
        "--header", f"Subject: {sent.subject}",
        "--body", sent.body_text,
        "--timeout", "20",
        tls, "--tls-verify", "--tls-ca-path", str(server.ca),
        *options,
    ]  # fmt: skip


@pytest.mark.parametrize("listener", ["submission", "submissions"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_swaks_auth_is_delivered(swaks, auth_server, listener: str, mechanism: str) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("swaks-auth")
    auth = ["--auth", mechanism, "--auth-user", alice.name, "--auth-password", alice.password]
    result = await run_tool(*swaks_argv(swaks, server, listener, sent, *auth))
    assert result.returncode == 0, result.describe()
    assert "=== TLS started with cipher TLSv1.3" in result.transcript, result.describe()
    assert f"~> AUTH {mechanism}" in result.transcript, result.describe()
    assert "<~  235 2.7.0 Authentication successful" in result.transcript, result.describe()
    assert "<~  250 2.0.0 OK: queued as " in result.transcript, result.describe()
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


async def test_swaks_auth_with_a_wrong_password_is_535(swaks, auth_server) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("swaks-auth")
    auth = ["--auth", "PLAIN", "--auth-user", alice.name, "--auth-password", "not-the-password"]
    result = await run_tool(*swaks_argv(swaks, server, "submission", sent, *auth))
    assert result.returncode == SWAKS_AUTH_ERROR, result.describe()
    refused = "<~* 535 5.7.8 Authentication credentials invalid"
    assert refused in result.transcript, result.describe()
    assert "MAIL FROM" not in result.transcript, result.describe()
    assert_nothing_accepted(server)
