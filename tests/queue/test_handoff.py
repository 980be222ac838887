"""New mail handed from intake to the queue manager in memory (the active queue),
bounds on what waits in memory, and redelivery after a crash.

The store commits a new message already leased to the manager; the manager
delivers it from memory without claiming it back. Runs the real SQLite store,
real Maildir agent and real intake on tmp_path; `BlockingAgent` is a delivery
agent that holds each batch until the test lets it go, to look at what waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from postguard.delivery.base import Delivered, DeliveryItem, NeedsFlush, Outcome
from postguard.delivery.maildir import MaildirAgent
from postguard.intake.intake import Intake
from postguard.protocol.grammar import parse_mailbox
from postguard.queue.bodies import BodyFiles
from postguard.queue.manager import ManagerSettings, QueueManager
from postguard.queue.store.base import Lease, NewMessage, NewRecipient, RecipientState
from postguard.queue.store.sqlite import SqliteQueueStore
from postguard.server.envelope import Envelope, Provenance, Recipient

T0 = 1_800_000_000.0


class CountingStore(SqliteQueueStore):
    """The SQLite store, counting claim_due calls that returned something."""

    claimed: int = 0

    async def claim_due(self, **kwargs):  # type: ignore[no-untyped-def, override]
        claims = await super().claim_due(**kwargs)
        self.claimed += len(claims)
        return claims


class BlockingAgent:
    """Records every batch and holds it until `release` is set."""

    name = "remote"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[list[DeliveryItem]] = []
        self.started = threading.Event()

    def deliver(
        self, content: bytes, mailboxes: list[str], *, reverse_path: str = ""
    ) -> dict[str, Outcome]:
        return self.deliver_batch([DeliveryItem(content, mailboxes, reverse_path)])[0]

    def deliver_batch(self, items: list[DeliveryItem]) -> list[dict[str, Outcome]]:
        self.batches.append(list(items))
        self.started.set()
        self.release.wait(10)
        return [{m: Delivered() for m in item.mailboxes} for item in items]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    s = CountingStore(tmp_path / "queue")
    yield s
    await s.close()


def message(queue_id: str) -> NewMessage:
    body = b"Subject: handoff\r\n\r\nhello\r\n"
    return NewMessage(
        queue_id=queue_id,
        received_at=T0,
        reverse_path="alice@example.org",
        recipients=(NewRecipient("bob@localhost", "bob@localhost", "remote"),),
        prepend=b"Received: test\r\n",
        size=len(body),
        envelope={"body_type": "8BITMIME"},
        body=body,
    )


def manager_for(store: SqliteQueueStore, agent: object, **settings: object) -> QueueManager:
    return QueueManager(
        store,
        {"remote": agent},  # type: ignore[dict-item]
        hostname="mx.test",
        settings=ManagerSettings(**settings),  # type: ignore[arg-type]
        clock=lambda: T0 + 1,
    )


async def hand_off(manager: QueueManager, store: SqliteQueueStore, msg: NewMessage) -> None:
    await wait_for(lambda: manager.accepting)
    lease = manager.reserve(100)
    assert lease is not None
    await store.commit(msg, lease=lease)
    manager.committed(msg, lease)


async def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_handed_off_message_is_delivered_without_a_claim(store: CountingStore) -> None:
    agent = BlockingAgent()
    agent.release.set()
    manager = manager_for(store, agent)
    manager.start()
    try:
        await hand_off(manager, store, message("H1"))
        await wait_for(lambda: manager.delivered == 1)
        await wait_for(lambda: not manager._tasks)
    finally:
        await manager.stop()
    assert store.claimed == 0
    assert [i.key for i in agent.batches[0]] == ["H1"]
    assert agent.batches[0][0].content == b"Received: test\r\nSubject: handoff\r\n\r\nhello\r\n"
    assert await store.get_message("H1") is None  # delivered and gone


async def test_work_for_a_busy_destination_joins_the_next_batch(store: CountingStore) -> None:
    agent = BlockingAgent()
    manager = manager_for(store, agent)
    manager.start()
    try:
        await hand_off(manager, store, message("B1"))
        await asyncio.to_thread(agent.started.wait, 10)
        for n in range(2, 5):
            await hand_off(manager, store, message(f"B{n}"))
        await asyncio.sleep(0.1)
        assert len(agent.batches) == 1  # the others wait for the delivery in flight
        agent.release.set()
        await wait_for(lambda: manager.delivered == 4)
    finally:
        agent.release.set()
        await manager.stop()
    assert [[i.key for i in batch] for batch in agent.batches] == [["B1"], ["B2", "B3", "B4"]]


async def test_the_ready_area_is_bounded(store: CountingStore) -> None:
    agent = BlockingAgent()
    manager = manager_for(store, agent, handoff_limit=2)
    manager.start()
    await wait_for(lambda: manager.accepting)
    try:
        assert manager.reserve(64 * 1024 + 1) is None  # too big to wait in memory
        first, second = manager.reserve(100), manager.reserve(100)
        assert first is not None and second is not None
        assert manager.reserve(100) is None  # full: intake commits unleased instead
        manager.abandoned(second)  # that commit failed: its place is free again
        assert manager.reserve(100) is not None
    finally:
        agent.release.set()
        await manager.stop()


async def test_no_lease_before_recovery_is_done_nor_after_stop(store: CountingStore) -> None:
    manager = manager_for(store, BlockingAgent())
    assert manager.reserve(100) is None
    manager.start()
    assert manager.reserve(100) is None  # recovery would release the new message's lease
    await wait_for(lambda: manager.accepting)
    lease = manager.reserve(100)
    assert lease is not None
    manager.abandoned(lease)
    await manager.stop()
    assert manager.reserve(100) is None


async def test_stop_gives_back_the_leases_of_work_that_never_started(
    store: CountingStore,
) -> None:
    agent = BlockingAgent()
    manager = manager_for(store, agent)
    manager.start()
    await hand_off(manager, store, message("S1"))
    await asyncio.to_thread(agent.started.wait, 10)
    await hand_off(manager, store, message("S2"))  # waits behind S1
    stopping = asyncio.create_task(manager.stop())
    await asyncio.sleep(0.05)
    agent.release.set()
    await stopping
    assert await store.get_message("S1") is None
    waiting = await store.get_message("S2")
    assert waiting is not None
    assert waiting.recipients[0].state is RecipientState.QUEUED  # due again, not stuck


async def test_a_recovered_lease_reaches_the_agent_as_a_redelivery(
    store: CountingStore,
) -> None:
    await store.commit(message("R1"), lease=Lease("crashed-process", T0 + 600))
    agent = BlockingAgent()
    agent.release.set()
    manager = manager_for(store, agent)
    manager.start()  # recovers the dead process's leases
    try:
        await wait_for(lambda: manager.delivered == 1)
    finally:
        await manager.stop()
    (item,) = agent.batches[0]
    assert (item.key, item.received_at, item.redelivery) == ("R1", T0, True)


async def test_a_cancelled_session_still_hands_its_committed_message_over(
    store: CountingStore, tmp_path: Path
) -> None:
    maildir = MaildirAgent(tmp_path / "mail")
    manager = QueueManager(store, {"maildir": maildir}, hostname="mx.test")
    manager.start()
    await wait_for(lambda: manager.accepting)
    executor = ThreadPoolExecutor(2)
    intake = Intake(
        store,
        BodyFiles(tmp_path / "queue" / "bodies", executor),
        "mx.test",
        route_for=lambda mailbox: "maildir",
        handoff=manager,
    )
    envelope = Envelope(reverse_path=None)  # <>
    envelope.recipients.append(Recipient(parse_mailbox("bob@localhost"), "bob@localhost"))
    provenance = Provenance("s1", "mx", "127.0.0.1", 40000, "client.test", esmtp=True)
    submission = intake.begin(envelope, provenance)
    submission.write(b"Subject: cancelled\r\n\r\nbody\r\n")
    session = asyncio.create_task(submission.commit())
    await asyncio.sleep(0)
    session.cancel()  # the client went away while the commit was in flight
    with pytest.raises(asyncio.CancelledError):
        await session
    try:
        await wait_for(lambda: manager.delivered == 1)
    finally:
        await manager.stop()
        executor.shutdown()
    new = tmp_path / "mail" / "localhost" / "bob" / "new"
    (copy,) = list(new.iterdir())
    assert copy.read_bytes().endswith(b"Subject: cancelled\r\n\r\nbody\r\n")
    assert store.claimed == 0


async def test_retries_are_claimed_while_new_mail_waits_in_memory(
    store: CountingStore,
) -> None:
    # Mail that was committed unleased (say, the ready area was full) is claimed
    # from the store even while many handed-off messages wait for their destination.
    agent = BlockingAgent()
    manager = manager_for(store, agent, claim_batch=2)
    await store.commit(message("OLD"))
    manager.start()
    try:
        await wait_for(lambda: len(agent.batches) == 1)  # OLD, claimed at start
        for n in range(5):
            await hand_off(manager, store, message(f"NEW{n}"))
        await store.commit(message("LATER"))
        manager.wake()
        await asyncio.sleep(0.1)
        assert store.claimed == 2  # LATER was claimed although 5 jobs are ready
    finally:
        agent.release.set()
        await manager.stop()


async def test_a_commit_that_ends_after_stop_gives_its_lease_back(
    store: CountingStore,
) -> None:
    manager = manager_for(store, BlockingAgent())
    manager.start()
    await wait_for(lambda: manager.accepting)
    lease = manager.reserve(100)
    assert lease is not None
    await manager.stop()  # the session's commit is still in flight
    msg = message("LATE")
    await store.commit(msg, lease=lease)
    manager.committed(msg, lease)
    await wait_for(lambda: not manager._tasks)
    row = await store.get_message("LATE")
    assert row is not None
    assert row.recipients[0].state is RecipientState.QUEUED  # not stuck in "delivering"


async def test_claims_stop_while_the_ready_area_holds_its_content_budget(
    store: CountingStore,
) -> None:
    agent = BlockingAgent()
    for n in range(3):
        await store.commit(message(f"BIG{n}"))  # 43 octets of content each
    manager = manager_for(store, agent, claim_max_octets=40, claim_batch=1, per_destination=1)
    manager.start()
    try:
        await wait_for(lambda: store.claimed == 2)  # one in flight, one waiting for it
        await asyncio.sleep(0.1)
        assert store.claimed == 2  # the third stays in the store, not in memory
        agent.release.set()
        await wait_for(lambda: manager.delivered == 3)
    finally:
        agent.release.set()
        await manager.stop()


async def test_a_copy_stored_before_a_crash_is_not_stored_again(
    store: CountingStore, tmp_path: Path
) -> None:
    # The crashed process stored the Maildir copy and died before recording it: its
    # lease is recovered at the next start, and the redelivery finds the copy.
    msg = message("CRASH1")
    msg = NewMessage(
        queue_id=msg.queue_id,
        received_at=msg.received_at,
        reverse_path=msg.reverse_path,
        recipients=(NewRecipient("bob@localhost", "bob@localhost", "maildir"),),
        prepend=msg.prepend,
        size=msg.size,
        envelope=msg.envelope,
        body=msg.body,
    )
    await store.commit(msg, lease=Lease("crashed-process", T0 + 600))
    maildir = MaildirAgent(tmp_path / "mail")
    assert msg.body is not None
    item = DeliveryItem(
        msg.prepend + msg.body, ["bob@localhost"], msg.reverse_path, key="CRASH1", received_at=T0
    )
    assert maildir.deliver_batch([item]) == [{"bob@localhost": Delivered()}]

    manager = QueueManager(store, {"maildir": maildir}, hostname="mx.test", clock=lambda: T0 + 1)
    manager.start()  # recovers the dead process's lease, marked as a redelivery
    try:
        await wait_for(lambda: manager.delivered == 1)
    finally:
        await manager.stop()
    new = tmp_path / "mail" / "localhost" / "bob" / "new"
    (copy,) = list(new.iterdir())  # one copy, not two
    assert copy.name.startswith(f"{int(T0)}.QCRASH1.")
    assert await store.get_message("CRASH1") is None


class FlushLeavingAgent(BlockingAgent):
    """Says its copies need a flush of `path` (as Maildir does under load)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.release.set()
        self.path = path
        self.discarded: list[str] = []

    def deliver_batch(self, items: list[DeliveryItem]) -> list[dict[str, Outcome]]:
        super().deliver_batch(items)
        return [
            {m: NeedsFlush(self.path, f"{self.path}/new/{item.key}") for m in item.mailboxes}
            for item in items
        ]

    def discard(self, copies: list[str]) -> None:
        self.discarded += copies


