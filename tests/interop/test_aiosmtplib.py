"""aiosmtplib's one-call ``send`` against mx (STARTTLS) and submissions (implicit TLS).

Covers: ``send(start_tls=True)`` with a verifying context that trusts the
development CA, delivered over TLS 1.3; ``send(use_tls=True)`` to submissions
without credentials, refused at MAIL with 530 5.7.0 "Authentication required".

aiosmtplib is asyncio-native, so it runs in the test's own event loop beside
the in-process server (see ``harness``); it is taken from a fixture so a
missing package follows the interop skip/fail rule (``conftest.py``).
"""

from __future__ import annotations

import pytest

from interop.harness import MarkedMessage, assert_delivered, assert_nothing_accepted

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
CLIENT_TIMEOUT_SECONDS = 20.0


async def test_aiosmtplib_send_with_start_tls_is_delivered(aiosmtplib, mail_server) -> None:
    sent = MarkedMessage.new("aiosmtplib")
    responses, last = await aiosmtplib.send(
        sent.as_bytes(),
        sender=sent.mail_from,
        recipients=[sent.rcpt_to],
        hostname=HOST,
        port=mail_server.ports["mx"],
        local_hostname="aiosmtplib.client.test",
        start_tls=True,
        tls_context=mail_server.client_tls(),
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    assert responses == {}  # no recipient refused
    assert last.startswith("2.0.0 OK: queued as "), last
    assert_delivered(await mail_server.wait_for_messages(1), sent, tls="TLSv1.3")


async def test_aiosmtplib_implicit_tls_to_submissions_is_530_auth_required(
    aiosmtplib, mail_server
) -> None:
    sent = MarkedMessage.new("aiosmtplib")
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
        await aiosmtplib.send(
            sent.as_bytes(),
            sender=sent.mail_from,
            recipients=[sent.rcpt_to],
            hostname=HOST,
            port=mail_server.ports["submissions"],
            local_hostname="aiosmtplib.client.test",
            use_tls=True,
            tls_context=mail_server.client_tls(),
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
    assert refused.value.code == 530
    assert refused.value.message == "5.7.0 Authentication required"
    assert refused.value.sender == sent.mail_from
    assert_nothing_accepted(mail_server)
