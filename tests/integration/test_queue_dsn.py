"""Delivery status notifications (RFC 3461/3464) end to end, from SMTP DSN parameters to a Maildir.

Mail comes in over real SMTP on mx with the DSN parameters (``NOTIFY``,
``ORCPT``, ``RET``, ``ENVID``); the sender ``sender@localhost`` is a local
Maildir mailbox, so every DSN postguard generates is delivered there and parsed
with the ``email`` package. Permanent failures come from a real Dovecot
(``helpers/dovecot.py``) that does not know ``ghost@example.test`` (``550
5.1.1`` at RCPT); temporary ones from an LMTP route to a loopback port nobody
listens on.

Absence of a DSN is proved, not waited for: outcomes and the DSNs they cause
commit in one store transaction, so once the queue is empty any DSN has
already been delivered to the sender's Maildir.

Covers: NOTIFY=SUCCESS (success DSN, Maildir and LMTP routes); NOTIFY=NEVER,
SUCCESS or DELAY → no failure DSN; RET=FULL returns the message
(``message/rfc822``), RET=HDRS and the default only its header; ENVID as
Original-Envelope-Id, ORCPT as Original-Recipient; the null sender is never
bounced; expiry after ``max_lifetime`` → a 4.4.7 failure DSN; ``delay_warning``
→ one "delayed" DSN (only to recipients that asked) before the final failure.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from helpers.dialogue import Dialogue
from helpers.dovecot import DovecotServer, free_port, running_dovecot
from helpers.servers import InProcessServer

SENDER = "sender@localhost"
LOCAL_RCPT = "rcpt@localhost"  # Maildir
ALICE = "alice@example.test"  # LMTP; known to Dovecot
BOB = "bob@example.test"  # LMTP; known to Dovecot
GHOST = "ghost@example.test"  # LMTP; unknown to Dovecot: 550 5.1.1
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.02
QUEUED_AS = re.compile(r"^250 2\.0\.0 OK: queued as ([0-9A-Z]{16})$")

LOCAL_TOML = """\
[local]
domains = ["localhost", "example.test"]
mailboxes = ["{sender}", "{local}", "{alice}", "{bob}", "{ghost}"]

[delivery.routes]
"example.test" = "lmtp"
"""
DOVECOT_TOML = """
[queue]
first_retry = "1h"
scan_interval = "100ms"

[delivery.lmtp]
address = "127.0.0.1:{port}"
tls = "required"
ca_file = "{ca_file}"
server_name = "localhost"
"""
# A route that always fails temporarily, with retries every second.
UNREACHABLE_TOML = """
[queue]
first_retry = "1s"
max_backoff = "1s"
max_lifetime = "{lifetime}"
delay_warning = "{delay_warning}"
scan_interval = "100ms"

[delivery.lmtp]
address = "127.0.0.1:{port}"
tls = "none"
"""
LOCAL = LOCAL_TOML.format(sender=SENDER, local=LOCAL_RCPT, alice=ALICE, bob=BOB, ghost=GHOST)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
async def srv(
    server_factory: Callable[..., Awaitable[InProcessServer]], dovecot: DovecotServer
) -> Any:
    """A server delivering example.test to Dovecot (over STARTTLS) and localhost to Maildir."""
    return await server_factory(
        LOCAL + DOVECOT_TOML.format(port=dovecot.lmtp_port, ca_file=dovecot.ca_path)
    )


async def unreachable_server(
    server_factory: Callable[..., Awaitable[InProcessServer]],
    *,
    lifetime: str,
    delay_warning: str = "0",
) -> InProcessServer:
    toml = UNREACHABLE_TOML.format(lifetime=lifetime, delay_warning=delay_warning, port=free_port())
    return await server_factory(LOCAL + toml)


# ------------------------------------------------------------------ helpers


async def transaction(srv: InProcessServer, mail: str, rcpts: list[str], body: bytes) -> str:
    """One plaintext SMTP transaction with the given MAIL and RCPT arguments; the queue ID."""
    dlg = await Dialogue.connect(srv.ports["mx"])
    try:
        await dlg.expect("220")
        ehlo = await dlg.cmd("EHLO client.test", expect="250")
        assert "250-DSN" in ehlo or "250 DSN" in ehlo, ehlo
        await dlg.cmd(f"MAIL FROM:{mail}", expect="250")
        for rcpt in rcpts:
            await dlg.cmd(f"RCPT TO:{rcpt}", expect="250")
        await dlg.cmd("DATA", expect="354")
        dlg.send_raw(body + b".\r\n")
        reply = await dlg.read_reply()
        match = QUEUED_AS.match(reply[-1])
        assert match, reply
        await dlg.cmd("QUIT", expect="221")
    finally:
        await dlg.close()
    return match.group(1)


def body_with(marker: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nSubject: dsn test {marker}\r\n\r\nbody line {marker}-body\r\n"
    ).encode()


async def queue_drained(srv: InProcessServer, timeout: float = WAIT_SECONDS) -> None:
    """Wait (bounded) until the queue holds nothing: every outcome and DSN is final."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(srv.spooled):
        if time.monotonic() > deadline:
            raise AssertionError(f"queue not drained: {srv.spooled()}")
        await asyncio.sleep(POLL_SECONDS)


