"""Message content on its way into the queue: in memory while small, a body file when large.

Small messages (the common case) stay in memory until intake commits them,
and are then stored inline in the queue store, so one fsync of the store's
log covers envelope and content. A message that grows past
:data:`INLINE_BODY_MAX_OCTETS` is spilled to ``<queue>/bodies/<id>.tmp`` as it
arrives; at commit the file is fsync'd, renamed to ``<id>`` and the directory
fsync'd (shared by concurrent commits: :class:`GroupDirSync`) *before* the
store commit that references it.

Write errors (disk full, I/O errors) are remembered and raised at commit, so
the session answers 452/451 and never 250.

Must not: know about envelopes or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import Executor
from pathlib import Path

from .fsync import GroupDirSync, make_directories

INLINE_BODY_MAX_OCTETS = 256 * 1024  # bigger bodies go to files: keeps the WAL small


class IncomingMessage:
    """The content of one message being received."""

    def __init__(self, bodies: BodyFiles, queue_id: str) -> None:
        self.queue_id = queue_id
        self._bodies = bodies
        self._memory: list[bytes] = []
        self._fd: int | None = None
        self.size = 0
        self.error: OSError | None = None

    @property
    def tmp_path(self) -> Path:
        return self._bodies.directory / f"{self.queue_id}.tmp"

    @property
    def final_path(self) -> Path:
        return self._bodies.directory / self.queue_id

    def write(self, data: bytes) -> None:
        """Append content; never raises (errors surface at commit)."""
        if self.error is not None:
            return
        self.size += len(data)
        if self._fd is None:
            self._memory.append(data)
            if self.size <= INLINE_BODY_MAX_OCTETS:
                return
            data = b"".join(self._memory)
            self._memory.clear()
            try:
                self._fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError as exc:
                self.error = exc
                return
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            self.error = exc

    @property
    def spilled(self) -> bool:
        return self._fd is not None

    def content(self) -> bytes:
        """The content held in memory (only for messages that were not spilled)."""
        return b"".join(self._memory)

    def _finish_file(self) -> str:
        """Worker thread: fsync the spilled file and give it its final name."""
        if self.error is not None:
            raise self.error
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        os.rename(self.tmp_path, self.final_path)
        return str(self.final_path)

    def abort(self) -> None:
        """Drop the content (rejected, RSET, disconnect, failed commit)."""
        self._memory.clear()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            os.unlink(self.tmp_path)


class BodyFiles:
    """The directory of spilled bodies."""

    def __init__(self, directory: Path, executor: Executor | None = None) -> None:
        self.directory = directory
        make_directories(directory)
        self._executor = executor
        self._dirsync = GroupDirSync(directory, executor)

    def begin(self, queue_id: str) -> IncomingMessage:
        """Start receiving a message's content."""
        return IncomingMessage(self, queue_id)

    async def finish(self, incoming: IncomingMessage) -> tuple[bytes | None, str | None]:
        """Make the content durable where needed.

        Returns:
            (inline content, None) for small messages, (None, body file path)
            for spilled ones, the file being on stable storage.

        Raises:
            OSError: a write, fsync or rename failed (the content is dropped).
        """
        if incoming.error is not None:
            incoming.abort()
            raise incoming.error
        if not incoming.spilled:
            return incoming.content(), None
        loop = asyncio.get_running_loop()
        try:
            path = await loop.run_in_executor(self._executor, incoming._finish_file)
            await self._dirsync.sync()
        except OSError:
            incoming.abort()
            with contextlib.suppress(OSError):
                os.unlink(incoming.final_path)
            raise
        return None, path

    def remove_orphans(self, referenced: set[str]) -> int:
        """At start-up: delete body files no queued message references (never acknowledged)."""
        removed = 0
        for path in self.directory.iterdir():
            if str(path) not in referenced:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
