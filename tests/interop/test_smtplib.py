"""Python's standard ``smtplib`` against mx and submissions.

Covers: STARTTLS with a verifying context that trusts the development CA,
delivered over TLS 1.3; SMTP_SSL to submissions, where AUTH is not offered
(``login`` is not supported) and MAIL is 530 5.7.0 "Authentication required";
and plaintext on mx, which mx accepts (opportunistic TLS, RFC 3207 §4) but
records honestly as ``with ESMTP``, not ``ESMTPS`` (RFC 3848).

smtplib blocks, so each client session runs in a worker thread
(``asyncio.to_thread``) while the in-process server keeps serving from the
test's event loop (see ``harness``).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl

import pytest

from interop.harness import MarkedMessage, assert_delivered, assert_nothing_accepted

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
CLIENT_TIMEOUT_SECONDS = 20.0


async def test_smtplib_starttls_sendmail_is_delivered(mail_server) -> None:
    sent = MarkedMessage.new("smtplib")
    context = mail_server.client_tls()

    def session() -> tuple[dict[str, tuple[int, bytes]], str | None]:
        with smtplib.SMTP(HOST, mail_server.ports["mx"], timeout=CLIENT_TIMEOUT_SECONDS) as smtp:
            smtp.ehlo("smtplib.client.test")
            code, _ = smtp.starttls(context=context)
            assert code == 220
            assert isinstance(smtp.sock, ssl.SSLSocket)
            version = smtp.sock.version()
            return smtp.sendmail(sent.mail_from, [sent.rcpt_to], sent.as_bytes()), version

    refused, version = await asyncio.to_thread(session)
    assert refused == {}
    assert version == "TLSv1.3"
    assert_delivered(await mail_server.wait_for_messages(1), sent, tls="TLSv1.3")


async def test_smtplib_smtp_ssl_to_submissions_has_no_auth_and_mail_is_530(mail_server) -> None:
    sent = MarkedMessage.new("smtplib")
    context = mail_server.client_tls()
    port = mail_server.ports["submissions"]

    def session() -> None:
        with smtplib.SMTP_SSL(HOST, port, context=context, timeout=CLIENT_TIMEOUT_SECONDS) as smtp:
            smtp.ehlo("smtplib.client.test")
            # AUTH is not implemented yet, so it must not be advertised.
            assert not smtp.has_extn("auth")
            with pytest.raises(smtplib.SMTPNotSupportedError):
                smtp.login("test@localhost", "not-a-real-password")
            smtp.sendmail(sent.mail_from, [sent.rcpt_to], sent.as_bytes())

    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        await asyncio.to_thread(session)
    assert refused.value.smtp_code == 530
    assert refused.value.smtp_error == b"5.7.0 Authentication required"
    assert refused.value.sender == sent.mail_from
    assert_nothing_accepted(mail_server)


async def test_smtplib_plaintext_on_mx_is_delivered_as_esmtp_not_esmtps(mail_server) -> None:
    sent = MarkedMessage.new("smtplib")

    def session() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(HOST, mail_server.ports["mx"], timeout=CLIENT_TIMEOUT_SECONDS) as smtp:
            smtp.ehlo("smtplib.client.test")
            assert smtp.has_extn("starttls")  # offered, and deliberately not used
            return smtp.sendmail(sent.mail_from, [sent.rcpt_to], sent.as_bytes())

    assert await asyncio.to_thread(session) == {}
    assert_delivered(await mail_server.wait_for_messages(1), sent, tls=None)
