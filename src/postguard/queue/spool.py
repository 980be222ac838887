"""The spool: committed messages as single files, one per message.

A queue file ``<id>.msg`` holds the content, then the JSON entry, then a
12-octet footer (length of the JSON as 8 octets big-endian, and the magic
``PGQ1``). Writing the entry last means content can stream to disk while it
arrives, and the rename from ``<id>.tmp`` is the one atomic commit.

Acceptance contract: :meth:`Spool.commit` returns only after the file is
fsync'd, renamed and its directory fsync'd (group commit). A 250 is sent only
after it returns. A ``.tmp`` file found at start-up was never acknowledged and
is removed; a ``.msg`` file that does not parse is moved to ``quarantine/``.

Must not: deliver, or decide policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from ..observability.events import QueueEvent
from ..observability.logging import log_event
from .fsync import GroupDirSync
from .ids import is_queue_id
from .model import CorruptEntry, QueuedMessage

_MAGIC = b"PGQ1"
_FOOTER = struct.Struct(">Q4s")
SPILL_THRESHOLD_OCTETS = 128 * 1024  # keep small messages in memory until commit


class IncomingMessage:
    """Content of one message being received; in memory until it grows, then a tmp file.

    Write errors (disk full, I/O error) are remembered and raised at commit,
    so the session answers 452/451 instead of 250.
    """

    def __init__(self, spool: Spool, queue_id: str) -> None:
        self.queue_id = queue_id
        self._spool = spool
        self._memory: list[bytes] = []
        self._buffered = 0
        self._fd: int | None = None
        self.size = 0
        self.error: OSError | None = None

    @property
    def tmp_path(self) -> Path:
        return self._spool.directory / f"{self.queue_id}.tmp"

    def write(self, data: bytes) -> None:
        """Append content (never raises; errors surface at commit)."""
        if self.error is not None:
            return
        self.size += len(data)
        if self._fd is None:
            self._memory.append(data)
            self._buffered += len(data)
            if self._buffered <= SPILL_THRESHOLD_OCTETS:
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

    def _finish_sync(self, entry: bytes) -> Path:
        """Runs in a worker thread: write the rest, fsync, rename. Returns the final path."""
        if self.error is not None:
            raise self.error
        if self._fd is None:
            self._fd = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            tail = [*self._memory, entry, _FOOTER.pack(len(entry), _MAGIC)]
            self._memory.clear()
        else:
            tail = [entry, _FOOTER.pack(len(entry), _MAGIC)]
        _write_all(self._fd, b"".join(tail))
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        final = self._spool.directory / f"{self.queue_id}.msg"
        os.rename(self.tmp_path, final)
        return final

    def abort(self) -> None:
        """Drop the content (RSET, rejection, disconnect)."""
        self._memory.clear()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
            with contextlib.suppress(OSError):
                os.unlink(self.tmp_path)


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    """A committed message: its entry and where its content lies in the file."""

    entry: QueuedMessage
    path: Path
    body_length: int

    def read_body(self) -> bytes:
        """Read the message content (without the prepended headers)."""
        with open(self.path, "rb") as f:
            return f.read(self.body_length)


class Spool:
    """The directory of committed messages."""

    def __init__(self, directory: Path, executor: Executor | None = None) -> None:
        self.directory = directory
        self.quarantine_dir = directory / "quarantine"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._executor = executor
        self._dirsync = GroupDirSync(directory, executor)

    @property
    def directory_syncs(self) -> int:
        return self._dirsync.syncs

    def begin(self, queue_id: str) -> IncomingMessage:
        """Start receiving a message."""
        return IncomingMessage(self, queue_id)

    async def commit(self, incoming: IncomingMessage, entry: QueuedMessage) -> SpooledMessage:
        """Make the message durable. Returns only once it is on stable storage.

        Raises:
            OSError: the content could not be stored (the caller answers 4xx).
        """
        loop = asyncio.get_running_loop()
        data = entry.to_json()
        try:
            path = await loop.run_in_executor(self._executor, incoming._finish_sync, data)
            await self._dirsync.sync()
        except OSError:
            incoming.abort()
            raise
        return SpooledMessage(entry, path, incoming.size)

    def recover(self) -> list[SpooledMessage]:
        """Scan the spool at start-up: drop unacknowledged files, load committed ones."""
        found: list[SpooledMessage] = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix == ".tmp":
                path.unlink(missing_ok=True)  # never acknowledged with 250
            elif path.suffix == ".msg":
                try:
                    found.append(self.load(path))
                except CorruptEntry as exc:
                    self.quarantine(path, str(exc))
        return found

    def load(self, path: Path) -> SpooledMessage:
        """Read and validate one queue file.

        Raises:
            CorruptEntry: if the file is truncated or its entry is invalid.
        """
        if not is_queue_id(path.stem):
            raise CorruptEntry("file name is not a queue id")
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size < _FOOTER.size:
                    raise CorruptEntry("file too short")
                f.seek(size - _FOOTER.size)
                length, magic = _FOOTER.unpack(f.read(_FOOTER.size))
                if magic != _MAGIC or length > size - _FOOTER.size:
                    raise CorruptEntry("bad footer")
                body_length = size - _FOOTER.size - length
                f.seek(body_length)
                entry = QueuedMessage.from_json(f.read(length))
        except OSError as exc:
            raise CorruptEntry(f"unreadable: {exc}") from None
        if entry.queue_id != path.stem or entry.size != body_length:
            raise CorruptEntry("entry does not match its file")
        return SpooledMessage(entry, path, body_length)

    def remove(self, message: SpooledMessage) -> None:
        """Forget a message whose every recipient reached a final state."""
        message.path.unlink(missing_ok=True)

    def quarantine(self, path: Path, reason: str) -> None:
        """Move a bad queue file aside, with a log line; never raises."""
        try:
            self.quarantine_dir.mkdir(exist_ok=True, mode=0o700)
            os.replace(path, self.quarantine_dir / path.name)
        except OSError as exc:
            reason += f" (and could not be moved: {exc})"
        log_event(QueueEvent.QUARANTINED, logging.ERROR, file=str(path), reason=reason)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
