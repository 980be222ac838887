"""Message content on its way into the queue: in memory while small, a durable file when large.

Covers ``postguard.queue.bodies`` and ``postguard.queue.fsync`` on a real file system with
real ``fsync`` calls, and group commit of directory fsyncs: concurrent commits share
directory fsyncs while each still waits for one that started after its own rename (observed
with an instrumented executor; nothing is mocked).

This directory has no ``__init__.py`` on purpose: ``tests/`` is on ``sys.path`` and a
package named ``queue`` would shadow the standard library's ``queue`` module.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from postguard.queue.bodies import INLINE_BODY_MAX_OCTETS, BodyFiles, IncomingMessage
from postguard.queue.fsync import GroupDirSync, fsync_directory
from postguard.queue.ids import new_queue_id

CONCURRENT_COMMITS = 50


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=8)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def bodies(tmp_path: Path, executor: ThreadPoolExecutor) -> BodyFiles:
    return BodyFiles(tmp_path / "bodies", executor)


async def test_small_content_stays_in_memory_and_comes_back_inline(bodies: BodyFiles) -> None:
    incoming = bodies.begin(new_queue_id())
    for piece in (b"Subject: a\r\n", b"\r\n", b"body\r\n"):
        incoming.write(piece)
    assert not incoming.spilled
    assert list(bodies.directory.iterdir()) == []
    body, path = await bodies.finish(incoming)
    assert (body, path) == (b"Subject: a\r\n\r\nbody\r\n", None)


async def test_large_content_streams_to_a_file_that_is_renamed_at_finish(bodies: BodyFiles) -> None:
    incoming = bodies.begin(new_queue_id())
    chunk = bytes(range(256)) * 64
    written = b""
    while len(written) <= INLINE_BODY_MAX_OCTETS:
        incoming.write(chunk)
        written += chunk
    assert incoming.spilled
    assert incoming.tmp_path.exists()
    body, path = await bodies.finish(incoming)
    assert body is None and path == str(incoming.final_path)
    assert Path(path).read_bytes() == written
    assert not incoming.tmp_path.exists()


async def test_abort_removes_the_spilled_file(bodies: BodyFiles) -> None:
    incoming = bodies.begin(new_queue_id())
    incoming.write(b"x" * (INLINE_BODY_MAX_OCTETS + 1))
    incoming.abort()
    assert list(bodies.directory.iterdir()) == []


async def test_failed_rename_raises_and_leaves_no_file_behind(bodies: BodyFiles) -> None:
    incoming = bodies.begin(new_queue_id())
    incoming.write(b"y" * (INLINE_BODY_MAX_OCTETS + 1))
    blocker = incoming.final_path
    blocker.mkdir()  # a directory at the final name makes the rename fail for real
    (blocker / "keep").write_bytes(b"")
    with pytest.raises(OSError):
        await bodies.finish(incoming)
    assert not incoming.tmp_path.exists()
    assert os.listdir(blocker) == ["keep"]


async def test_remove_orphans_keeps_only_referenced_files(bodies: BodyFiles) -> None:
    (bodies.directory / "KEEP").write_bytes(b"k")
    (bodies.directory / "ORPHAN").write_bytes(b"o")
    (bodies.directory / "HALF.tmp").write_bytes(b"t")
    assert bodies.remove_orphans({str(bodies.directory / "KEEP")}) == 2
    assert os.listdir(bodies.directory) == ["KEEP"]


class TracingExecutor(ThreadPoolExecutor):
    """A real thread pool recording when directory fsyncs and body renames run."""

    def __init__(self, events: list[tuple[str, object]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events = events
        self._sync_ids = itertools.count()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        events = self.events
        if fn is fsync_directory:
            sync_id = next(self._sync_ids)

            def traced_sync() -> None:
                events.append(("sync_start", sync_id))
                fn(*args, **kwargs)
                events.append(("sync_end", sync_id))

            return super().submit(traced_sync)
        if getattr(fn, "__func__", None) is IncomingMessage._finish_file:
            queue_id = fn.__self__.queue_id  # type: ignore[attr-defined]

            def traced_finish() -> Any:
                result = fn(*args, **kwargs)
                events.append(("renamed", queue_id))
                return result

            return super().submit(traced_finish)
        return super().submit(fn, *args, **kwargs)


async def test_concurrent_finishes_share_directory_fsyncs_each_after_its_rename(
    tmp_path: Path,
) -> None:
    events: list[tuple[str, object]] = []
    pool = TracingExecutor(events, max_workers=16)
    try:
        bodies = BodyFiles(tmp_path / "bodies", pool)

        async def one() -> str:
            queue_id = new_queue_id()
            incoming = bodies.begin(queue_id)
            incoming.write(b"z" * (INLINE_BODY_MAX_OCTETS + 1))
            events.append(("called", queue_id))
            await bodies.finish(incoming)
            events.append(("returned", queue_id))
            return queue_id

        queue_ids = await asyncio.gather(*(one() for _ in range(CONCURRENT_COMMITS)))
    finally:
        pool.shutdown(wait=True)
    position = {event: i for i, event in enumerate(events)}
    starts = {sid: i for i, (kind, sid) in enumerate(events) if kind == "sync_start"}
    ends = {sid: i for i, (kind, sid) in enumerate(events) if kind == "sync_end"}
    assert len(ends) < CONCURRENT_COMMITS, "directory fsyncs were not grouped"
    for qid in queue_ids:
        renamed, returned = position[("renamed", qid)], position[("returned", qid)]
        assert position[("called", qid)] < renamed < returned
        covering = [sid for sid in ends if starts[sid] > renamed and ends[sid] < returned]
        assert covering, f"{qid} returned without a directory fsync started after its rename"


async def test_failed_directory_fsync_raises_to_every_waiter_and_the_next_works(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "gone"
    syncer = GroupDirSync(directory)
    results = await asyncio.gather(*(syncer.sync() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, FileNotFoundError) for r in results), results
    directory.mkdir()
    await syncer.sync()
    assert syncer.syncs == 1


async def test_sync_after_executor_shutdown_raises_instead_of_hanging(tmp_path: Path) -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    syncer = GroupDirSync(tmp_path, pool)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(syncer.sync(), timeout=10)