def parse_dsn(raw: bytes) -> tuple[EmailMessage, Message, list[Message], EmailMessage]:
    """A DSN: the message, per-message fields, per-recipient blocks, the returned part."""
    assert raw.startswith(b"Return-Path: <>\r\n"), raw[:200]  # DSNs come from <>
    dsn = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(dsn, EmailMessage)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Auto-Submitted"] == "auto-replied"
    assert dsn["To"].addresses[0].addr_spec == SENDER
    human, status, returned = dsn.iter_parts()
    assert human.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    per_message, *per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; localhost"
    assert per_recipient, "a DSN without recipient blocks"
    return dsn, per_message, per_recipient, returned


def dsns(srv: InProcessServer) -> list[tuple[EmailMessage, Message, list[Message], EmailMessage]]:
    return [parse_dsn(raw) for raw in srv.messages(SENDER)]


# -------------------------------------------------------------------- tests


@pytest.mark.parametrize("rcpt", [LOCAL_RCPT, ALICE], ids=["maildir", "lmtp"])
async def test_notify_success_sends_a_success_dsn(
    srv: InProcessServer, dovecot: DovecotServer, rcpt: str
) -> None:
    marker = uuid.uuid4().hex
    await transaction(srv, f"<{SENDER}>", [f"<{rcpt}> NOTIFY=SUCCESS"], body_with(marker))
    [raw] = await srv.wait_for_messages(1, SENDER)
    dsn, _, [block], returned = parse_dsn(raw)
    assert dsn["Subject"] == "Successful Mail Delivery Report"
    assert block["Final-Recipient"] == f"rfc822; {rcpt}"
    assert block["Action"] == "delivered"
    assert block["Status"] == "2.0.0"
    assert returned.get_content_type() == "text/rfc822-headers"
    await queue_drained(srv)
    if rcpt == LOCAL_RCPT:
        [copy] = srv.messages(LOCAL_RCPT)
    else:
        inbox = await asyncio.to_thread(dovecot.fetch_inbox, "alice")
        [copy] = [m for m in inbox if marker.encode() in m]
    assert f"{marker}-body".encode() in copy
    assert len(srv.messages(SENDER)) == 1


@pytest.mark.parametrize("notify", ["NEVER", "SUCCESS", "DELAY"])
async def test_failure_without_notify_failure_sends_no_dsn(
    srv: InProcessServer, notify: str
) -> None:
    await transaction(srv, f"<{SENDER}>", [f"<{GHOST}> NOTIFY={notify}"], body_with("x"))
    await queue_drained(srv)  # the bounce is final; a DSN would have been delivered by now
    assert srv.messages(SENDER) == []


async def test_notify_failure_sends_a_failure_dsn_with_dovecots_reason(
    srv: InProcessServer,
) -> None:
    await transaction(srv, f"<{SENDER}>", [f"<{GHOST}> NOTIFY=FAILURE"], body_with("x"))
    [raw] = await srv.wait_for_messages(1, SENDER)
    dsn, _, [block], _ = parse_dsn(raw)
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert block["Final-Recipient"] == f"rfc822; {GHOST}"
    assert (block["Action"], block["Status"]) == ("failed", "5.1.1")
    assert block["Diagnostic-Code"].startswith("smtp; 550 5.1.1 ")
    assert GHOST in block["Diagnostic-Code"]


