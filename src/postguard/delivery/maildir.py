"""Local delivery into Maildir folders (tmp → fsync → rename into new/ → fsync new/).

Layout: ``<maildir_root>/<domain>/<local part>/{tmp,new,cur}``, created on first
delivery with mode 0700. File names follow the Maildir convention
(``<seconds>.M<µs>P<pid>Q<counter>R<random>.<host>,S=<size>``), unique per host.

Must not: read or change the queue; it only returns outcomes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ..protocol.replies import Reply
from ..queue.fsync import fsync_directory
from .base import Delivered, Outcome, PermanentFailure, TemporaryFailure

_R452_STORAGE = Reply.of(452, "4.3.1", "Insufficient system storage")
_R451_LOCAL = Reply.of(451, "4.3.0", "Local delivery error")
_R550_BAD_MAILBOX = Reply.of(550, "5.1.1", "Mailbox unavailable")
_R552_MAILBOX_FULL = Reply.of(552, "5.2.2", "Mailbox full")  # RFC 3463: mailbox full
USAGE_RESCAN_SECONDS = 300.0  # re-count a mailbox now and then (clients delete mail)
_counter = itertools.count()
SYNCFS_MIN_BATCH = 4  # below this, per-file fsyncs cost less than flushing the file system


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux), or None where it is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_syncfs = _load_syncfs()


def _sync_file_system(path: Path) -> None:
    """Flush every dirty page and inode of the file system holding ``path``.

    Raises:
        OSError: the flush failed (Linux ≥ 5.8 reports writeback errors here).
    """
    assert _syncfs is not None
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


MAX_NAME_OCTETS = 255  # NAME_MAX of every Linux file system we write Maildirs on


def maildir_path(root: Path, mailbox: str) -> Path:
    """The Maildir of ``mailbox`` ("user@domain") under ``root``.

    Raises:
        ValueError: if the mailbox would escape ``root`` (defence in depth: the
            configuration already restricts mailbox names).
    """
    local, _, domain = mailbox.lower().rpartition("@")
    for part in (local, domain):
        if part in ("", ".", "..") or "/" in part or "\0" in part:
            raise ValueError(f"unsafe mailbox name {mailbox!r}")
        if len(part.encode("utf-8")) > MAX_NAME_OCTETS:
            raise ValueError(f"mailbox name too long {mailbox!r}")
    return root / domain / local


def ensure_maildir(path: Path) -> None:
    """Create tmp/, new/ and cur/ if missing."""
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)


class MaildirAgent:
    """Delivers to local Maildirs."""

    name = "maildir"

    def __init__(self, root: Path, *, quota: int = 0) -> None:
        self.root = root
        self.quota = quota
        # Octets per Maildir, counted from the ",S=<size>" in file names (no stat per
        # file), refreshed every USAGE_RESCAN_SECONDS, increased as we deliver.
        self._usage: dict[Path, tuple[float, int]] = {}
        self._ready: set[Path] = set()  # Maildirs known to exist (mkdir once, not per copy)
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def deliver(
        self, content: bytes, mailboxes: list[str], *, reverse_path: str = ""
    ) -> dict[str, Outcome]:
        """Store one copy per mailbox; see :class:`~postguard.delivery.base.DeliveryAgent`.

        Each copy starts with ``Return-Path: <reverse_path>`` (RFC 5321 §4.4: the
        final delivery MTA records the envelope sender).
        """
        return self.deliver_batch([(content, mailboxes, reverse_path)])[0]

    def deliver_batch(self, items: list[tuple[bytes, list[str], str]]) -> list[dict[str, Outcome]]:
        """Deliver several messages at once, making the whole batch durable together.

        Small batches: each file is fsync'd, then each ``new/`` directory once. From
        :data:`SYNCFS_MIN_BATCH` messages on (a loaded queue): the files are written
        and renamed without fsync, then one ``syncfs(2)`` flushes the file system —
        data and renames — so a batch of 50 pays one flush instead of 50.

        Args:
            items: (content, mailboxes, reverse_path) per message.

        Returns:
            One outcome mapping per item, in order. A copy counts as Delivered only
            once it is on stable storage.
        """
        use_syncfs = len(items) >= SYNCFS_MIN_BATCH and _syncfs is not None
        results: list[dict[str, Outcome]] = []
        pending: dict[Path, list[tuple[int, str, Path]]] = {}
        for index, (content, mailboxes, reverse_path) in enumerate(items):
            copy = f"Return-Path: <{reverse_path}>\r\n".encode() + content
            outcomes: dict[str, Outcome] = {}
            for mailbox in dict.fromkeys(mailboxes):
                stored = self._store(copy, mailbox, fsync=not use_syncfs)
                if isinstance(stored, Path):
                    pending.setdefault(stored.parent, []).append((index, mailbox, stored))
                    outcomes[mailbox] = Delivered()
                else:
                    outcomes[mailbox] = stored
            results.append(outcomes)
        if use_syncfs and pending:
            try:
                _sync_file_system(self.root)
            except OSError as exc:
                for entries in pending.values():
                    for index, mailbox, _path in entries:
                        results[index][mailbox] = TemporaryFailure(_R451_LOCAL, f"{mailbox}: {exc}")
            return results
        for new_dir, entries in pending.items():
            try:
                fsync_directory(new_dir)
            except OSError as exc:
                for index, mailbox, _path in entries:
                    results[index][mailbox] = TemporaryFailure(_R451_LOCAL, f"{mailbox}: {exc}")
        return results

    def _store(self, content: bytes, mailbox: str, *, fsync: bool = True) -> Path | Outcome:
        """Write one copy into tmp/ (fsync'd unless the caller syncs the file system) and
        rename it into new/ (no directory fsync)."""
        try:
            path = maildir_path(self.root, mailbox)
        except ValueError as exc:
            return PermanentFailure(_R550_BAD_MAILBOX, str(exc))
        if self.quota and self._usage_of(path) + len(content) > self.quota:
            return PermanentFailure(_R552_MAILBOX_FULL, f"{mailbox}: over its quota")
        name = self._unique_name(len(content))
        tmp = path / "tmp" / name
        try:
            if path not in self._ready:
                ensure_maildir(path)
                self._ready.add(path)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            final = path / "new" / name
            os.rename(tmp, final)
            if self.quota:
                counted, used = self._usage[path]
                self._usage[path] = (counted, used + len(content))
        except OSError as exc:
            self._ready.discard(path)  # it may have been removed: check again next time
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            reply = _R452_STORAGE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else _R451_LOCAL
            return TemporaryFailure(reply, f"{mailbox}: {exc}")
        return final

    def _usage_of(self, path: Path) -> int:
        now = time.monotonic()
        cached = self._usage.get(path)
        if cached is not None and now - cached[0] < USAGE_RESCAN_SECONDS:
            return cached[1]
        used = 0
        for sub in ("new", "cur"):
            with contextlib.suppress(OSError), os.scandir(path / sub) as entries:
                for entry in entries:
                    size = _size_from_name(entry.name)
                    if size is None:
                        with contextlib.suppress(OSError):
                            size = entry.stat().st_size
                    used += size or 0
        self._usage[path] = (now, used)
        return used

    def _unique_name(self, size: int) -> str:
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        return (
            f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}R{secrets.token_hex(4)}"
            f".{self._host},S={size}"
        )


def _size_from_name(name: str) -> int | None:
    """The ",S=<octets>" of a Maildir file name (Maildir++), if present."""
    _, sep, rest = name.partition(",S=")
    if not sep:
        return None
    digits = rest.split(",", 1)[0].split(":", 1)[0]
    return int(digits) if digits.isdigit() else None
