"""Writeback errors reach us through syncfs(2) and the log's fdatasync, on a real kernel.

Linux reports a file system's writeback error to each open file description once,
counting from when the description was opened, and to a description opened *after* the
error only if nobody has been told yet. So a descriptor opened just before a sync
reports success for lost pages once any other process (a sibling worker, a backup tool)
synced first. These tests make the kernel lose pages for real (``helpers.failing_disk``:
ext4 on a loop device whose backing tmpfs is full) and check that postguard still hears
of it: through the syncfs descriptor each process holds from before it writes
(``postguard.queue.fsync.FileSystemHandles``), also after a fork, and through the
queue store's long-lived descriptor on its write-ahead log; and that a Maildir batch
flushes the file system its Maildirs are on, not the one of the Maildir root.
"""

from __future__ import annotations

import ctypes
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.failing_disk import FailingDisk, failing_disk
from helpers.queue_messages import small_message
from postguard.delivery.base import DeliveryItem, NeedsFlush, TemporaryFailure
from postguard.delivery.maildir import SYNCFS_MIN_BATCH, MaildirAgent
from postguard.queue.fsync import (
    FILE_SYSTEMS,
    FileSystemHandles,
    sync_file_systems,
    watch_file_system,
)
from postguard.queue.store.sqlite import SqliteQueueStore

DIRTY_OCTETS = 1 << 20

# Another process syncing first, each call through a descriptor it opens just before.
OTHER_PROCESS = r"""
import ctypes, os, sys
path, call = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
if call == "syncfs":
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    print(ctypes.get_errno() if libc.syncfs(fd) != 0 else 0)
else:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        print(0)
    except OSError as exc:
        print(exc.errno)
"""


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[FailingDisk]:
    # No journal: a lost data page then stays a data error, told once to each descriptor,
    # which is what these tests are about (with a journal, a lost metadata write makes
    # every later call fail, and a late descriptor could not be told apart).
    yield from failing_disk(tmp_path, journal=False)


def write_unsynced(path: Path) -> None:
    """Dirty pages in the page cache; nothing flushed."""
    path.write_bytes(os.urandom(DIRTY_OCTETS))


def another_process_syncs(path: Path, call: str = "syncfs") -> int:
    """errno of the other process's sync of ``path`` (0: success)."""
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, str(path), call],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def syncfs_through_a_new_descriptor(path: Path) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return ctypes.get_errno() if libc.syncfs(fd) != 0 else 0
    finally:
        os.close(fd)


def test_syncfs_reports_lost_pages_although_another_process_was_told_first(
    disk: FailingDisk,
) -> None:
    handles = FileSystemHandles()
    try:
        handles.watch(disk.mount)  # as the store and the Maildir agent do at start
        disk.fail_writes()
        write_unsynced(disk.mount / "copy")
        assert another_process_syncs(disk.mount) != 0, "the kernel lost no page"
        # What a descriptor opened now is told (the old code opened one per call):
        assert syncfs_through_a_new_descriptor(disk.mount) == 0, (
            "this kernel now reports the error to late descriptors too"
        )
        with pytest.raises(OSError):
            handles.sync(disk.mount)
        # Reported once to each descriptor: the next sync, with no new loss, succeeds.
        handles.sync(disk.mount)
    finally:
        handles.close()


def test_a_forked_worker_is_told_of_its_own_lost_pages_after_its_parent_was(
    disk: FailingDisk,
) -> None:
    # Worker processes are forked with the parent's descriptors, whose error cursor they
    # would share: the parent being told would silence the worker. After a fork the
    # child holds its own descriptors, opened before it writes anything.
    FILE_SYSTEMS.watch(disk.mount)
    disk.fail_writes()
    written_r, written_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        status = 2
        try:
            write_unsynced(disk.mount / "worker-copy")
            os.write(written_w, b"w")
            os.read(go_r, 1)
            try:
                FILE_SYSTEMS.sync(disk.mount)
                status = 1  # told nothing: its copy would count as delivered
            except OSError:
                status = 0
        finally:
            os._exit(status)
    for fd in (written_w, go_r):
        os.close(fd)
    assert os.read(written_r, 1) == b"w"
    with pytest.raises(OSError):  # the parent's own descriptor: the loss is real
        FILE_SYSTEMS.sync(disk.mount)
    os.write(go_w, b"g")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the worker was not told of its lost pages"


