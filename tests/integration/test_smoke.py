"""Smoke test: a message over STARTTLS on mx reaches the Maildir, with a TLS Received header."""

from __future__ import annotations

from helpers.dialogue import Dialogue


async def test_message_over_starttls_is_delivered_to_maildir(mail_server) -> None:
    dlg = await Dialogue.connect(mail_server.ports["mx"])
    await dlg.expect("220")
    await dlg.cmd("EHLO client.test", expect="250")
    await dlg.starttls(mail_server.client_tls())
    await dlg.cmd("EHLO client.test", expect="250")
    reply = await dlg.send_message(b"Subject: smoke\r\n\r\nhello\r\n")
    assert reply[-1].startswith("250 2.0.0")
    await dlg.cmd("QUIT", expect="221")
    [message] = await mail_server.delivered(1)
    assert b"with ESMTPS id" in message
    assert b"using TLSv1.3" in message
    assert message.endswith(b"Subject: smoke\r\n\r\nhello\r\n")
    assert b"Message-ID:" not in message  # mx adds only Received (RFC 5321 §6.4)
