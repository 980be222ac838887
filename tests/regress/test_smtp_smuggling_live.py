"""SMTP smuggling (CVE-2023-51764/51765/51766 family) over a real socket, into a real Maildir.

The attack: DATA content carries an end-of-data sequence that some server in
the path reads as the end (``\\n.\\n``, ``\\r.\\r\\n``...) followed by a second,
forged transaction. A server that agrees with that reading accepts a message
the sender's own server never saw as one (SEC Consult, December 2023).

For every variant, sent in one write and again one octet per write: exactly one
final reply answers the DATA (550 5.6.0 for bare CR or LF, RFC 5321 §2.3.8;
250 for the NUL variant, which hides no line ending), the next reply answers
our QUIT (221), so no reply for a smuggled MAIL/RCPT/DATA was ever produced,
and the Maildir never holds a message with "Subject: smuggled" as a header.

The server runs in this test's event loop; in the octet-per-write mode each
write is drained and followed by a yield (``sleep(0)``, not a wait) so the
server reads while the content is still arriving.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from helpers.dialogue import Dialogue

VARIANTS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.LF": b"\r.\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "CRLF.LF": b"\r\n.\n",
    "CRLF-NUL.CRLF": b"\r\n\x00.\r\n",
}
HIDES_NO_LINE_ENDING = {b"\r\n\x00.\r\n"}
SMUGGLED = (
    b"MAIL FROM:<s@example.org>\r\n"
    b"RCPT TO:<test@localhost>\r\n"
    b"DATA\r\n"
    b"Subject: smuggled\r\n"
    b"\r\n"
    b"smuggled\r\n"
)
END_OF_DATA = b"\r\n.\r\n"
QUEUE_TIMEOUT_SECONDS = 15.0


async def send(dlg: Dialogue, data: bytes, *, octet_by_octet: bool) -> None:
    if not octet_by_octet:
        dlg.send_raw(data)
        await dlg.writer.drain()
        return
    for octet in data:
        dlg.send_raw(bytes([octet]))
        await dlg.writer.drain()
        await asyncio.sleep(0)


def header_block(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize("octet_by_octet", [False, True], ids=["one-write", "octet-by-octet"])
@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
async def test_smuggled_transaction_is_never_accepted(
    mail_server, variant: bytes, octet_by_octet: bool
) -> None:
    dlg = await Dialogue.connect(mail_server.ports["mx"])
    await dlg.expect("220 ")
    await dlg.cmd("EHLO client.test", expect="250 ")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<test@localhost>", expect="250 2.1.5")
    await dlg.cmd("DATA", expect="354")
    content = b"Subject: a\r\n\r\nhello" + variant + SMUGGLED + END_OF_DATA
    await send(dlg, content, octet_by_octet=octet_by_octet)

    accepted = variant in HIDES_NO_LINE_ENDING
    [final] = await dlg.read_reply()
    assert final.startswith("250 2.0.0" if accepted else "550 5.6.0"), final
    # The next reply is QUIT's: nothing answered a smuggled MAIL, RCPT or DATA.
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert await dlg.is_closed()

    if accepted:
        [message] = await mail_server.delivered(1)
        assert header_block(message).endswith(b"\r\nSubject: a")
        assert header_block(message).count(b"Subject:") == 1
        # The queue entry goes after the Maildir copy is stored: bounded poll until it has.
        deadline = time.monotonic() + QUEUE_TIMEOUT_SECONDS
        while mail_server.spooled() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    for message in mail_server.messages():
        assert b"Subject: smuggled" not in header_block(message)
    assert len(mail_server.messages()) <= 1
    assert mail_server.spooled() == []


@pytest.mark.parametrize("variant", list(VARIANTS.values())[:-1], ids=list(VARIANTS)[:-1])
async def test_bdat_cannot_carry_what_data_refuses(mail_server, variant: bytes) -> None:
    # BDAT is length-delimited, so no end marker can be faked; but without BODY=BINARYMIME
    # its content is audited like DATA, so the same bytes cannot be relayed onwards later.
    dlg = await Dialogue.connect(mail_server.ports["mx"])
    await dlg.expect("220 ")
    await dlg.cmd("EHLO client.test", expect="250 ")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<test@localhost>", expect="250 2.1.5")
    content = b"Subject: a\r\n\r\nhello" + variant + SMUGGLED
    dlg.send_raw(b"BDAT %d LAST\r\n" % len(content) + content)
    await dlg.expect("550 5.6.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert await dlg.is_closed()
    assert mail_server.messages() == []
    assert mail_server.spooled() == []
