"""Durable file primitives and group commit of directory fsyncs.

The Maildir discipline, used for every file postguard promises to keep:
write to a temporary name → fsync the file → rename → fsync the directory.
Only after the directory fsync has returned is the new name on stable
storage (ext4/xfs may otherwise lose the rename on power failure).

:class:`GroupDirSync` lets many concurrent commits share one directory fsync:
a caller waits for a sync that *started after* its rename, so correctness is
kept while a busy server pays one directory fsync for many messages.

:func:`sync_file_system` flushes a whole file system with ``syncfs(2)`` through a
descriptor that this process opened before writing the data it must cover (see
:class:`FileSystemHandles`): a descriptor opened just before the call can report
success for pages whose writeback already failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Callable, Iterable
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


class FileSystemHandles:
    """One long-lived directory descriptor per file system, per process, for syncfs(2).

    Linux (≥ 5.8) records a file system's writeback errors in a sequence counter, and
    syncfs(2) reports an error to each open file description once, counting from when the
    description was opened; a description opened *after* the error reports it only if
    nobody has reported it yet. So a descriptor opened just before syncfs returns success
    for our lost pages as soon as anyone else on the machine synced that file system
    first: a sibling worker, another mail process, a backup tool (the PostgreSQL
    "fsyncgate" lesson, tested for real in ``tests/queue/test_syncfs_errors.py``).

    Hence: :meth:`watch` opens a descriptor when a component learns where it will write
    (the queue store and the Maildir agent, at start, before any data), and
    :meth:`sync` always uses it. A forked child inherits the descriptors but shares their
    error cursor with the parent, so right after a fork the child opens its own
    (``os.register_at_fork``), before it writes anything.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: dict[int, int] = {}  # st_dev -> descriptor
        self._paths: dict[int, str] = {}  # st_dev -> the directory it was opened on

    def watch(self, path: Path | str) -> int:
        """Hold a descriptor for the file system of ``path`` (a directory); returns it.

        Raises:
            OSError: ``path`` cannot be opened.
        """
        device = os.stat(path).st_dev
        with self._lock:
            fd = self._fds.get(device)
            if fd is None:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                self._fds[device], self._paths[device] = fd, os.fspath(path)
            return fd

    def sync(self, path: Path | str) -> None:
        """syncfs(2) of the file system holding ``path`` through its held descriptor.

        Raises:
            OSError: the flush failed, or syncfs(2) is not available (ENOSYS).
        """
        if _syncfs is None:
            raise OSError(38, "syncfs(2) is not available")  # ENOSYS
        if _syncfs(self.watch(path)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def release(self, path: Path | str) -> None:
        """Stop holding the descriptor for the file system of ``path`` (so that it can be
        unmounted); a later :meth:`sync` there opens a new one."""
        device = os.stat(path).st_dev
        with self._lock:
            fd = self._fds.pop(device, None)
            self._paths.pop(device, None)
        if fd is not None:
            os.close(fd)

    def after_fork_in_child(self) -> None:
        """Replace the inherited descriptors by the child's own (same directories)."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        fds, paths = self._fds, self._paths
        self._fds, self._paths = {}, {}
        for fd in fds.values():
            os.close(fd)
        for path in paths.values():
            with contextlib.suppress(OSError):  # else opened by the next sync (and reported)
                self.watch(path)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._paths.clear()


FILE_SYSTEMS = FileSystemHandles()
os.register_at_fork(after_in_child=FILE_SYSTEMS.after_fork_in_child)


def watch_file_system(path: Path | str) -> None:
    """Start holding a syncfs descriptor for the file system of ``path`` (a directory),
    before anything that a later :func:`sync_file_system` must cover is written there.

    Raises:
        OSError: ``path`` cannot be opened.
    """
    FILE_SYSTEMS.watch(path)


def sync_file_system(path: Path | str) -> None:
    """Flush every dirty page and inode of the file system holding ``path`` (syncfs(2)),
    through this process's long-lived descriptor for it (:class:`FileSystemHandles`).

    Raises:
        OSError: the flush failed (Linux ≥ 5.8 reports writeback errors here), or
            syncfs(2) is not available (ENOSYS).
    """
    FILE_SYSTEMS.sync(path)


def sync_file_systems(paths: Iterable[str | Path]) -> tuple[dict[str, OSError], set[int]]:
    """syncfs(2) once per file system holding ``paths``.

    Returns:
        The error of each path whose file system failed to flush (or that could not be
        found), and the devices (``st_dev``) flushed successfully. A failed file system
        is not synced again for its other paths: the kernel reports a writeback error to
        a descriptor once, so a second syncfs would succeed although the pages are lost.
    """
    outcome: dict[int, OSError | None] = {}  # per device: None once flushed
    errors: dict[str, OSError] = {}
    for path in paths:
        try:
            device = os.stat(path).st_dev
        except OSError as exc:
            errors[os.fspath(path)] = exc
            continue
        if device not in outcome:
            try:
                sync_file_system(path)
                outcome[device] = None
            except OSError as exc:
                outcome[device] = exc
        if (error := outcome[device]) is not None:
            errors[os.fspath(path)] = error
    return errors, {device for device, error in outcome.items() if error is None}


def fsync_directory(path: Path) -> None:
    """fsync a directory so that renames/creations in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directories(path: Path, mode: int = 0o700) -> None:
    """``mkdir -p`` whose new directories survive a power cut: a directory's entry lives
    in its parent, so after creating one the parent is fsync'd (POSIX promises nothing
    else; ext4's journal happens to cover it, other file systems need not). Existing
    directories cost one stat and nothing more.

    Raises:
        OSError: a directory could not be created or its parent not synced.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists():  # up to the first that exists (a file there: ENOTDIR below)
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue
        fsync_directory(directory.parent)
    if not path.is_dir():  # it was there already, as something else
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))


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
