"""SMTP in, LMTP out: postguard's queue delivering to a real Dovecot, read back over IMAPS.

An in-process server takes mail over SMTP (STARTTLS on mx) and delivers local
mail by ``[delivery] default = "lmtp"`` to a private Dovecot
(``helpers/dovecot.py``) with ``tls = "required"``, verifying Dovecot's test CA;
``localhost`` (the sender's domain) is routed to Maildir, so DSNs land on disk.
postguard's ``[local] mailboxes`` name Dovecot's users (alice, bob) and one it
does not know (ghost).

Covers: the bytes Dovecot stores are Return-Path + postguard's Received + the body
as sent, exactly (from mx, nothing else is added); a mailbox unknown to Dovecot (its
``550 5.1.1`` at RCPT) bounces, and the DSN in the sender's Maildir carries
Dovecot's reply; Dovecot down → the message is deferred with the connection
failure as last reply, Dovecot up + ``postguard queue retry`` → delivered
exactly once.

Dovecot missing: a loud skip locally, a failure when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
import smtplib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from helpers.dialogue import Dialogue
from helpers.dovecot import DovecotServer, free_port, require_dovecot, running_dovecot
from helpers.servers import InProcessServer
from postguard.queue.store.base import MessageRow, RecipientState

T = TypeVar("T")
SENDER = "sender@localhost"
ALICE = "alice@example.test"
BOB = "bob@example.test"
GHOST = "ghost@example.test"  # a postguard mailbox Dovecot does not know
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.02
CLI_TIMEOUT_SECONDS = 60.0
QUEUED_AS = re.compile(r"^250 2\.0\.0 OK: queued as ([0-9A-Z]{16})$")

SERVER_TOML = """\
[local]
domains = ["localhost", "example.test"]
mailboxes = ["{sender}", "{alice}", "{bob}", "{ghost}"]

[queue]
first_retry = "1h"
scan_interval = "100ms"

[delivery]
default = "lmtp"

[delivery.lmtp]
address = "127.0.0.1:{port}"
tls = "required"
ca_file = "{ca_file}"
server_name = "localhost"

