"""swaks (the "Swiss Army Knife for SMTP") against the three listeners.

Covers: STARTTLS on mx with the certificate verified against the development
CA, delivered to the Maildir over TLS 1.3; and the refusals submission and
submissions must give an unauthenticated client: 530 5.7.0 "Authentication
required" at MAIL after TLS (STARTTLS or implicit), 530 5.7.0 "Must issue a
STARTTLS command first" at MAIL in plaintext.

swaks runs as a child process of the test's event loop (see ``harness``), so
the in-process server keeps serving while we wait for swaks to exit. Exit
status 23 is swaks's documented "error in MAIL transaction".

swaks 20201014's ``--tls-verify`` checks the chain only, not the host name;
the name is checked by the openssl, curl, msmtp and Python clients.
"""

from __future__ import annotations

import pytest

from interop.harness import MarkedMessage, assert_delivered, assert_nothing_accepted, run_tool

pytestmark = pytest.mark.interop

SWAKS_MAIL_TRANSACTION_ERROR = 23  # swaks(1), EXIT CODES


def swaks_argv(swaks: str, port: int, sent: MarkedMessage, *options: str) -> list[str]:
    return [
        swaks,
        "--server", "127.0.0.1",
        "--port", str(port),
        "--ehlo", "swaks.client.test",
        "--from", sent.mail_from,
        "--to", sent.rcpt_to,
        "--header", f"Subject: {sent.subject}",
        "--body", sent.body_text,
        "--timeout", "20",
        *options,
    ]  # fmt: skip


async def test_swaks_starttls_with_verified_certificate_is_delivered(swaks, mail_server) -> None:
    sent = MarkedMessage.new("swaks")
    argv = swaks_argv(
        swaks,
        mail_server.ports["mx"],
        sent,
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        str(mail_server.ca),
    )
    result = await run_tool(*argv)
    assert result.returncode == 0, result.describe()
    assert "=== TLS started with cipher TLSv1.3" in result.transcript, result.describe()
    assert "<~  250 2.0.0 OK: queued as " in result.transcript, result.describe()
    assert_delivered(await mail_server.wait_for_messages(1), sent, tls="TLSv1.3")


async def test_swaks_tls_on_connect_to_submissions_is_530_auth_required(swaks, mail_server) -> None:
    sent = MarkedMessage.new("swaks")
    argv = swaks_argv(
        swaks,
        mail_server.ports["submissions"],
        sent,
        "--tls-on-connect",
        "--tls-verify",
        "--tls-ca-path",
        str(mail_server.ca),
    )
    result = await run_tool(*argv)
    assert result.returncode == SWAKS_MAIL_TRANSACTION_ERROR, result.describe()
    assert "=== TLS started with cipher TLSv1.3" in result.transcript, result.describe()
    assert "530 5.7.0 Authentication required" in result.transcript, result.describe()
    assert "RCPT TO" not in result.transcript, result.describe()
    assert_nothing_accepted(mail_server)


async def test_swaks_starttls_to_submission_is_530_auth_required(swaks, mail_server) -> None:
    sent = MarkedMessage.new("swaks")
    argv = swaks_argv(
        swaks,
        mail_server.ports["submission"],
        sent,
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        str(mail_server.ca),
    )
    result = await run_tool(*argv)
    assert result.returncode == SWAKS_MAIL_TRANSACTION_ERROR, result.describe()
    assert "=== TLS started with cipher TLSv1.3" in result.transcript, result.describe()
    assert "530 5.7.0 Authentication required" in result.transcript, result.describe()
    assert_nothing_accepted(mail_server)


async def test_swaks_plaintext_mail_on_submission_is_530_starttls_first(swaks, mail_server) -> None:
    sent = MarkedMessage.new("swaks")
    result = await run_tool(*swaks_argv(swaks, mail_server.ports["submission"], sent))
    assert result.returncode == SWAKS_MAIL_TRANSACTION_ERROR, result.describe()
    assert "TLS started" not in result.transcript, result.describe()
    assert "530 5.7.0 Must issue a STARTTLS command first" in result.transcript, result.describe()
    assert_nothing_accepted(mail_server)