@pytest.mark.parametrize("ret", ["FULL", "HDRS", None], ids=["full", "hdrs", "default"])
async def test_ret_full_returns_the_message_and_otherwise_only_its_header(
    srv: InProcessServer, ret: str | None
) -> None:
    marker = uuid.uuid4().hex
    mail = f"<{SENDER}>" + (f" RET={ret}" if ret else "")
    queue_id = await transaction(srv, mail, [f"<{GHOST}>"], body_with(marker))
    [raw] = await srv.wait_for_messages(1, SENDER)
    _, _, [block], returned = parse_dsn(raw)
    assert block["Action"] == "failed"
    if ret == "FULL":
        assert returned.get_content_type() == "message/rfc822"
        [original] = returned.get_payload()
        assert original["Subject"] == f"dsn test {marker}"
        assert f"id {queue_id}" in original["Received"]
        assert original.get_payload() == f"body line {marker}-body\r\n"
    else:
        assert returned.get_content_type() == "text/rfc822-headers"
        header = returned.get_payload(decode=True)
        assert f"Subject: dsn test {marker}\r\n".encode() in header
        assert f"id {queue_id}".encode() in header
        assert f"{marker}-body".encode() not in raw


async def test_envid_and_orcpt_are_reported_as_original_envelope_id_and_recipient(
    srv: InProcessServer,
) -> None:
    envid = f"pg-env-{uuid.uuid4().hex}"
    await transaction(
        srv,
        f"<{SENDER}> ENVID={envid}",
        [f"<{GHOST}> ORCPT=rfc822;Ghost@Example.TEST"],
        body_with("x"),
    )
    [raw] = await srv.wait_for_messages(1, SENDER)
    _, per_message, [block], _ = parse_dsn(raw)
    assert per_message["Original-Envelope-Id"] == envid
    assert block["Original-Recipient"] == "rfc822;Ghost@Example.TEST"
    assert block["Final-Recipient"] == f"rfc822; {GHOST}"


async def test_null_sender_is_never_bounced(srv: InProcessServer) -> None:
    await transaction(srv, "<>", [f"<{GHOST}> NOTIFY=FAILURE"], body_with("x"))
    await queue_drained(srv)
    delivered = [p for p in (srv.data_dir / "mail").rglob("*") if p.is_file()]
    assert delivered == []


async def test_expired_message_bounces_with_4_4_7(
    server_factory: Callable[..., Awaitable[InProcessServer]],
) -> None:
    srv = await unreachable_server(server_factory, lifetime="2s")
    sent_at = time.time()
    await transaction(srv, f"<{SENDER}>", [f"<{ALICE}>"], body_with("x"))
    [raw] = await srv.wait_for_messages(1, SENDER)
    assert time.time() - sent_at >= 2.0  # not before max_lifetime
    dsn, per_message, [block], _ = parse_dsn(raw)
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert block["Final-Recipient"] == f"rfc822; {ALICE}"
    assert (block["Action"], block["Status"]) == ("failed", "4.4.7")
    assert "delivery time expired" in block["Diagnostic-Code"]
    assert "451 4.4.1" in block["Diagnostic-Code"]  # the last reply: not reachable
    arrival = parsedate_to_datetime(per_message["Arrival-Date"]).timestamp()
    last_attempt = parsedate_to_datetime(block["Last-Attempt-Date"]).timestamp()
    assert last_attempt - arrival >= 1  # whole seconds in the Date format
    await queue_drained(srv)
    assert len(srv.messages(SENDER)) == 1  # delay warnings are off: only the failure


async def test_delay_warning_comes_once_before_the_final_failure(
    server_factory: Callable[..., Awaitable[InProcessServer]],
) -> None:
    srv = await unreachable_server(server_factory, lifetime="3s", delay_warning="1s")
    await transaction(
        srv,
        f"<{SENDER}>",
        [f"<{ALICE}> NOTIFY=DELAY,FAILURE", f"<{BOB}> NOTIFY=FAILURE"],
        body_with("x"),
    )
    await queue_drained(srv)
    reports = dsns(srv)
    by_action: dict[str, list[tuple[str, Message, EmailMessage]]] = {}
    for dsn, _, blocks, _ in reports:
        for block in blocks:
            by_action.setdefault(block["Action"], []).append((block["Final-Recipient"], block, dsn))
    assert sorted(by_action) == ["delayed", "failed"], reports
    [(delayed_rcpt, delayed, delayed_dsn)] = by_action["delayed"]  # once, and not to bob
    assert delayed_rcpt == f"rfc822; {ALICE}"
    assert delayed["Status"] == "4.4.1"
    assert delayed["Will-Retry-Until"] is not None
    assert delayed_dsn["Subject"] == "Delayed Mail (still being retried)"
    failed = sorted((rcpt, block["Status"]) for rcpt, block, _ in by_action["failed"])
    assert failed == [(f"rfc822; {ALICE}", "4.4.7"), (f"rfc822; {BOB}", "4.4.7")]
    failed_dsn = by_action["failed"][0][2]
    assert parsedate_to_datetime(delayed_dsn["Date"]) <= parsedate_to_datetime(failed_dsn["Date"])
