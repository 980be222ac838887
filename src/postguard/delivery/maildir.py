"""Local delivery into Maildir folders (tmp → fsync → rename or link into new/ → fsync new/).

Layout: ``<maildir_root>/<domain>/<local part>/{tmp,new,cur}``, created on first
delivery with mode 0700.

File names. A copy is written into ``tmp/`` under a name unique per host, in the
Maildir convention: ``<seconds>.M<µs>P<pid>Q<counter>R<random>.<host>,S=<size>``.
In ``new/`` it keeps that name, unless its item carries a ``key`` (the queue ID):
then the name is deterministic, ``<received_at seconds>.Q<key>.<host>,S=<size>``,
the same on every attempt. ``<size>`` is the octets of the stored copy, its
Return-Path line included (Maildir++). A key other than 1 to
:data:`MAX_KEY_CHARS` characters of ``[A-Za-z0-9_-]`` is ignored (the random
name is used), so a key can never put a "/", ":" or ".." into a path.

Idempotency (the queue is at-least-once: a crash between "copy stored" and
"outcome recorded" delivers the recipient again). A keyed copy goes from
``tmp/`` into ``new/`` by ``link(2)`` and ``unlink(2)``, as qmail's original
Maildir delivery did, not by ``rename(2)``: rename silently replaces an existing
file, link fails with EEXIST. EEXIST means an earlier attempt stored this copy:
it counts as Delivered, is made durable like a fresh copy (fsync'd, or covered
by the batch's syncfs), and its size is not counted against the quota again.
But only if it holds the copy octet for octet: after a power cut (or an OS crash)
the name can be on disk without the data (a journal commit for another file
carried the link, the data of a batch waiting for its syncfs did not), leaving
an empty or short file. Such a damaged copy is replaced by a whole one
(``rename(2)`` over it); found in ``cur/``, it is left there for the mail client
that may hold it, and a whole copy goes into ``new/``. The comparison reads the
earlier copy, which only a repeated delivery pays for.
An IMAP server moves ``new/X`` to ``cur/X:2,<flags>`` once a client has seen it,
so when the item says ``redelivery`` (a lease recovered after a crash), ``cur/``
is scanned for the name first. Without the flag it is not (a scan costs a
directory read per copy): a copy stored, then moved to ``cur/`` before the crash
was noticed, gets a second copy in ``new/``. A copy the user already deleted or
moved to another folder is not recognised either. Without a key, nothing is
recognised: every attempt stores a copy.

A failed flush (fsync, directory fsync or syncfs) leaves copies whose data may
never reach the disk, and the kernel reports a writeback error only once: the
next attempt's flush of the same file could succeed and count a damaged copy as
Delivered. So the copies of a failed flush that sit in ``new/`` are removed
(:meth:`MaildirAgent.discard`) and the retry stores them afresh. A copy in
``cur/`` is never removed: a mail client has seen it.

Must not: read or change the queue; it only returns outcomes.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import re
import secrets
import socket
import stat
import time
from pathlib import Path

from ..protocol.replies import Reply
from ..queue.fsync import (
    HAS_SYNCFS,
    fsync_directory,
    make_directories,
    sync_file_systems,
    watch_file_system,
)
from .base import (
    Delivered,
    DeliveryItem,
    NeedsFlush,
    Outcome,
    PermanentFailure,
    TemporaryFailure,
)

_R452_STORAGE = Reply.of(452, "4.3.1", "Insufficient system storage")
_R451_LOCAL = Reply.of(451, "4.3.0", "Local delivery error")
_R550_BAD_MAILBOX = Reply.of(550, "5.1.1", "Mailbox unavailable")
_R552_MAILBOX_FULL = Reply.of(552, "5.2.2", "Mailbox full")  # RFC 3463: mailbox full
USAGE_RESCAN_SECONDS = 300.0  # re-count a mailbox now and then (clients delete mail)
_counter = itertools.count()
SYNCFS_MIN_BATCH = 4  # below this, per-file fsyncs cost less than flushing the file system


MAX_NAME_OCTETS = 255  # NAME_MAX of every Linux file system we write Maildirs on
# Queue IDs are 16 characters. 64 keeps a keyed name (10 digits + ".Q" + key + "." +
# host ≤ 64 + ",S=" + ≤ 20 digits ≈ 164) under NAME_MAX with room for ":2,<flags>".
MAX_KEY_CHARS = 64
_KEY = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_KEY_CHARS}}}")


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
    """Create tmp/, new/ and cur/ (and the Maildir itself) if missing, durably: a copy
    made durable in new/ must not vanish with a directory entry that was not."""
    for sub in ("tmp", "new", "cur"):
        make_directories(path / sub)


class MaildirAgent:
    """Delivers to local Maildirs."""

    name = "maildir"

    def __init__(self, root: Path, *, quota: int = 0, flush_by_caller: bool = False) -> None:
        """Args:
        root: the directory holding every Maildir (``<domain>/<local part>``).
        quota: octets per Maildir (0: none).
        flush_by_caller: for a batch that would end with one syncfs(2), return
            :class:`~postguard.delivery.base.NeedsFlush` instead and let the caller
            flush (the queue manager shares that flush with the queue's log sync).
        """
        self.root = root
        self.quota = quota
        self.flush_by_caller = flush_by_caller
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
        return self.deliver_batch([DeliveryItem(content, mailboxes, reverse_path)])[0]

    def deliver_batch(self, items: list[DeliveryItem]) -> list[dict[str, Outcome]]:
        """Deliver several messages at once, making the whole batch durable together.

        Small batches: each file is fsync'd, then each ``new/`` directory once. From
        :data:`SYNCFS_MIN_BATCH` messages on (a loaded queue): the files are written
        and moved into ``new/`` without fsync, then one ``syncfs(2)`` per file system
        holding the batch's Maildirs (usually one) flushes data and names, so a batch
        of 50 pays one flush instead of 50.
        A keyed copy found already stored (see the module docstring) takes part in
        that step exactly like a fresh one.

        Args:
            items: the messages; ``key``, ``received_at`` and ``redelivery`` make a
                redelivery idempotent (module docstring).

        Returns:
            One outcome mapping per item, in order. A copy counts as Delivered only
            once it is on stable storage.
        """
        use_syncfs = len(items) >= SYNCFS_MIN_BATCH and HAS_SYNCFS
        results: list[dict[str, Outcome]] = []
        pending: dict[Path, list[tuple[int, str, Path]]] = {}
        for index, item in enumerate(items):
            copy = f"Return-Path: <{item.reverse_path}>\r\n".encode() + item.content
            name = self._keyed_name(item, len(copy))
            outcomes: dict[str, Outcome] = {}
            for mailbox in dict.fromkeys(item.mailboxes):
                stored = self._store(
                    copy, mailbox, name, redelivery=item.redelivery, fsync=not use_syncfs
                )
                if isinstance(stored, Path):
                    pending.setdefault(stored.parent, []).append((index, mailbox, stored))
                    outcomes[mailbox] = Delivered()
                else:
                    outcomes[mailbox] = stored
            results.append(outcomes)
        if use_syncfs and pending and self.flush_by_caller:
            # Named by its own directory, not the root: a Maildir may sit on another
            # file system (a mount under the root), and the caller flushes each one.
            for directory, entries in pending.items():
                for index, mailbox, path in entries:
                    results[index][mailbox] = NeedsFlush(str(directory), str(path))
            return results
        if use_syncfs and pending:
            errors, _ = sync_file_systems(pending)
            for directory, entries in pending.items():
                if str(directory) in errors:
                    self._flush_failed(entries, results, errors[str(directory)])
            return results
        for directory, entries in pending.items():
            try:
                fsync_directory(directory)
            except OSError as exc:
                self._flush_failed(entries, results, exc)
        return results

    def _flush_failed(
        self,
        entries: list[tuple[int, str, Path]],
        results: list[dict[str, Outcome]],
        exc: OSError,
    ) -> None:
        """Defer the copies of a failed flush, removing them (module docstring)."""
        self.discard([str(path) for _, _, path in entries])
        for index, mailbox, _path in entries:
            results[index][mailbox] = TemporaryFailure(_R451_LOCAL, f"{mailbox}: {exc}")

    def discard(self, copies: list[str]) -> None:
        """Remove copies whose flush failed, so that the next attempt stores them again
        instead of finding them (module docstring). Only files in a ``new/`` directory
        of a Maildir under the root are removed; anything else is left alone.
        """
        root = os.path.abspath(self.root)
        for given in copies:
            copy = os.path.abspath(given)  # also resolves any ".." before the check
            directory = os.path.dirname(copy)
            if os.path.basename(directory) != "new" or not copy.startswith(root + os.sep):
                continue
            with contextlib.suppress(OSError):  # gone already, or unremovable: retried
                os.unlink(copy)

    def _store(
        self, content: bytes, mailbox: str, name: str | None, *, redelivery: bool, fsync: bool
    ) -> Path | Outcome:
        """Store one copy and return its path in new/ (or cur/), not yet durable there.

        Writes the copy into tmp/ (fsync'd unless the caller syncs the file system)
        and renames it into new/, or with a deterministic ``name`` links it there;
        a keyed copy already stored is returned as it is (fsync'd likewise). The
        caller fsyncs the returned path's directory.
        """
        try:
            path = maildir_path(self.root, mailbox)
        except ValueError as exc:
            return PermanentFailure(_R550_BAD_MAILBOX, str(exc))
        tmp = path / "tmp" / self._unique_name(len(content))
        try:
            if name is not None and redelivery:
                earlier = _find_in_cur(path / "cur", name)
                if earlier is not None:
                    found = _sync_copy(earlier, mailbox, content, fsync=fsync)
                    if found is not None:
                        return found
                    # Damaged (module docstring): a mail client may have it open, so it
                    # stays in cur/, and a whole copy is stored in new/ beside it.
            if self.quota and self._usage_of(path) + len(content) > self.quota:
                if name is None or not os.path.lexists(path / "new" / name):
                    return PermanentFailure(_R552_MAILBOX_FULL, f"{mailbox}: over its quota")
                found = _sync_copy(path / "new" / name, mailbox, content, fsync=fsync)
                if found is not None:
                    return found
                # A damaged earlier copy: replaced below; its size is counted already.
            if path not in self._ready:
                ensure_maildir(path)
                # Before the first copy is written: a later syncfs of this file system
                # must report every writeback error from here on (fsync.FileSystemHandles).
                watch_file_system(path)
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
            if name is None:
                final = path / "new" / tmp.name
                os.rename(tmp, final)
            else:
                final = path / "new" / name
                try:
                    os.link(tmp, final)  # unlike rename(2), never replaces an earlier copy
                except FileExistsError:
                    found = _earlier_copy(path, name, mailbox, content, fsync=fsync)
                    if found is not None:
                        return found
                    os.rename(tmp, final)  # replaces the damaged copy with a whole one
                    return final  # its name, and so its size, was counted already
                finally:
                    # A tmp/ file left by a failed unlink is harmless: Maildir readers
                    # delete tmp/ files older than 36 hours.
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
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

    def _keyed_name(self, item: DeliveryItem, size: int) -> str | None:
        """The deterministic new/ name of ``item``'s copy, or None (no usable key)."""
        if not _KEY.fullmatch(item.key):
            return None
        # A deterministic stand-in for a nonsense time: a fresh clock would change the name.
        at = item.received_at
        seconds = int(at) if math.isfinite(at) and at >= 0 else 0
        return f"{seconds}.Q{item.key}.{self._host},S={size}"

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


def _find_in_cur(cur: Path, name: str) -> Path | None:
    """The entry of ``cur`` that is ``name``, with or without an IMAP info suffix
    (``:2,<flags>``), if any. A missing ``cur/`` holds nothing.

    Raises:
        OSError: ``cur/`` exists but cannot be read.
    """
    prefix = name + ":"
    try:
        with os.scandir(cur) as entries:
            for entry in entries:
                if entry.name == name or entry.name.startswith(prefix):
                    return Path(entry.path)
    except FileNotFoundError:
        return None
    return None


def _earlier_copy(
    maildir: Path, name: str, mailbox: str, expected: bytes, *, fsync: bool
) -> Path | Outcome | None:
    """The copy an earlier attempt stored as ``new/<name>`` (or ``cur/`` if an IMAP
    server has moved it on since we looked), checked and synced by :func:`_sync_copy`;
    None if it is damaged (the caller stores a whole one in new/).

    Raises:
        OSError: as :func:`_sync_copy`; FileNotFoundError if it is in neither.
    """
    try:
        return _sync_copy(maildir / "new" / name, mailbox, expected, fsync=fsync)
    except FileNotFoundError:
        moved = _find_in_cur(maildir / "cur", name)
        if moved is None:
            raise
        return _sync_copy(moved, mailbox, expected, fsync=fsync)


def _sync_copy(path: Path, mailbox: str, expected: bytes, *, fsync: bool) -> Path | Outcome | None:
    """A copy an earlier attempt stored at ``path``, fsync'd if asked as a fresh copy is,
    or None if it does not hold ``expected`` octet for octet (module docstring: after a
    power cut its name can be on disk without its data).

    Raises:
        OSError: it cannot be opened (a symbolic link among them), read or fsync'd.
    """
    # SECURITY: the Maildir may be writable by its user: never follow a symbolic link
    # out of it, never block opening a FIFO, and count only a regular file as the copy.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return TemporaryFailure(_R451_LOCAL, f"{mailbox}: {path} is not a regular file")
        if info.st_size != len(expected) or _read_all(fd, len(expected) + 1) != expected:
            return None
        if fsync:
            try:
                os.fsync(fd)
            except OSError:
                if path.parent.name == "new":  # store it afresh next time (module docstring)
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise
    finally:
        os.close(fd)
    return path


def _read_all(fd: int, limit: int) -> bytes:
    """Up to ``limit`` octets of ``fd`` from its start."""
    chunks: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.pread(fd, min(left, 1 << 20), limit - left)):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _size_from_name(name: str) -> int | None:
    """The ",S=<octets>" of a Maildir file name (Maildir++), if present."""
    _, sep, rest = name.partition(",S=")
    if not sep:
        return None
    digits = rest.split(",", 1)[0].split(":", 1)[0]
    return int(digits) if digits.isdigit() else None
