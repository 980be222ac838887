"""Python's ``smtplib`` authenticating to submission (STARTTLS) and submissions (SMTP_SSL).

Covers: ``SMTP.auth(mechanism, authobject)`` with smtplib's own PLAIN, LOGIN and CRAM-MD5
implementations (PLAIN and LOGIN both with and without an initial response), and
``login()``'s automatic choice (smtplib prefers CRAM-MD5 when offered); each then
``sendmail`` to test@localhost, delivered with ``ESMTPSA`` in Received; ``login()`` with a
wrong password raises ``SMTPAuthenticationError`` 535 5.7.8 and nothing is delivered.

smtplib blocks, so each client session runs in a worker thread (``asyncio.to_thread``)
while the in-process server keeps serving from the test's event loop (see ``harness``).
"""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import pytest

from helpers.accounts import assert_authenticated_delivery, start_auth_server
from interop.harness import MarkedMessage, assert_nothing_accepted

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
CLIENT_TIMEOUT_SECONDS = 20.0


@pytest.fixture
async def auth_server(server_factory, tmp_path: Path):
    return await start_auth_server(server_factory, tmp_path / "accounts", cram_md5=True)


def open_client(server, listener: str) -> smtplib.SMTP:
    """A connected, TLS-protected client that has sent EHLO under TLS."""
    context = server.client_tls()
    if listener == "submissions":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            HOST, server.ports[listener], context=context, timeout=CLIENT_TIMEOUT_SECONDS
        )
    else:
        smtp = smtplib.SMTP(HOST, server.ports[listener], timeout=CLIENT_TIMEOUT_SECONDS)
        smtp.ehlo("smtplib.client.test")
        smtp.starttls(context=context)
    smtp.ehlo("smtplib.client.test")
    return smtp


@pytest.mark.parametrize("listener", ["submission", "submissions"])
@pytest.mark.parametrize(
    ("mechanism", "initial_response"),
    [
        ("PLAIN", True),
        ("PLAIN", False),
        ("LOGIN", True),
        ("LOGIN", False),
        ("CRAM-MD5", False),
    ],
    ids=["plain-ir", "plain", "login-ir", "login", "cram-md5"],
)
async def test_smtplib_auth_then_sendmail_is_delivered(
    auth_server, listener: str, mechanism: str, initial_response: bool
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("smtplib-auth")

    def session() -> tuple[int, dict[str, tuple[int, bytes]]]:
        with open_client(server, listener) as smtp:
            assert smtp.has_extn("auth")
            offered = smtp.esmtp_features["auth"].split()
            assert offered == ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]
            smtp.user, smtp.password = alice.name, alice.password
            authobject = {
                "PLAIN": smtp.auth_plain,
                "LOGIN": smtp.auth_login,
                "CRAM-MD5": smtp.auth_cram_md5,
            }[mechanism]
            code, _ = smtp.auth(mechanism, authobject, initial_response_ok=initial_response)
            return code, smtp.sendmail(sent.mail_from, [sent.rcpt_to], sent.as_bytes())

    code, refused = await asyncio.to_thread(session)
    assert code == 235
    assert refused == {}
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


async def test_smtplib_login_picks_cram_md5_and_delivers(auth_server) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("smtplib-login")

    def session() -> tuple[int, bytes]:
        with open_client(server, "submission") as smtp:
            code, text = smtp.login(alice.name, alice.password)
            smtp.sendmail(sent.mail_from, [sent.rcpt_to], sent.as_bytes())
            return code, text

    code, text = await asyncio.to_thread(session)
    assert (code, text) == (235, b"2.7.0 Authentication successful")
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


async def test_smtplib_login_with_a_wrong_password_is_535(auth_server) -> None:
    server, alice = auth_server

    def session() -> None:
        with open_client(server, "submissions") as smtp:
            # Only PLAIN, so one attempt (login() would try every offered mechanism).
            smtp.esmtp_features["auth"] = "PLAIN"
            smtp.login(alice.name, "not-the-password")

    with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
        await asyncio.to_thread(session)
    assert failed.value.smtp_code == 535
    assert failed.value.smtp_error == b"5.7.8 Authentication credentials invalid"
    assert_nothing_accepted(server)
