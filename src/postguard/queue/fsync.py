"""Durable file primitives and group commit of directory fsyncs.

The Maildir discipline, used for every file postguard promises to keep:
write to a temporary name → fsync the file → rename → fsync the directory.
Only after the directory fsync has returned is the new name on stable
storage (ext4/xfs may otherwise lose the rename on power failure).

:class:`GroupDirSync` lets many concurrent commits share one directory fsync:
a caller waits for a sync that *started after* its rename, so correctness is
kept while a busy server pays one directory fsync for many messages.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux), or None where it is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_syncfs = _load_syncfs()
HAS_SYNCFS = _syncfs is not None


def sync_file_system(path: Path | str) -> None:
    """Flush every dirty page and inode of the file system holding ``path`` (syncfs(2)).

    Raises:
        OSError: the flush failed (Linux ≥ 5.8 reports writeback errors here), or
            syncfs(2) is not available (ENOSYS).
    """
    if _syncfs is None:
        raise OSError(38, "syncfs(2) is not available")  # ENOSYS
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """fsync a directory so that renames/creations in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically and durably (tmp, fsync, rename, fsync dir)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


class GroupDirSync:
    """Coalesces directory fsyncs from concurrent callers (group commit)."""

    def __init__(self, directory: Path, executor: Executor | None = None) -> None:
        self._directory = directory
        self._executor = executor
        self._next: asyncio.Future[None] | None = None
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self.syncs = 0  # how many fsyncs actually ran (for tests and benchmarks)

    async def sync(self) -> None:
        """Return once a directory fsync that started after this call has completed.

        Raises:
            OSError: if that fsync failed.
        """
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        future = self._next
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._run())
        await asyncio.shield(future)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._next is not None:
                future, self._next = self._next, None
                try:
                    await loop.run_in_executor(self._executor, fsync_directory, self._directory)
                    self.syncs += 1
                except Exception as exc:  # OSError, or RuntimeError after executor shutdown
                    future.set_exception(exc)
                else:
                    future.set_result(None)
        finally:
            self._running = False
