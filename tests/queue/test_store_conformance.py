"""QueueStore conformance: every back end must pass this suite (SQLite today; PostgreSQL later).

Covers durable commit and read-back, leases (two owners never get the same
recipient; a commit made with a lease is already leased; recovered leases are
marked as redeliveries), outcomes and removal of finished messages, bounces committed
atomically with outcomes, operator actions (hold, release, retry, delete),
stats, and group commit (many concurrent commits share transactions).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postguard.queue.store.base import (
    Lease,
    NewMessage,
    NewRecipient,
    RecipientOutcome,
    RecipientState,
)
from postguard.queue.store.sqlite import SqliteQueueStore

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteQueueStore]:
    s = SqliteQueueStore(tmp_path / f"queue-{request.param}")
    yield s
    await s.close()


def message(
    queue_id: str,
    *,
    rcpts: int = 2,
    received_at: float = 1000.0,
    body: bytes = b"body\r\n",
    path: str | None = None,
) -> NewMessage:
    return NewMessage(
        queue_id=queue_id,
        received_at=received_at,
        reverse_path="sender@example.org",
        recipients=tuple(
            NewRecipient(f"r{i}@localhost", f"r{i}@localhost", "maildir", ("FAILURE",))
            for i in range(rcpts)
        ),
        prepend=b"Received: test\r\n",
        size=len(body),
        envelope={"body_type": "8BITMIME"},
        body=None if path else body,
        body_path=path,
    )


async def test_committed_message_reads_back_with_its_recipients(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1"))
    row = await store.get_message("Q1")
    assert row is not None
    assert row.reverse_path == "sender@example.org"
    assert row.envelope == {"body_type": "8BITMIME"}
    assert [r.state for r in row.recipients] == [RecipientState.QUEUED] * 2
    assert [r.notify for r in row.recipients] == [("FAILURE",)] * 2


async def test_claim_leases_due_recipients_with_content(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1"))
    [claim] = await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10)
    assert claim.content == b"Received: test\r\nbody\r\n"
    assert [r.index for r in claim.recipients] == [0, 1]
    assert await store.claim_due(now=2000.0, owner="b", lease_seconds=60, limit=10) == []


async def test_not_yet_due_recipients_are_not_claimed(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1", received_at=5000.0))
    assert await store.claim_due(now=4999.0, owner="a", lease_seconds=60, limit=10) == []


async def test_two_owners_never_lease_the_same_recipient(tmp_path: Path) -> None:
    first = SqliteQueueStore(tmp_path / "shared")
    second = SqliteQueueStore(tmp_path / "shared")  # e.g. another worker process
    try:
        for i in range(20):
            await first.commit(message(f"Q{i:02d}", rcpts=3))
        claims = await asyncio.gather(
            *(
                s.claim_due(now=2000.0, owner=o, lease_seconds=60, limit=7)
                for _ in range(5)
                for s, o in ((first, "a"), (second, "b"))
            )
        )
        leased = [(r.message_id, r.index) for batch in claims for c in batch for r in c.recipients]
        assert len(leased) == len(set(leased)) == 60
    finally:
        await first.close()
        await second.close()


async def test_outcomes_remove_a_message_once_every_recipient_is_final(
    store: SqliteQueueStore,
) -> None:
    await store.commit(message("Q1"))
    assert len(await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10)) == 1
    await store.record(
        [
            RecipientOutcome("Q1", 0, RecipientState.DELIVERED, "250 ok"),
            RecipientOutcome("Q1", 1, RecipientState.DEFERRED, "451 later", next_attempt=3000.0),
        ],
        owner="a",
    )
    row = await store.get_message("Q1")
    assert row is not None
    assert [r.state for r in row.recipients] == [RecipientState.DELIVERED, RecipientState.DEFERRED]
    assert row.recipients[1].attempts == 1
    assert row.recipients[1].last_reply == "451 later"
    assert await store.next_due_time() == 3000.0
    [again] = await store.claim_due(now=3000.0, owner="a", lease_seconds=60, limit=10)
    assert [r.index for r in again.recipients] == [1]
    await store.record([RecipientOutcome("Q1", 1, RecipientState.BOUNCED, "550 no")], owner="a")
    assert await store.get_message("Q1") is None


async def test_outcome_from_a_lost_lease_is_ignored(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1", rcpts=1))
    await store.claim_due(now=2000.0, owner="a", lease_seconds=10, limit=10)
    assert await store.release_leases(owner=None, now=2011.0) == 1
    await store.claim_due(now=2011.0, owner="b", lease_seconds=10, limit=10)
    await store.record([RecipientOutcome("Q1", 0, RecipientState.DELIVERED, "250")], owner="a")
    row = await store.get_message("Q1")
    assert row is not None
    assert row.recipients[0].state is RecipientState.DELIVERING


async def test_releasing_an_owners_leases_after_a_crash(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1"))
    await store.claim_due(now=2000.0, owner="node-1", lease_seconds=3600, limit=10)
    assert await store.release_leases(owner="node-1", now=2001.0) == 2
    assert len(await store.claim_due(now=2001.0, owner="node-1", lease_seconds=60, limit=10)) == 1


async def test_bounce_is_committed_with_the_outcome(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1", rcpts=1))
    await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10)
    bounce = message("B1", rcpts=1)
    await store.record(
        [RecipientOutcome("Q1", 0, RecipientState.BOUNCED, "550")], owner="a", bounces=[bounce]
    )
    assert await store.get_message("Q1") is None
    assert await store.get_message("B1") is not None


async def test_held_messages_are_not_claimed_until_released(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1"))
    assert await store.hold("Q1") == 1
    assert await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10) == []
    row = await store.get_message("Q1")
    assert row is not None and row.held
    assert await store.release("Q1") == 1
    assert len(await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10)) == 1


async def test_retry_makes_deferred_recipients_due_now(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1", rcpts=1))
    await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10)
    await store.record(
        [RecipientOutcome("Q1", 0, RecipientState.DEFERRED, "451", next_attempt=9e9)], owner="a"
    )
    assert await store.claim_due(now=2001.0, owner="a", lease_seconds=60, limit=10) == []
    assert await store.retry(None, now=2001.0) == 1
    assert len(await store.claim_due(now=2001.0, owner="a", lease_seconds=60, limit=10)) == 1


async def test_delete_removes_message_and_body_file(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    body = tmp_path / "body"
    body.write_bytes(b"big body\r\n")
    await store.commit(message("Q1", path=str(body), body=b"big body\r\n"))
    [claim] = await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10)
    assert claim.content.endswith(b"big body\r\n")
    assert await store.delete("Q1") == 1
    assert not body.exists()
    assert await store.delete("Q1") == 0


async def test_stats_count_messages_and_states(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1", received_at=10.0))
    await store.commit(message("Q2", received_at=20.0, rcpts=1))
    await store.hold("Q2")
    stats = await store.stats()
    assert stats.messages == 2
    assert stats.held_messages == 1
    assert stats.oldest_received_at == 10.0
    assert stats.recipients_by_state == {"queued": 3}
    assert stats.bytes == 2 * len(b"body\r\n")


async def test_duplicate_queue_id_fails_alone_without_sinking_its_batch(
    store: SqliteQueueStore,
) -> None:
    await store.commit(message("Q1"))
    results = await asyncio.gather(
        store.commit(message("Q1")), store.commit(message("Q2")), return_exceptions=True
    )
    assert isinstance(results[0], Exception)
    assert results[1] is None
    assert await store.get_message("Q2") is not None


async def test_concurrent_commits_share_transactions(store: SqliteQueueStore) -> None:
    before = store.transactions
    await asyncio.gather(*(store.commit(message(f"Q{i:03d}")) for i in range(200)))
    assert len(await store.list_messages()) == 200
    assert store.transactions - before < 100  # group commit: far fewer than 200


async def test_a_corrupt_entry_is_quarantined_and_the_rest_still_delivers(
    store: SqliteQueueStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = tmp_path / "gone"
    body.write_bytes(b"x")
    await store.commit(message("Q1", path=str(body)))
    await store.commit(message("Q2"))
    body.unlink()  # the body file vanished (disk repair, operator error)
    with caplog.at_level("ERROR", logger="postguard"):
        claims = await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10)
    assert [c.message.queue_id for c in claims] == ["Q2"]
    row = await store.get_message("Q1")
    assert row is not None and row.quarantined
    assert all(r.last_reply and r.last_reply.startswith("quarantined:") for r in row.recipients)
    assert [r.getMessage() for r in caplog.records] == ["queue.quarantined"]
    assert await store.claim_due(now=3000.0, owner="a", lease_seconds=60, limit=10) == []


async def test_an_unparseable_envelope_is_quarantined(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1"))
    await store._writer.run(
        lambda db: db.execute("UPDATE messages SET envelope='{not json' WHERE id='Q1'")
    )
    assert await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10) == []
    stats = await store.stats()
    assert stats.messages == 1 and stats.held_messages == 1


async def test_without_group_commit_every_commit_is_its_own_transaction(tmp_path: Path) -> None:
    store = SqliteQueueStore(tmp_path / "solo", group_commit=False)
    try:
        before = store.transactions
        await asyncio.gather(*(store.commit(message(f"Q{i:03d}")) for i in range(30)))
        assert store.transactions - before == 30
    finally:
        await store.close()


async def test_a_leased_commit_is_not_claimable_by_anyone_else(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1"), lease=Lease("manager-1", 5000.0))
    row = await store.get_message("Q1")
    assert row is not None
    assert [r.state for r in row.recipients] == [RecipientState.DELIVERING] * 2
    assert await store.claim_due(now=2000.0, owner="manager-2", lease_seconds=60, limit=10) == []
    # Its owner records outcomes like for any claim; the finished message goes away.
    await store.record(
        [RecipientOutcome("Q1", i, RecipientState.DELIVERED, "250") for i in range(2)],
        owner="manager-1",
    )
    assert await store.get_message("Q1") is None


async def test_leases_recovered_after_a_crash_are_marked_as_redeliveries(
    store: SqliteQueueStore,
) -> None:
    await store.commit(message("Q1", rcpts=1), lease=Lease("dead", 1500.0))
    await store.commit(message("Q2", rcpts=1))
    assert await store.release_leases(owner=None, now=float("inf")) == 1
    claims = {
        c.message.queue_id: c
        for c in await store.claim_due(now=2000.0, owner="b", lease_seconds=60, limit=10)
    }
    assert claims["Q1"].recipients[0].redelivery is True
    assert claims["Q2"].recipients[0].redelivery is False
    # A deferral clears the mark: the next attempt follows a recorded outcome.
    await store.record(
        [RecipientOutcome("Q1", 0, RecipientState.DEFERRED, "451", next_attempt=2100.0)],
        owner="b",
    )
    (again,) = await store.claim_due(now=2200.0, owner="b", lease_seconds=60, limit=10)
    assert again.recipients[0].redelivery is False


async def test_an_owner_giving_back_its_leases_does_not_mark_redeliveries(
    store: SqliteQueueStore,
) -> None:
    await store.commit(message("Q1", rcpts=1), lease=Lease("node-1", 5000.0))
    assert await store.release_leases(owner="node-1", now=2000.0) == 1
    (claim,) = await store.claim_due(now=2000.0, owner="node-1", lease_seconds=60, limit=10)
    assert claim.recipients[0].redelivery is False


async def test_a_version_1_queue_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    directory = tmp_path / "old"
    directory.mkdir()
    db = sqlite3.connect(directory / "queue.db")
    db.executescript(
        """
        CREATE TABLE messages (id TEXT PRIMARY KEY, received_at REAL NOT NULL,
            reverse_path TEXT NOT NULL, size INTEGER NOT NULL, envelope TEXT NOT NULL,
            prepend BLOB NOT NULL, body BLOB, body_path TEXT, held INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE recipients (message_id TEXT NOT NULL REFERENCES messages(id)
            ON DELETE CASCADE, idx INTEGER NOT NULL, address TEXT NOT NULL,
            mailbox TEXT NOT NULL, route TEXT NOT NULL, notify TEXT NOT NULL DEFAULT '',
            orcpt TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL DEFAULT 0, last_reply TEXT,
            delay_warned INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_until REAL,
            PRIMARY KEY (message_id, idx));
        INSERT INTO messages VALUES ('OLD1', 1000.0, 's@example.org', 6, '{}', X'', X'626f64790d0a',
            NULL, 0);
        INSERT INTO recipients (message_id, idx, address, mailbox, route, state)
            VALUES ('OLD1', 0, 'r@localhost', 'r@localhost', 'maildir', 'queued');
        PRAGMA user_version = 1;
        """
    )
    db.close()
    store = SqliteQueueStore(directory)
    try:
        (claim,) = await store.claim_due(now=2000.0, owner="a", lease_seconds=60, limit=10)
        assert claim.message.queue_id == "OLD1"
        assert claim.content == b"body\r\n"
        assert claim.recipients[0].redelivery is False
    finally:
        await store.close()


async def test_a_dead_owners_leases_are_given_back_as_redeliveries(
    store: SqliteQueueStore,
) -> None:
    await store.commit(message("Q1", rcpts=1), lease=Lease("worker-2", 5000.0))
    await store.commit(message("Q2", rcpts=1), lease=Lease("worker-1", 5000.0))
    assert await store.release_leases(owner="worker-2", now=2000.0, lost=True) == 1
    (claim,) = await store.claim_due(now=2000.0, owner="worker-1", lease_seconds=60, limit=10)
    assert (claim.message.queue_id, claim.recipients[0].redelivery) == ("Q1", True)


async def test_a_claim_reads_at_most_its_content_budget(store: SqliteQueueStore) -> None:
    await store.commit(message("Q1", rcpts=2, received_at=1000.0, body=b"a" * 600))
    await store.commit(message("Q2", rcpts=1, received_at=1001.0, body=b"b" * 600))
    await store.commit(message("Q3", rcpts=1, received_at=1002.0, body=b"c" * 300))
    first = await store.claim_due(
        now=2000.0, owner="a", lease_seconds=60, limit=10, max_octets=1000
    )
    # Q2 would pass the budget; Q3 still fits. Every recipient of a taken message comes.
    assert {c.message.queue_id: len(c.recipients) for c in first} == {"Q1": 2, "Q3": 1}
    (second,) = await store.claim_due(
        now=2000.0, owner="a", lease_seconds=60, limit=10, max_octets=100
    )
    assert second.message.queue_id == "Q2"  # over any budget alone: taken all the same
    assert second.content.endswith(b"b" * 600)


async def test_a_flush_of_agent_files_shares_the_round_and_fails_alone(
    store: SqliteQueueStore, tmp_path: Path
) -> None:
    maildirs = tmp_path / "mail"
    maildirs.mkdir()
    (maildirs / "copy").write_bytes(b"a delivered copy\r\n")
    await asyncio.gather(store.commit(message("Q1")), store.flush([str(maildirs)]))
    # A path that cannot be flushed fails its own caller, not a commit in the same round.
    commit = asyncio.ensure_future(store.commit(message("Q2")))
    with pytest.raises(OSError):
        await store.flush([str(tmp_path / "gone")])
    await commit
    assert await store.get_message("Q2") is not None