async def test_copies_left_unflushed_count_only_after_the_managers_flush(
    store: CountingStore, tmp_path: Path
) -> None:
    agent = FlushLeavingAgent(str(tmp_path))
    manager = manager_for(store, agent)
    manager.start()
    try:
        await hand_off(manager, store, message("F1"))
        await wait_for(lambda: manager.delivered == 1)
    finally:
        await manager.stop()
    assert await store.get_message("F1") is None
    assert agent.discarded == []


async def test_a_failed_flush_defers_the_copies(store: CountingStore, tmp_path: Path) -> None:
    agent = FlushLeavingAgent(str(tmp_path / "no-such-file-system"))
    manager = manager_for(store, agent)
    manager.start()
    try:
        await hand_off(manager, store, message("F2"))
        await wait_for(lambda: bool(agent.batches))
        await wait_for(lambda: not manager._tasks)
    finally:
        await manager.stop()
    row = await store.get_message("F2")
    assert row is not None
    (rcpt,) = row.recipients
    assert rcpt.state is RecipientState.DEFERRED
    assert rcpt.last_reply is not None and "flushing copies failed" in rcpt.last_reply
    assert manager.delivered == 0
    # The agent was told to remove the copy: its data may never reach the disk, and a
    # later flush could succeed without it (the retry stores it afresh).
    assert agent.discarded == [f"{agent.path}/new/F2"]
