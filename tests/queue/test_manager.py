"""QueueManager: delivery, retries with an injected clock, expiry, DSNs, leases.

Runs the real SQLite store and the real Maildir agent on tmp_path. Failures
come from `ScriptedAgent`, a delivery agent that answers what each test says
(the outside world: a remote mailbox server that is down or refuses); it
implements the same DeliveryAgent contract as Maildir and LMTP.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postguard.delivery.base import Delivered, Outcome, PermanentFailure, TemporaryFailure
from postguard.delivery.maildir import MaildirAgent
from postguard.protocol.replies import Reply
from postguard.queue.manager import ManagerSettings, QueueManager
from postguard.queue.schedule import DAYS, HOURS, RetrySchedule
from postguard.queue.store.base import NewMessage, NewRecipient, RecipientState
from postguard.queue.store.sqlite import SqliteQueueStore

T0 = 1_800_000_000.0
R451 = Reply.of(451, "4.2.1", "Mailbox busy")
R550 = Reply.of(550, "5.1.1", "No such user")


class ScriptedAgent:
    """Answers each delivery with the next scripted outcome (then Delivered)."""

    name = "remote"

    def __init__(self, *script: Outcome | Exception) -> None:
        self.script = list(script)
        self.calls: list[tuple[list[str], str]] = []

    def deliver(
        self, content: bytes, mailboxes: list[str], *, reverse_path: str = ""
    ) -> dict[str, Outcome]:
        self.calls.append((mailboxes, reverse_path))
        step = self.script.pop(0) if self.script else Delivered()
        if isinstance(step, Exception):
            raise step
        return {m: step for m in mailboxes}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteQueueStore]:
    s = SqliteQueueStore(tmp_path / "queue")
    yield s
    await s.close()


def make_manager(
    store: SqliteQueueStore, tmp_path: Path, agent: ScriptedAgent, clock: Clock, **settings: object
) -> QueueManager:
    return QueueManager(
        store,
        {"remote": agent, "maildir": MaildirAgent(tmp_path / "mail")},
        hostname="mx.test",
        settings=ManagerSettings(**settings),  # type: ignore[arg-type]
        clock=clock,
        route_for_sender=lambda a: (a, "maildir") if a.endswith("@localhost") else None,
    )


def message(
    queue_id: str = "Q0000000000000001",
    *,
    sender: str = "alice@localhost",
    notify: tuple[str, ...] = (),
    route: str = "remote",
    envelope: dict | None = None,
) -> NewMessage:
    body = b"Subject: test\r\nMessage-ID: <m1@test>\r\n\r\nhello\r\n"
    return NewMessage(
        queue_id=queue_id,
        received_at=T0,
        reverse_path=sender,
        recipients=(NewRecipient("bob@example.net", "bob@example.net", route, notify),),
        prepend=b"Received: from test\r\n",
        size=len(body),
        envelope=envelope or {"body_type": "8BITMIME"},
        body=body,
    )


def maildir_messages(tmp_path: Path, mailbox: str) -> list[bytes]:
    local, _, domain = mailbox.rpartition("@")
    new = tmp_path / "mail" / domain / local / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


async def test_delivered_message_leaves_the_queue(store: SqliteQueueStore, tmp_path: Path) -> None:
    agent = ScriptedAgent(Delivered())
    manager = make_manager(store, tmp_path, agent, Clock())
    await store.commit(message())
    assert await manager.run_once() == 1
    assert agent.calls == [(["bob@example.net"], "alice@localhost")]
    assert await store.get_message("Q0000000000000001") is None


async def test_maildir_copy_starts_with_return_path(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    manager = make_manager(store, tmp_path, ScriptedAgent(), Clock())
    local = NewMessage(
        queue_id="Q0000000000000002",
        received_at=T0,
        reverse_path="carol@example.org",
        recipients=(NewRecipient("test@localhost", "test@localhost", "maildir"),),
        prepend=b"Received: x\r\n",
        size=4,
        envelope={},
        body=b"hi\r\n",
    )
    await store.commit(local)
    await manager.run_once()
    [copy] = maildir_messages(tmp_path, "test@localhost")
    assert copy == b"Return-Path: <carol@example.org>\r\nReceived: x\r\nhi\r\n"


async def test_temporary_failure_is_retried_after_the_backoff(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    clock = Clock()
    agent = ScriptedAgent(TemporaryFailure(R451, "busy"), Delivered())
    manager = make_manager(store, tmp_path, agent, clock)
    await store.commit(message())
    await manager.run_once()
    row = await store.get_message("Q0000000000000001")
    assert row is not None
    [rcpt] = row.recipients
    assert rcpt.state is RecipientState.DEFERRED
    assert rcpt.attempts == 1
    assert rcpt.last_reply is not None and rcpt.last_reply.startswith("451 4.2.1 Mailbox busy")
    assert T0 + 300 <= rcpt.next_attempt <= T0 + 330
    clock.now = T0 + 299
    assert await manager.run_once() == 0
    clock.now = rcpt.next_attempt
    assert await manager.run_once() == 1
    assert await store.get_message("Q0000000000000001") is None
    assert len(agent.calls) == 2


async def test_agent_exception_counts_as_temporary(store: SqliteQueueStore, tmp_path: Path) -> None:
    manager = make_manager(store, tmp_path, ScriptedAgent(RuntimeError("boom")), Clock())
    await store.commit(message())
    await manager.run_once()
    row = await store.get_message("Q0000000000000001")
    assert row is not None and row.recipients[0].state is RecipientState.DEFERRED


async def test_permanent_failure_bounces_with_a_dsn_to_the_local_sender(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    manager = make_manager(
        store, tmp_path, ScriptedAgent(PermanentFailure(R550, "no user")), Clock()
    )
    await store.commit(message(envelope={"body_type": "8BITMIME", "envid": "E1", "ret": "HDRS"}))
    await manager.run_once()  # bounce: original removed, DSN queued
    assert await store.get_message("Q0000000000000001") is None
    await manager.run_once()  # the DSN is delivered to alice@localhost's Maildir
    [dsn] = maildir_messages(tmp_path, "alice@localhost")
    assert dsn.startswith(b"Return-Path: <>\r\n")
    msg = parse(dsn)
    assert msg.get_content_type() == "multipart/report"
    status = list(msg.iter_parts())[1].get_payload()
    assert status[0]["Original-Envelope-Id"] == "E1"
    assert status[1]["Action"] == "failed"
    assert status[1]["Status"] == "5.1.1"
    assert status[1]["Final-Recipient"] == "rfc822; bob@example.net"
    assert "550 5.1.1 No such user" in status[1]["Diagnostic-Code"]


async def test_null_sender_is_never_bounced(store: SqliteQueueStore, tmp_path: Path) -> None:
    manager = make_manager(store, tmp_path, ScriptedAgent(PermanentFailure(R550, "")), Clock())
    await store.commit(message(sender=""))
    await manager.run_once()
    assert (await store.stats()).messages == 0


async def test_notify_never_suppresses_the_dsn(store: SqliteQueueStore, tmp_path: Path) -> None:
    manager = make_manager(store, tmp_path, ScriptedAgent(PermanentFailure(R550, "")), Clock())
    await store.commit(message(notify=("NEVER",)))
    await manager.run_once()
    assert (await store.stats()).messages == 0


async def test_expiry_bounces_with_4_4_7_after_the_lifetime(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    clock = Clock()
    schedule = RetrySchedule(max_lifetime=1 * DAYS, delay_warning_after=0)
    agent = ScriptedAgent(*[TemporaryFailure(R451, "busy")] * 100)
    manager = make_manager(store, tmp_path, agent, clock, schedule=schedule)
    await store.commit(message())
    while await store.get_message("Q0000000000000001") is not None:
        row = await store.get_message("Q0000000000000001")
        assert row is not None
        clock.now = max(clock.now, row.recipients[0].next_attempt)
        await manager.run_once()
    assert clock.now - T0 >= 1 * DAYS
    await manager.run_once()
    [dsn] = maildir_messages(tmp_path, "alice@localhost")
    block = list(parse(dsn).iter_parts())[1].get_payload()[1]
    assert block["Status"] == "4.4.7"
    assert "delivery time expired" in block["Diagnostic-Code"]


async def test_delay_warning_is_sent_once_when_notify_asks(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    clock = Clock()
    agent = ScriptedAgent(*[TemporaryFailure(R451, "busy")] * 20)
    manager = make_manager(
        store, tmp_path, agent, clock, schedule=RetrySchedule(delay_warning_after=4 * HOURS)
    )
    await store.commit(message(notify=("FAILURE", "DELAY")))
    for _ in range(8):  # ~ 5+10+20+40+66+66+66 minutes: past four hours
        row = await store.get_message("Q0000000000000001")
        assert row is not None
        clock.now = row.recipients[0].next_attempt
        await manager.run_once()
    await manager.run_once()  # deliver the warning itself
    dsns = maildir_messages(tmp_path, "alice@localhost")
    assert len(dsns) == 1
    msg = parse(dsns[0])
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    assert list(msg.iter_parts())[1].get_payload()[1]["Action"] == "delayed"


async def test_success_dsn_only_when_asked(store: SqliteQueueStore, tmp_path: Path) -> None:
    manager = make_manager(store, tmp_path, ScriptedAgent(Delivered()), Clock())
    await store.commit(message(notify=("SUCCESS",)))
    await manager.run_once()
    await manager.run_once()
    [dsn] = maildir_messages(tmp_path, "alice@localhost")
    assert parse(dsn)["Subject"] == "Successful Mail Delivery Report"


async def test_leases_of_a_crashed_process_are_delivered_again(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    await store.commit(message())
    await store.claim_due(now=T0, owner="dead-process", lease_seconds=3600, limit=10)
    agent = ScriptedAgent(Delivered())
    manager = make_manager(store, tmp_path, agent, Clock())
    assert await manager.run_once() == 0
    assert await manager.recover_leases() == 1
    assert await manager.run_once() == 1
    assert len(agent.calls) == 1


async def test_missing_route_defers_instead_of_losing_mail(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    manager = make_manager(store, tmp_path, ScriptedAgent(), Clock())
    await store.commit(message(route="relay"))
    await manager.run_once()
    row = await store.get_message("Q0000000000000001")
    assert row is not None and row.recipients[0].state is RecipientState.DEFERRED