async def test_the_queue_log_sync_reports_lost_pages_another_process_was_told_of(
    disk: FailingDisk,
) -> None:
    directory = disk.mount / "queue"
    store = SqliteQueueStore(directory)
    try:
        await store.commit(small_message("HEALTHY"))
        disk.fail_writes()
        # Another writer of the same queue (the queue CLI, a worker) appends to the log
        # without syncing, and someone else's fdatasync of the log is told of the loss.
        other = sqlite3.connect(directory / "queue.db")
        other.execute("PRAGMA synchronous=OFF")
        with other:
            other.execute("CREATE TABLE scratch (filler BLOB)")
            other.execute("INSERT INTO scratch VALUES (randomblob(?))", (DIRTY_OCTETS,))
        other.close()
        wal = directory / "queue.db-wal"
        assert another_process_syncs(wal, "fdatasync") != 0, "the kernel lost no page"
        # The store's next sync of the log must still fail, and the store with it.
        await store.flush([])
        assert store.failure is not None, "the store trusted a log whose pages were lost"
        assert "queue.db-wal" in str(store.failure)
    finally:
        await store.close()


def test_a_maildir_on_its_own_file_system_is_flushed_there(
    disk: FailingDisk, tmp_path: Path
) -> None:
    # The Maildir root is on one file system and a domain's Maildirs are mounted from
    # another (the failing disk): a batch's syncfs must flush that one, not the root's.
    root = tmp_path / "mail"
    root.mkdir()
    (root / "example.org").symlink_to(disk.mount, target_is_directory=True)
    agent = MaildirAgent(root)
    disk.fail_writes()
    batch = [
        DeliveryItem(
            f"Subject: {n}\r\n\r\n".encode() + os.urandom(DIRTY_OCTETS), ["bob@example.org"]
        )
        for n in range(SYNCFS_MIN_BATCH)
    ]
    results = agent.deliver_batch(batch)
    outcomes = [r["bob@example.org"] for r in results]
    assert all(isinstance(o, TemporaryFailure) for o in outcomes), outcomes
    new = disk.mount / "bob" / "new"  # (a journal abort may have stopped even its mkdir)
    assert not new.exists() or list(new.iterdir()) == []  # no copy of unknown health

    # Left to the caller (the queue manager), the flush names the Maildir's own
    # directory, on the failing file system.
    disk.remount()  # healed (a journal abort may have made it read-only until then)
    agent = MaildirAgent(root, flush_by_caller=True)
    results = agent.deliver_batch(batch)
    paths = {o.path for r in results for o in r.values() if isinstance(o, NeedsFlush)}
    assert {os.stat(p).st_dev for p in paths} == {os.stat(disk.mount).st_dev}


def test_every_directory_on_a_failed_file_system_is_told_not_just_the_first(
    disk: FailingDisk,
) -> None:
    # One flush round names a directory per Maildir; after the first syncfs of the file
    # system failed, a second one would succeed (told once per descriptor): the others
    # must share the first one's error, not be counted as flushed.
    first, second = disk.mount / "a" / "new", disk.mount / "b" / "new"
    for directory in (first, second):
        directory.mkdir(parents=True)
    watch_file_system(disk.mount)
    disk.fail_writes()
    write_unsynced(first / "copy")
    write_unsynced(second / "copy")

    errors, flushed = sync_file_systems([first, second])

    assert set(errors) == {str(first), str(second)}
    assert errors[str(first)] is errors[str(second)]
    assert os.stat(disk.mount).st_dev not in flushed
