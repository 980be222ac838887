"""A failed sync of the queue's log is final for the process ("fsyncgate").

Linux reports a writeback error to an open file once: the fdatasync after a failed one
can succeed although the failed one's pages never reached the disk, and SQLite's WAL
recovery drops every frame after the first bad one. So after one failed sync the store
must not acknowledge anything again until a restart recovers from the disk.

The failure is real at the system-call level: the store runs in a child process with
``tests/helpers/failsync.c`` preloaded, which makes fdatasync(2) of the WAL return EIO
once (``FAILSYNC_ONCE``: the next call succeeds, as the kernel's would).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.failsync import FailSync, build_failsync
from postguard.queue.store.sqlite import SqliteQueueStore

CHILD_TIMEOUT_SECONDS = 60

# Runs in the child: commits before, during and after the failure, and reports.
CHILD = r"""
import asyncio, json, sys
from pathlib import Path
from postguard.queue.store.base import NewMessage, NewRecipient, StoreFailed
from postguard.queue.store.sqlite import SqliteQueueStore

def message(queue_id):
    body = b"Subject: " + queue_id.encode() + b"\r\n\r\nhello\r\n"
    return NewMessage(
        queue_id=queue_id, received_at=1.0, reverse_path="a@example.org",
        recipients=(NewRecipient("b@localhost", "b@localhost", "maildir"),),
        prepend=b"", size=len(body), envelope={}, body=body,
    )

async def attempt(what):
    try:
        await what
    except StoreFailed as exc:
        return {"error": "StoreFailed", "errno": exc.errno, "text": str(exc)}
    except OSError as exc:
        return {"error": "OSError", "errno": exc.errno, "text": str(exc)}
    return {"error": None}

async def main(directory, trigger):
    store = SqliteQueueStore(Path(directory))
    told = []
    store.on_failure(lambda error: told.append(str(error)))
    out = {"before": await attempt(store.commit(message("BEFORE")))}
    Path(trigger).touch()
    out["failing"] = await attempt(store.commit(message("FAILING")))
    out["trigger_left"] = Path(trigger).exists()
    out["after"] = await attempt(store.commit(message("AFTER")))
    out["flush_after"] = await attempt(store.flush([directory]))
    out["release_after"] = await attempt(store.release_leases(owner="x", now=0.0))
    await asyncio.sleep(0.05)
    out["told"] = told
    out["failure"] = None if store.failure is None else str(store.failure)
    await store.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


# Runs in the child: forks like `postguard serve` does for its workers (the store is
# created before the fork), lets the fork's WAL sync fail, then commits in the original.
SIBLINGS = r"""
import asyncio, json, os, sys
from pathlib import Path
from postguard.queue.store.base import NewMessage, NewRecipient, StoreFailed
from postguard.queue.store.sqlite import SqliteQueueStore

def message(queue_id):
    body = b"Subject: x\r\n\r\nhello\r\n"
    return NewMessage(
        queue_id=queue_id, received_at=1.0, reverse_path="a@example.org",
        recipients=(NewRecipient("b@localhost", "b@localhost", "maildir"),),
        prepend=b"", size=len(body), envelope={}, body=body,
    )

async def commit(store, queue_id):
    try:
        await store.commit(message(queue_id))
    except StoreFailed as exc:
        return str(exc)
    return None

store = SqliteQueueStore(Path(sys.argv[1]))
pid = os.fork()
if pid == 0:
    Path(sys.argv[2]).touch()
    os._exit(0 if asyncio.run(commit(store, "SIBLING")) else 1)
_, status = os.waitpid(pid, 0)
print(json.dumps({
    "sibling_failed": os.waitstatus_to_exitcode(status) == 0,
    "trigger_left": Path(sys.argv[2]).exists(),
    "here": asyncio.run(commit(store, "HERE")),
}))
"""


@pytest.fixture(scope="session")
def failsync_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_failsync(tmp_path_factory.mktemp("failsync"))


@pytest.fixture
def wal_failure(failsync_library: Path) -> Iterator[FailSync]:
    injection = FailSync(failsync_library, match="queue.db-wal", calls="fdatasync", once=True)
    yield injection
    injection.cleanup()


def run_child(directory: Path, injection: FailSync, script: str = CHILD) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script, str(directory), str(injection.trigger)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        env=dict(os.environ, **injection.env()),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def test_after_a_failed_wal_sync_nothing_is_acknowledged_again(
    tmp_path: Path, wal_failure: FailSync
) -> None:
    out = run_child(tmp_path / "queue", wal_failure)

    assert out["before"] == {"error": None}
    # The commit whose sync failed is not acknowledged (intake answers 451 4.3.0) ...
    failing = out["failing"]
    assert isinstance(failing, dict)
    assert failing["error"] == "StoreFailed" and failing["errno"] == errno.EIO
    assert "queue.db-wal" in str(failing["text"])
    # ... and although the shim would let the next sync succeed (the trigger is gone, as
    # the kernel reports an error once), nothing later is acknowledged either.
    assert out["trigger_left"] is False
    for later in ("after", "flush_after", "release_after"):
        result = out[later]
        assert isinstance(result, dict) and result["error"] == "StoreFailed", (later, result)
    assert wal_failure.failures() == [f"fdatasync {tmp_path / 'queue' / 'queue.db-wal'}"]
    # The owner was told once, and the failure was logged at CRITICAL with the file.
    told = out["told"]
    assert isinstance(told, list) and len(told) == 1
    assert out["failure"] == told[0]
    assert "queue.store_failed" in str(out["stderr"])


def test_a_restart_recovers_what_reached_the_disk(tmp_path: Path, wal_failure: FailSync) -> None:
    run_child(tmp_path / "queue", wal_failure)

    async def queued() -> set[str]:
        store = SqliteQueueStore(tmp_path / "queue")  # a new process's view: from the disk
        try:
            return {row.queue_id for row in await store.list_messages()}
        finally:
            await store.close()

    found = asyncio.run(queued())
    # The acknowledged message is there. The one that got the error was committed, so it
    # may be delivered although its client was told 451 (at most one duplicate, when the
    # client sends it again); the one refused after the failure never reached SQLite.
    assert "BEFORE" in found
    assert "AFTER" not in found
    assert found <= {"BEFORE", "FAILING"}


def test_a_failure_in_one_process_voids_the_others_syncs(
    tmp_path: Path, wal_failure: FailSync
) -> None:
    # Worker processes share the log: once one has seen its sync fail, another must not
    # acknowledge a commit either, although its own sync (the shim reports the error
    # once, to the first caller) succeeds.
    out = run_child(tmp_path / "queue", wal_failure, SIBLINGS)
    assert out["sibling_failed"] is True
    assert out["trigger_left"] is False
    assert str(out["here"]).endswith("queue database: another process of this server failed")