[delivery.routes]
"localhost" = "maildir"
"""


@dataclass
class LmtpTarget:
    """The LMTP port and CA postguard is configured with; Dovecot runs there when started."""

    port: int
    ca: trustme.CA
    ca_file: Path
    stack: contextlib.ExitStack
    dovecot: DovecotServer | None = None

    async def start_dovecot(self) -> DovecotServer:
        require_dovecot()
        self.dovecot = await asyncio.to_thread(
            self.stack.enter_context, running_dovecot(lmtp_port=self.port, ca=self.ca)
        )
        return self.dovecot


@dataclass(frozen=True)
class Sent:
    queue_id: str
    cipher: str | None
    bits: int | None


@pytest.fixture
def lmtp(tmp_path: Path) -> Iterator[LmtpTarget]:
    require_dovecot()
    ca = trustme.CA()
    ca_file = tmp_path / "lmtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with contextlib.ExitStack() as stack:
        yield LmtpTarget(port=free_port(), ca=ca, ca_file=ca_file, stack=stack)


@pytest.fixture
async def srv(server_factory: Callable[..., Awaitable[InProcessServer]], lmtp: LmtpTarget) -> Any:
    toml = SERVER_TOML.format(
        sender=SENDER, alice=ALICE, bob=BOB, ghost=GHOST, port=lmtp.port, ca_file=lmtp.ca_file
    )
    return await server_factory(toml)


# ------------------------------------------------------------------ helpers


async def send(
    srv: InProcessServer, body: bytes, *rcpts: str, sender: str = SENDER, params: str = ""
) -> Sent:
    """One message over mx with STARTTLS; returns its queue ID and the TLS cipher used."""
    dlg = await Dialogue.connect(srv.ports["mx"])
    try:
        await dlg.expect("220")
        await dlg.cmd("EHLO client.test", expect="250")
        await dlg.starttls(srv.client_tls())
        await dlg.cmd("EHLO client.test", expect="250")
        name, _, bits = dlg.writer.get_extra_info("ssl_object").cipher()
        await dlg.cmd(f"MAIL FROM:<{sender}>{params}", expect="250")
        for rcpt in rcpts:
            await dlg.cmd(f"RCPT TO:<{rcpt}>", expect="250")
        await dlg.cmd("DATA", expect="354")
        stuffed = b"".join(
            (b"." + line if line.startswith(b".") else line)
            for line in body.splitlines(keepends=True)
        )
        dlg.send_raw(stuffed + b".\r\n")
        reply = await dlg.read_reply()
        match = QUEUED_AS.match(reply[-1])
        assert match, reply
        await dlg.cmd("QUIT", expect="221")
    finally:
        await dlg.close()
    return Sent(match.group(1), name, bits)


async def wait_for(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


async def stored(srv: InProcessServer, queue_id: str) -> MessageRow | None:
    assert srv.server is not None and srv.server.store is not None
    return await srv.server.store.get_message(queue_id)


async def gone(srv: InProcessServer, queue_id: str) -> None:
    async def check() -> bool:
        return await stored(srv, queue_id) is None

    await wait_for(check, f"{queue_id} to leave the queue")


async def inbox_with(dovecot: DovecotServer, user: str, marker: str) -> list[bytes]:
    messages = await asyncio.to_thread(dovecot.fetch_inbox, user)
    return [m for m in messages if marker.encode() in m]


def dovecot_rcpt_reply(dovecot: DovecotServer, address: str) -> str:
    """What Dovecot itself answers to RCPT for ``address`` (asked with smtplib's LMTP client)."""
    with contextlib.closing(smtplib.LMTP("127.0.0.1", dovecot.lmtp_port, timeout=30)) as lmtp:
        lmtp.ehlo("probe.test")
        lmtp.mail(SENDER)
        code, text = lmtp.rcpt(address)
        lmtp.rset()
        lmtp.quit()
    return f"{code} {text.decode()}"


def delivery_status(raw: bytes) -> tuple[EmailMessage, Message, list[Message]]:
    """A DSN parsed: the message, its per-message block and its per-recipient blocks."""
    dsn = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(dsn, EmailMessage)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = list(dsn.iter_parts())
    assert [p.get_content_type() for p in parts[:2]] == ["text/plain", "message/delivery-status"]
    per_message, *per_recipient = parts[1].get_payload()
    return dsn, per_message, per_recipient


# -------------------------------------------------------------------- tests


@pytest.mark.parametrize("eight_bit", [False, True], ids=["7bit", "8bitmime"])
async def test_message_is_stored_by_dovecot_byte_for_byte(
    srv: InProcessServer, lmtp: LmtpTarget, eight_bit: bool
) -> None:
    dovecot = await lmtp.start_dovecot()
    marker = uuid.uuid4().hex
    body = (
        f"From: Sender <{SENDER}>\r\n"
        f"To: <{ALICE}>\r\n"
        f"Subject: queue to LMTP {marker}\r\n"
        + ("Content-Type: text/plain; charset=utf-8\r\n" if eight_bit else "")
        + "\r\n"
        "First line.\r\n"
        ".A line that starts with a dot.\r\n"
        "..\r\n" + ("Grüße, 8-bit: ä ö ü ß €\r\n" if eight_bit else "") + f"{'x' * 900}\r\n"
        "Last line.\r\n"
    ).encode()
    before = time.time()
    sent = await send(srv, body, ALICE, params=" BODY=8BITMIME" if eight_bit else "")
    await gone(srv, sent.queue_id)

    [stored_bytes] = await inbox_with(dovecot, "alice", marker)
    date = re.search(rb"\tfor <[^>]+>; ([^\r\n]+)\r\n", stored_bytes)
    assert date, stored_bytes[:600]
    received_at = parsedate_to_datetime(date.group(1).decode()).timestamp()
    assert int(before) - 1 <= received_at <= time.time() + 1
    expected = (
        f"Return-Path: <{SENDER}>\r\n"
        "Received: from client.test ([127.0.0.1])\r\n"
        f"\t(using TLSv1.3 with cipher {sent.cipher} ({sent.bits} bits))\r\n"
        f"\tby localhost (postguard) with ESMTPS id {sent.queue_id}\r\n"
        f"\tfor <{ALICE}>; {date.group(1).decode()}\r\n"
    ).encode() + body  # from mx: nothing added but Received (RFC 5321 §6.4)
    assert stored_bytes == expected
    assert srv.messages(SENDER) == []  # no DSN: NOTIFY defaults to FAILURE,DELAY


async def test_mailbox_unknown_to_dovecot_bounces_with_dovecots_reply(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    dovecot = await lmtp.start_dovecot()
    dovecot_says = await asyncio.to_thread(dovecot_rcpt_reply, dovecot, GHOST)
    assert dovecot_says.startswith("550 5.1.1 "), dovecot_says
    marker = uuid.uuid4().hex
    body = f"Subject: bounce {marker}\r\n\r\nto alice and ghost\r\n".encode()
    sent = await send(srv, body, ALICE, GHOST)
    await gone(srv, sent.queue_id)

    assert len(await inbox_with(dovecot, "alice", marker)) == 1, dovecot.log()
    [raw] = await srv.wait_for_messages(1, SENDER)
    assert raw.startswith(b"Return-Path: <>\r\n")
    dsn, per_message, per_recipient = delivery_status(raw)
    assert dsn["To"].addresses[0].addr_spec == SENDER
    assert dsn["From"].addresses[0].addr_spec == "MAILER-DAEMON@localhost"
    assert per_message["Reporting-MTA"] == "dns; localhost"
    [ghost] = per_recipient  # alice was delivered: she is not in the report
    assert ghost["Final-Recipient"] == f"rfc822; {GHOST}"
    assert ghost["Action"] == "failed"
    assert ghost["Status"] == "5.1.1"
    assert dovecot_says in ghost["Diagnostic-Code"]
    returned = list(dsn.iter_parts())[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert f"id {sent.queue_id}".encode() in returned.get_payload(decode=True)
    await wait_for(lambda: asyncio.to_thread(lambda: srv.spooled() == []), "an empty queue")


async def test_dovecot_down_defers_and_retry_delivers_exactly_once(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    marker = uuid.uuid4().hex
    body = f"Subject: deferred {marker}\r\n\r\nwaits for dovecot\r\n".encode()
    sent = await send(srv, body, BOB)

    async def is_deferred() -> MessageRow | None:
        m = await stored(srv, sent.queue_id)
        return m if m and m.recipients[0].state is RecipientState.DEFERRED else None

    message = await wait_for(is_deferred, f"{sent.queue_id} deferred")
    [rcpt] = message.recipients
    assert (rcpt.attempts, rcpt.route) == (1, "lmtp")
    assert rcpt.last_reply is not None
    assert rcpt.last_reply.startswith("451 4.4.1 LMTP server not reachable")
    assert f"127.0.0.1:{lmtp.port}" in rcpt.last_reply
    assert "refused" in rcpt.last_reply.lower()

    dovecot = await lmtp.start_dovecot()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postguard",
        "queue",
        "retry",
        sent.queue_id,
        "--config",
        str(srv.data_dir / "postguard.toml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_SECONDS)
    assert (proc.returncode, out, err) == (
        0,
        b"1 recipient(s) scheduled for immediate retry\n",
        b"",
    )
    await gone(srv, sent.queue_id)
    assert len(await inbox_with(dovecot, "bob", marker)) == 1, dovecot.log()
    assert srv.spooled() == []
    assert srv.messages(SENDER) == []


async def test_dsn_to_a_sender_whose_mailbox_is_at_dovecot_goes_over_lmtp(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    dovecot = await lmtp.start_dovecot()
    marker = uuid.uuid4().hex
    body = f"Subject: bounce over lmtp {marker}\r\n\r\nto ghost\r\n".encode()
    sent = await send(srv, body, GHOST, sender=ALICE)
    await gone(srv, sent.queue_id)

    async def dsn_in_inbox() -> list[bytes]:
        return await inbox_with(dovecot, "alice", sent.queue_id)

    [raw] = await wait_for(dsn_in_inbox, "the DSN in alice's INBOX")
    assert raw.startswith(b"Return-Path: <>\r\n")  # DSNs come from the null sender
    dsn, _, [ghost] = delivery_status(raw)
    assert dsn["To"].addresses[0].addr_spec == ALICE
    assert (ghost["Final-Recipient"], ghost["Action"]) == (f"rfc822; {GHOST}", "failed")
    assert ghost["Status"] == "5.1.1"
    assert srv.messages(SENDER) == []
