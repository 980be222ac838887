"""SQLite queue store (the embedded default): WAL, group commit, pipelined WAL syncs.

Theory of operation
-------------------
All writes go through one thread that owns the writing connection. Callers
hand it operations and await their futures; while one transaction is being
committed, new operations queue up and the next transaction applies them all
at once. Each transaction is made durable by an fdatasync of the write-ahead
log, so a busy server pays one fsync for many messages (group commit) and each
caller is answered only after its operation is durable. The sync is not made
inside COMMIT (``synchronous=FULL``) but right after it, by a second thread,
while the writer applies the next batch (``synchronous=NORMAL`` plus our own
sync, as PostgreSQL flushes its WAL): on a disk whose flushes take
milliseconds, transactions then follow each other without waiting for the
flush of the one before. The two threads pass batches to each other through
queues, and only the sync thread's outcome goes back to the event loop: on a
busy loop each return to it costs about a millisecond, which a commit used to
pay after each thread's step (bench/RESULTS.md, 21:40: 13 % more messages/s).

A failed sync fails the batch's callers (451); their transaction is committed, so it may
still be delivered (a duplicate, never a loss). A failed sync is also final
(:class:`~postguard.queue.store.base.StoreFailed`): the kernel reports a writeback error
once, so the next fdatasync could succeed although frames of the failed one never
reached the disk, and SQLite's recovery drops every frame after the first bad one. From
then on every write fails at once and the server stops; the restart recovers from the
log on disk. An SQLite COMMIT whose own fsync failed (a checkpoint's) ends the store the
same way. Worker processes forked from the server share one flag (an anonymous shared
page mapped before the fork): once one of them has failed, no other acknowledges a sync
that ends after that, even one that succeeded in its own process.

A batch is first applied as a whole: the new messages in it with one
``executemany`` per table, then the other operations. The writer thread
competes for the GIL with the event loop, and every SQLite call gives the GIL
up and takes it back, so fewer calls per batch make transactions short under
load. If anything in that attempt fails, it is rolled back and the batch is
applied again with each operation in its own SAVEPOINT, so one failing
operation does not sink the others (operations must therefore be safe to run
twice: a rolled-back run leaves nothing behind but log lines).

Small bodies are stored inline (one fsync covers envelope and content); a
body that intake already spilled to a file arrives as ``body_path`` and is
durable before the commit starts.

Several processes may share the database (SO_REUSEPORT workers, or the CLI
while the server runs): SQLite serialises writers, and claims are single
UPDATE ... RETURNING statements, so a recipient is leased to one owner only.

Must not: deliver, or build messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import mmap
import os
import queue
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ...observability.events import QueueEvent
from ...observability.logging import log_event
from ..fsync import make_directories, sync_file_systems, watch_file_system
from .base import (
    CLAIM_MAX_OCTETS,
    Claim,
    Lease,
    MessageRow,
    NewMessage,
    QueueStats,
    RecipientOutcome,
    RecipientRow,
    RecipientState,
    StoreFailed,
    StoreUnavailable,
)

T = TypeVar("T")
W = TypeVar("W")
BUSY_TIMEOUT_MS = 10_000  # another process (CLI, worker) may hold the write lock briefly
MAX_BATCH_OPERATIONS = 512  # one transaction stays short enough to keep latency bounded

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    reverse_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    envelope TEXT NOT NULL,
    prepend BLOB NOT NULL,
    body BLOB,
    body_path TEXT,
    held INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS recipients (
    message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    route TEXT NOT NULL,
    notify TEXT NOT NULL DEFAULT '',
    orcpt TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_reply TEXT,
    delay_warned INTEGER NOT NULL DEFAULT 0,
    redelivery INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    PRIMARY KEY (message_id, idx)
);
CREATE INDEX IF NOT EXISTS recipients_due ON recipients (state, next_attempt);
"""
SCHEMA_VERSION = 2  # 2: recipients.redelivery
_PENDING = ("queued", "deferred")


def connect(path: Path) -> sqlite3.Connection:
    """Open the queue database with the durability settings the contract needs."""
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    db.execute("PRAGMA journal_mode=WAL")
    # The group writer syncs the WAL itself after each COMMIT (pipelined: the next batch is
    # applied meanwhile) and answers only then; checkpoints still sync log and database.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return db


def db_path(db: sqlite3.Connection) -> str:
    """The file of ``db``'s main database."""
    for _seq, name, file in db.execute("PRAGMA database_list"):
        if name == "main":
            return str(file)
    return "?"


def storage_error(exc: BaseException) -> BaseException:
    """Translate SQLite's I/O failures into OSError, which intake maps to 452/451.

    SQLITE_FULL becomes ENOSPC (→ 452 4.3.1); read-only and I/O errors become
    EROFS/EIO (→ 451 4.3.0). Constraint errors (bugs) pass through unchanged.
    """
    if not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) or isinstance(
        exc, sqlite3.IntegrityError
    ):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return OSError(errno.ENOSPC, f"queue database: {exc}")
    if code == sqlite3.SQLITE_READONLY:
        return OSError(errno.EROFS, f"queue database: {exc}")
    return OSError(errno.EIO, f"queue database: {exc}")


@dataclass(frozen=True, slots=True)
class _Insert:
    """A new message for the writer (inserted with its batch's other new messages)."""

    message: NewMessage
    lease: Lease | None


_Op = Callable[[sqlite3.Connection], Any] | _Insert
# SQLite's own fsync failed (inside COMMIT or a checkpoint): final, like ours.
_SYNC_FAILURES = (sqlite3.SQLITE_IOERR_FSYNC, sqlite3.SQLITE_IOERR_DIR_FSYNC)


def _op_failure(exc: sqlite3.Error) -> bool:
    """Whether an error belongs to one operation (retry the batch op by op) rather than
    to the transaction or the database (full, read-only, I/O: fail the whole batch)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code not in (
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR_FSYNC,
        sqlite3.SQLITE_IOERR_DIR_FSYNC,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    )


@contextlib.contextmanager
def _write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; rolled back if anything (COMMIT included) raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _apply_together(db: sqlite3.Connection, ops: list[_Op]) -> list[tuple[bool, Any]]:
    """The whole batch in one transaction, new messages first; raises if anything fails."""
    with _write_transaction(db):
        _insert_many(db, [op for op in ops if isinstance(op, _Insert)])
        return [(True, None if isinstance(op, _Insert) else op(db)) for op in ops]


def _apply_one_by_one(db: sqlite3.Connection, ops: list[_Op]) -> list[tuple[bool, Any]]:
    """The batch again, each operation in its own SAVEPOINT: failures stay with their op."""
    results: list[tuple[bool, Any]] = []
    with _write_transaction(db):
        for op in ops:
            db.execute("SAVEPOINT op")
            try:
                if isinstance(op, _Insert):
                    _insert_many(db, [op])
                    value = None
                else:
                    value = op(db)
            except Exception as exc:
                db.execute("ROLLBACK TO op")
                db.execute("RELEASE op")
                results.append((False, storage_error(exc)))
            else:
                db.execute("RELEASE op")
                results.append((True, value))
    return results


def _settle(
    batch: list[tuple[_Op, asyncio.Future[Any]]],
    results: list[tuple[bool, Any]],
    error: BaseException | None,
) -> None:
    """Answer a committed batch's callers once a WAL sync covering it has finished."""
    for (_, future), (ok, value) in zip(batch, results, strict=True):
        if future.done():
            continue
        if not ok:
            future.set_exception(value)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


_Batch = list[tuple[_Op, asyncio.Future[Any]]]
_STOP = None  # put on a thread's queue: finish what came before, then end


@dataclass(slots=True)
class _Committed:
    """A batch the writer thread committed, for the sync thread to make durable."""

    batch: _Batch
    results: list[tuple[bool, Any]]


@dataclass(slots=True)
class _Flush:
    """A flush of other files' file systems asked for with :meth:`_GroupWriter.flush`."""

    paths: set[str]
    done: asyncio.Future[None]


class _GroupWriter:
    """Runs write operations in one thread, many per transaction, and makes them durable
    in a second thread.

    The threads hand work to each other directly: the event loop puts an operation on
    the writer thread's queue; the writer takes every operation waiting (up to the batch
    limit), commits them in one transaction and puts the batch on the sync thread's queue,
    then takes the next operations at once; the sync thread takes every committed batch
    and flush waiting, makes them durable in one round, and passes the outcome back to
    the event loop (``call_soon_threadsafe``), which answers the callers. A commit thus
    waits for the event loop once, at the end, rather than after each thread's step: on
    a busy loop each return to it costs about a millisecond, which is what a caller's
    250 waited for twice more when the loop drove both steps.
    """

    def __init__(self, path: Path, *, batch_limit: int = MAX_BATCH_OPERATIONS) -> None:
        self._batch_limit = batch_limit
        self._db: sqlite3.Connection | None = None
        self._lock_fd = -1
        self._path = path
        self._wal_fd = -1
        # Started on first use, in the process that uses them (threads do not survive a
        # fork; the server forks its workers before any of them writes).
        self._threads: tuple[threading.Thread, threading.Thread] | None = None
        self._threads_pid = 0
        self._ops: queue.SimpleQueue[tuple[_Op, asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._syncs: queue.SimpleQueue[_Committed | _Flush | None] = queue.SimpleQueue()
        self._closed = False
        self.transactions = 0  # for tests and benchmarks: commits actually made
        self.failure: StoreFailed | None = None
        self._failure_callbacks: list[Callable[[StoreFailed], None]] = []
        # One byte shared with every process forked after this (module docstring).
        self._failed_anywhere = mmap.mmap(-1, 1)

    def on_failure(self, callback: Callable[[StoreFailed], None]) -> None:
        self._failure_callbacks.append(callback)

    def _fail(self, error: StoreFailed) -> None:
        """End writing for good (module docstring): tell the owner (the server stops), and
        fail every later write at once (operations already queued fail as the threads
        reach them). Event loop only."""
        if self.failure is not None:
            return
        self.failure = error
        self._failed_anywhere[0] = 1
        log_event(QueueEvent.STORE_FAILED, logging.CRITICAL, path=str(self._path), error=str(error))
        for callback in self._failure_callbacks:
            asyncio.get_running_loop().call_soon(callback, error)

    def _check_siblings(self) -> None:
        """Fail here too if another process sharing this store has failed."""
        if self.failure is None and self._failed_anywhere[0]:
            self._fail(StoreFailed("queue database: another process of this server failed"))

    def _start(self) -> None:
        if self._closed:
            raise StoreFailed("queue database: the store is closed")
        if self._threads is not None and self._threads_pid == os.getpid():
            return
        # A child forked after the threads started has copies of their queues but not the
        # threads: start afresh (the parent's queued work stays the parent's).
        self._ops, self._syncs = queue.SimpleQueue(), queue.SimpleQueue()
        writer = threading.Thread(target=self._write_loop, name="pg-queue-db", daemon=True)
        syncer = threading.Thread(target=self._sync_loop, name="pg-queue-sync", daemon=True)
        self._threads, self._threads_pid = (writer, syncer), os.getpid()
        writer.start()
        syncer.start()

    async def run(self, op: Callable[[sqlite3.Connection], T] | _Insert) -> T:
        self._check_siblings()
        if self.failure is not None:
            raise self.failure
        self._start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._ops.put((op, future))
        return await future

    async def flush(self, paths: Sequence[str]) -> None:
        """Flush the file systems of ``paths`` in the next sync round (see the store)."""
        self._check_siblings()
        if self.failure is not None:
            raise self.failure
        self._start()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._syncs.put(_Flush(set(paths), done))
        await done

    # ------------------------------------------------------------ writer thread

    def _write_loop(self) -> None:
        try:
            _serve(self._ops, self._batch_limit, self._commit)
        finally:
            self._syncs.put(_STOP)  # after every batch this thread handed over
            if self._db is not None:
                self._db.close()
                self._db = None

    def _commit(self, batch: _Batch) -> None:
        """Commit ``batch`` and hand it to the sync thread, or fail its callers."""
        loop = batch[0][1].get_loop()
        if self.failure is not None or self._failed_anywhere[0]:
            _to_loop(loop, self._refuse, batch)
            return
        try:
            results = self._apply(batch)
        except sqlite3.Error as exc:  # BEGIN/COMMIT failed: nobody's op is durable
            _to_loop(loop, self._failed_commit, batch, exc)
            return
        except BaseException as exc:  # a bug: fail the callers, keep the thread
            error = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
            _to_loop(loop, _fail_all, batch, error)
            return
        self._syncs.put(_Committed(batch, results))

    def _refuse(self, batch: _Batch) -> None:
        """Event loop: the store failed before ``batch`` was applied."""
        self._check_siblings()
        assert self.failure is not None
        _fail_all(batch, self.failure)

    def _failed_commit(self, batch: _Batch, exc: sqlite3.Error) -> None:
        """Event loop: the transaction of ``batch`` failed as a whole."""
        error: BaseException = storage_error(exc)
        if getattr(exc, "sqlite_errorcode", None) in _SYNC_FAILURES:
            error = StoreFailed(f"queue database: {exc}")
            self._fail(error)
        _fail_all(batch, error)

    # -------------------------------------------------------------- sync thread

    def _sync_loop(self) -> None:
        _serve(self._syncs, sys.maxsize, self._sync)

    def _sync(self, items: list[_Committed | _Flush]) -> None:
        """One flush round for every batch committed and flush asked for since the last,
        then the outcome to the event loop."""
        committed = [i for i in items if isinstance(i, _Committed)]
        flushes = [i for i in items if isinstance(i, _Flush)]
        loop = (committed[0].batch[0][1] if committed else flushes[0].done).get_loop()
        paths: set[str] = set().union(*(f.paths for f in flushes))
        path_errors: dict[str, OSError] = {}
        sync_error: OSError | None = None
        # After a failure, no later sync can be believed (the event loop fails them all).
        skipped = self.failure is not None or bool(self._failed_anywhere[0])
        if not skipped:
            try:
                path_errors, sync_error = self._sync_round(paths)
            except Exception as exc:  # a bug, not an I/O error: nobody is known durable
                sync_error = OSError(errno.EIO, f"sync failed: {exc}")
                path_errors = dict.fromkeys(paths, sync_error)
        _to_loop(loop, self._synced, committed, flushes, path_errors, sync_error, skipped)

    def _synced(
        self,
        committed: list[_Committed],
        flushes: list[_Flush],
        path_errors: dict[str, OSError],
        sync_error: OSError | None,
        skipped: bool,
    ) -> None:
        """Event loop: answer the callers of a sync round (``skipped``: not made, the
        store had failed)."""
        if sync_error is not None:
            self._fail(
                StoreFailed(
                    f"queue database: syncing {self._path.name}-wal failed: "
                    f"{sync_error.strerror or sync_error}"
                )
            )
        else:  # a sibling's failure known by now voids this round too
            self._check_siblings()
        log_error: OSError | None = self.failure
        if skipped:
            assert log_error is not None
            path_errors = dict.fromkeys(set().union(*(f.paths for f in flushes)), log_error)
        for item in committed:
            _settle(item.batch, item.results, log_error)
        for flush in flushes:
            failed = [path_errors[p] for p in sorted(flush.paths) if p in path_errors]
            if flush.done.done():
                continue
            if failed:
                flush.done.set_exception(failed[0])
            else:
                flush.done.set_result(None)

    def _sync_round(self, paths: set[str]) -> tuple[dict[str, OSError], OSError | None]:
        """One flush round: syncfs(2) of each file system in ``paths``, then the WAL's
        fdatasync unless a successful syncfs already covered its file system.

        Returns:
            The error of each path whose flush failed (only its callers fail), and the
            error of the log's sync (every batch of the round fails), if any.
        """
        errors, flushed = sync_file_systems(sorted(paths))
        wal = f"{self._path}-wal"
        try:
            log = os.stat(wal)
            if log.st_dev not in flushed:
                self._sync_wal(wal, log.st_ino)
        except FileNotFoundError:
            pass  # no log: SQLite checkpointed everything into the (synced) database
        except OSError as exc:
            return errors, exc
        return errors, None

    def _sync_wal(self, wal: str, current: int) -> None:
        """fdatasync the write-ahead log ``wal`` (inode ``current``): every transaction
        committed before this call is then on stable storage (what ``synchronous=FULL``
        does inside COMMIT).

        Raises:
            OSError: the sync failed; the transactions are committed but maybe not durable.
        """
        if self._wal_fd >= 0 and os.fstat(self._wal_fd).st_ino != current:
            os.close(self._wal_fd)  # SQLite made a new log file: sync that one
            self._wal_fd = -1
        if self._wal_fd < 0:
            self._wal_fd = os.open(wal, os.O_RDONLY)
        os.fdatasync(self._wal_fd)

    def _apply(self, batch: list[tuple[_Op, asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        if self._db is None:
            self._db = connect(self._path)
            # The log's descriptor is opened before this process writes to it, so that
            # its fdatasync reports every writeback error of the log from here on, even
            # one a sibling process has already been told about (fsync.FileSystemHandles
            # explains why a descriptor opened later would miss it).
            with contextlib.suppress(FileNotFoundError):
                self._wal_fd = os.open(f"{self._path}-wal", os.O_RDONLY | os.O_CLOEXEC)
            # Read-only is enough for flock(2), and lets the CLI run as root beside a
            # server running as its service user (either may create the file first).
            self._lock_fd = os.open(
                self._path.with_name(self._path.name + ".writer-lock"),
                os.O_RDONLY | os.O_CREAT,
                0o644,
            )
        db = self._db
        # Writers in other processes (workers, the CLI) queue on a kernel lock and wake
        # the moment it is free; SQLite's own busy handler would poll with sleeps of up to
        # 100 ms, which showed as p99 latency with several workers.
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            return self._transaction(db, batch)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _transaction(
        self, db: sqlite3.Connection, batch: list[tuple[_Op, asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        ops = [op for op, _ in batch]
        try:
            results = _apply_together(db, ops)
        except sqlite3.Error as exc:
            if not _op_failure(exc):
                raise  # the transaction itself failed (disk full, I/O): nobody is durable
            results = _apply_one_by_one(db, ops)
        except Exception:
            results = _apply_one_by_one(db, ops)
        self.transactions += 1
        return results

    async def close(self) -> None:
        """Finish every operation and flush asked for, then end both threads."""
        self._closed = True
        threads, self._threads = self._threads, None
        if threads is not None and self._threads_pid == os.getpid():
            self._ops.put(_STOP)  # the writer finishes, then stops the sync thread
            for thread in threads:
                await asyncio.to_thread(thread.join)
            await asyncio.sleep(0)  # the answers of the threads' last rounds
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        if self._wal_fd >= 0:
            os.close(self._wal_fd)
            self._wal_fd = -1


def _serve(
    waiting: queue.SimpleQueue[W | None], limit: int, handle: Callable[[list[W]], None]
) -> None:
    """A store thread's loop: wait for an item, take it with what else is already waiting
    (at most ``limit`` in all), ``handle`` them together; end at the stop mark, after
    handling what came before it."""
    while True:
        first = waiting.get()
        if first is _STOP:
            return
        items = [first]
        stop = False
        while len(items) < limit:
            try:
                item = waiting.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            items.append(item)
        handle(items)
        if stop:
            return


def _to_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Have ``callback(*args)`` run in ``loop`` (from a store thread); dropped if the loop
    has been closed meanwhile (nobody is waiting any more)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _fail_all(batch: _Batch, error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


class SqliteQueueStore:
    """The :class:`~postguard.queue.store.base.QueueStore` on SQLite."""

    def __init__(self, directory: Path, *, group_commit: bool = True) -> None:
        """Open (or create) the queue in ``directory``.

        Raises:
            StoreUnavailable: the directory or database cannot be used; the message
                names the file and the problem.
        """
        self.path = directory / "queue.db"
        try:
            make_directories(directory)
            # Before anything is written: a syncfs that stands for the log's fdatasync
            # must see every writeback error from here on (fsync.FileSystemHandles).
            watch_file_system(directory)
            db = connect(self.path)
            try:
                _migrate(db)
            finally:
                db.close()
        except StoreUnavailable:
            raise
        except sqlite3.DatabaseError as exc:  # the file itself: corrupt, unreadable
            raise StoreUnavailable(
                f"queue database {self.path}: {exc} (move it aside to start with an "
                "empty queue, or restore it from a backup)"
            ) from None
        except (OSError, sqlite3.Error) as exc:  # the directory, or SQLite's own misuse
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StoreUnavailable(f"queue database {self.path}: {detail}") from None
        # Without group commit every operation gets its own transaction (and fsync).
        self._writer = _GroupWriter(
            self.path, batch_limit=MAX_BATCH_OPERATIONS if group_commit else 1
        )
        # One reader thread owning one connection: a connection is never used by two
        # threads, and close() runs after every pending read (closing a connection
        # another thread is using can crash the interpreter).
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-queue-read")
        self._reader_db: sqlite3.Connection | None = None

    @property
    def transactions(self) -> int:
        return self._writer.transactions

    @property
    def failure(self) -> StoreFailed | None:
        return self._writer.failure

    def on_failure(self, callback: Callable[[StoreFailed], None]) -> None:
        self._writer.on_failure(callback)

    # ------------------------------------------------------------- intake

    async def commit(self, message: NewMessage, *, lease: Lease | None = None) -> None:
        if (message.body is None) == (message.body_path is None):
            raise ValueError("exactly one of body and body_path must be set")
        await self._writer.run(_Insert(message, lease))

    # ------------------------------------------------------------ manager

    async def claim_due(
        self,
        *,
        now: float,
        owner: str,
        lease_seconds: float,
        limit: int,
        max_octets: int = CLAIM_MAX_OCTETS,
    ) -> Sequence[Claim]:
        return await self._writer.run(
            lambda db: _claim(db, now, owner, now + lease_seconds, limit, max_octets)
        )

    async def record(
        self,
        outcomes: Sequence[RecipientOutcome],
        *,
        owner: str,
        bounces: Sequence[NewMessage] = (),
    ) -> None:
        finished = await self._writer.run(lambda db: _record(db, outcomes, owner, bounces))
        _unlink_bodies(finished)  # only after the COMMIT: a rollback must find its body

    async def flush(self, paths: Sequence[str]) -> None:
        await self._writer.flush(paths)

    async def release_leases(self, *, owner: str | None, now: float, lost: bool = False) -> int:
        def op(db: sqlite3.Connection) -> int:
            if owner is None:  # their owner is gone: it may have stored a copy first
                cur = db.execute(
                    "UPDATE recipients SET state='queued', lease_owner=NULL, lease_until=NULL, "
                    "redelivery=1 WHERE state='delivering' AND lease_until < ?",
                    (now,),
                )
            else:
                cur = db.execute(
                    "UPDATE recipients SET state='queued', lease_owner=NULL, lease_until=NULL, "
                    "redelivery=MAX(redelivery, ?) WHERE state='delivering' AND lease_owner = ?",
                    (int(lost), owner),
                )
            return cur.rowcount

        return await self._writer.run(op)

    async def next_due_time(self) -> float | None:
        row = await self._read(
            lambda db: db.execute(
                "SELECT MIN(r.next_attempt) FROM recipients r JOIN messages m ON m.id=r.message_id "
                "WHERE r.state IN ('queued','deferred') AND m.held=0"
            ).fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    # --------------------------------------------------------- operators

    async def list_messages(self, limit: int = 1000) -> Sequence[MessageRow]:
        return await self._read(lambda db: _load_messages(db, None, limit))

    async def get_message(self, queue_id: str) -> MessageRow | None:
        rows = await self._read(lambda db: _load_messages(db, queue_id, 1))
        return rows[0] if rows else None

    async def hold(self, queue_id: str) -> int:
        return await self._writer.run(
            lambda db: db.execute("UPDATE messages SET held=1 WHERE id=?", (queue_id,)).rowcount
        )

    async def release(self, queue_id: str) -> int:
        return await self._writer.run(
            lambda db: db.execute("UPDATE messages SET held=0 WHERE id=?", (queue_id,)).rowcount
        )

    async def retry(self, queue_id: str | None, *, now: float) -> int:
        def op(db: sqlite3.Connection) -> int:
            where = "state='deferred'" + (" AND message_id=?" if queue_id else "")
            args: tuple[Any, ...] = (now, queue_id) if queue_id else (now,)
            cur = db.execute(f"UPDATE recipients SET next_attempt=? WHERE {where}", args)
            return cur.rowcount

        return await self._writer.run(op)

    async def delete(self, queue_id: str) -> int:
        def op(db: sqlite3.Connection) -> list[str | None] | None:
            row = db.execute("SELECT body_path FROM messages WHERE id=?", (queue_id,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM messages WHERE id=?", (queue_id,))
            return [row[0]]

        deleted = await self._writer.run(op)
        if deleted is None:
            return 0
        _unlink_bodies(deleted)
        return 1

    async def body_paths(self) -> set[str]:
        """Every body file a queued message references (to clean up orphans at start-up)."""
        rows = await self._read(
            lambda db: db.execute(
                "SELECT body_path FROM messages WHERE body_path IS NOT NULL"
            ).fetchall()
        )
        return {row[0] for row in rows}

    async def stats(self) -> QueueStats:
        def op(db: sqlite3.Connection) -> QueueStats:
            messages, held, oldest, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(held > 0), 0), MIN(received_at), "
                "COALESCE(SUM(size), 0) FROM messages"
            ).fetchone()
            by_state = dict(
                db.execute("SELECT state, COUNT(*) FROM recipients GROUP BY state").fetchall()
            )
            return QueueStats(messages, by_state, held, oldest, size)

        return await self._read(op)

    async def close(self) -> None:
        await self._writer.close()

        def close_reader() -> None:
            if self._reader_db is not None:
                self._reader_db.close()
                self._reader_db = None

        await asyncio.get_running_loop().run_in_executor(self._reader, close_reader)
        self._reader.shutdown(wait=True)

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._reader_db is None:
                self._reader_db = connect(self.path)
            return op(self._reader_db)

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)


# ------------------------------------------------------------------ SQL ops


def _migrate(db: sqlite3.Connection) -> None:
    """Create the schema, or bring a queue written by an older version up to date.

    Raises:
        StoreUnavailable: a newer version wrote it (its schema is not known here).
    """
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"queue database {db_path(db)}: written by a newer postguard (schema "
            f"{version}; this version knows up to {SCHEMA_VERSION}): run that version"
        )
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(recipients)")}
    if "redelivery" not in columns:  # version 1
        db.execute("ALTER TABLE recipients ADD COLUMN redelivery INTEGER NOT NULL DEFAULT 0")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _insert_many(db: sqlite3.Connection, inserts: list[_Insert]) -> None:
    if not inserts:
        return
    for i in inserts:
        if (i.message.body is None) == (i.message.body_path is None):
            raise ValueError("exactly one of body and body_path must be set")
    db.executemany(
        "INSERT INTO messages (id, received_at, reverse_path, size, envelope, prepend, body, "
        "body_path) VALUES (?,?,?,?,?,?,?,?)",
        [
            (
                m.queue_id,
                m.received_at,
                m.reverse_path,
                m.size,
                json.dumps(m.envelope),
                m.prepend,
                m.body,
                m.body_path,
            )
            for m in (i.message for i in inserts)
        ],
    )
    db.executemany(
        "INSERT INTO recipients (message_id, idx, address, mailbox, route, notify, orcpt, state, "
        "next_attempt, lease_owner, lease_until) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                i.message.queue_id,
                n,
                r.address,
                r.mailbox,
                r.route,
                ",".join(r.notify),
                r.orcpt,
                "queued" if i.lease is None else "delivering",
                i.message.received_at,
                None if i.lease is None else i.lease.owner,
                None if i.lease is None else i.lease.until,
            )
            for i in inserts
            for n, r in enumerate(i.message.recipients)
        ],
    )


def _recipient(row: tuple[Any, ...]) -> RecipientRow:
    (
        message_id,
        idx,
        address,
        mailbox,
        route,
        notify,
        orcpt,
        state,
        attempts,
        next_attempt,
        last_reply,
        delay_warned,
        redelivery,
    ) = row
    return RecipientRow(
        message_id=message_id,
        index=idx,
        address=address,
        mailbox=mailbox,
        route=route,
        state=RecipientState(state),
        attempts=attempts,
        next_attempt=next_attempt,
        last_reply=last_reply,
        notify=tuple(n for n in notify.split(",") if n),
        orcpt=orcpt,
        delay_warned=bool(delay_warned),
        redelivery=bool(redelivery),
    )


_RCPT_COLUMNS = (
    "message_id, idx, address, mailbox, route, notify, orcpt, state, attempts, next_attempt, "
    "last_reply, delay_warned, redelivery"
)


def _message(
    db: sqlite3.Connection, row: tuple[Any, ...], recipients: tuple[RecipientRow, ...] | None = None
) -> MessageRow:
    queue_id, received_at, reverse_path, size, envelope, held, body_path = row
    if recipients is None:
        recipients = tuple(
            _recipient(r)
            for r in db.execute(
                f"SELECT {_RCPT_COLUMNS} FROM recipients WHERE message_id=? ORDER BY idx",
                (queue_id,),
            )
        )
    return MessageRow(
        queue_id,
        received_at,
        reverse_path,
        size,
        json.loads(envelope),
        bool(held),
        body_path,
        recipients,
        quarantined=held == QUARANTINED,
    )


_MSG_COLUMNS = "id, received_at, reverse_path, size, envelope, held, body_path"


def _load_messages(db: sqlite3.Connection, queue_id: str | None, limit: int) -> list[MessageRow]:
    if queue_id is not None:
        rows = db.execute(f"SELECT {_MSG_COLUMNS} FROM messages WHERE id=?", (queue_id,))
    else:
        rows = db.execute(
            f"SELECT {_MSG_COLUMNS} FROM messages ORDER BY received_at LIMIT ?",
            (limit,),
        )
    return [_message(db, row) for row in rows.fetchall()]


def _claim(
    db: sqlite3.Connection,
    now: float,
    owner: str,
    lease_until: float,
    limit: int,
    max_octets: int = CLAIM_MAX_OCTETS,
) -> list[Claim]:
    due = db.execute(
        "SELECT r.rowid, r.message_id, m.size FROM recipients r JOIN messages m "
        "ON m.id=r.message_id WHERE r.state IN ('queued','deferred') AND r.next_attempt <= ? "
        "AND m.held=0 ORDER BY r.next_attempt LIMIT ?",
        (now, limit),
    ).fetchall()
    # Whole messages, in due order, until the content budget is spent (at least one).
    taken: dict[str, None] = {}
    rowids: list[int] = []
    octets = 0
    for rowid, queue_id, size in due:
        if queue_id not in taken:
            if taken and octets + (size if isinstance(size, int) else 0) > max_octets:
                continue
            taken[queue_id] = None
            octets += size if isinstance(size, int) else 0
        rowids.append(rowid)
    if not rowids:
        return []
    leased = db.execute(
        "UPDATE recipients SET state='delivering', lease_owner=?, lease_until=? "
        f"WHERE rowid IN (SELECT value FROM json_each(?)) RETURNING {_RCPT_COLUMNS}",
        (owner, lease_until, json.dumps(rowids)),
    ).fetchall()
    by_message: dict[str, list[RecipientRow]] = {}
    bad: dict[str, str] = {}
    for row in leased:
        try:
            rcpt = _recipient(row)
        except (ValueError, TypeError, AttributeError) as exc:
            bad[str(row[0])] = f"bad recipient row: {exc}"
            continue
        by_message.setdefault(rcpt.message_id, []).append(rcpt)
    claims = []
    for queue_id, rcpts in by_message.items():
        if queue_id in bad:
            continue
        # SECURITY/robustness: rows are validated again when read (STYLE.md §1); a bad
        # one is quarantined, never allowed to stop the queue.
        try:
            row = db.execute(
                f"SELECT {_MSG_COLUMNS}, prepend, body FROM messages WHERE id=?",
                (queue_id,),
            ).fetchone()
            message = _message(db, row[:7])
            prepend, body = row[7], row[8]
            if body is None:
                body = Path(row[6]).read_bytes()
            if not isinstance(prepend, bytes) or len(body) != message.size:
                raise ValueError("content does not match the recorded size")
        except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
            bad[queue_id] = str(exc)
            continue
        rcpts.sort(key=lambda r: r.index)
        claims.append(Claim(message, tuple(rcpts), bytes(prepend) + bytes(body)))
    for queue_id, reason in bad.items():
        _quarantine(db, queue_id, reason)
    return claims


QUARANTINED = 2  # messages.held: 0 active, 1 held by an operator, 2 quarantined


def _quarantine(db: sqlite3.Connection, queue_id: str, reason: str) -> None:
    """Set a message aside: never delivered again until an operator acts (CLI)."""
    db.execute("UPDATE messages SET held=? WHERE id=?", (QUARANTINED, queue_id))
    db.execute(
        "UPDATE recipients SET state='queued', lease_owner=NULL, lease_until=NULL, "
        "last_reply=? WHERE message_id=? AND state='delivering'",
        (f"quarantined: {reason}", queue_id),
    )
    log_event(QueueEvent.QUARANTINED, logging.ERROR, queue_id=queue_id, reason=reason)


def _record(
    db: sqlite3.Connection,
    outcomes: Sequence[RecipientOutcome],
    owner: str,
    bounces: Sequence[NewMessage],
) -> list[str | None]:
    """Apply outcomes; return the body files of messages that are now finished."""
    db.executemany(
        "UPDATE recipients SET state=?, attempts=attempts+1, next_attempt=?, last_reply=?, "
        "delay_warned=MAX(delay_warned, ?), redelivery=0, lease_owner=NULL, lease_until=NULL "
        "WHERE message_id=? AND idx=? AND lease_owner=?",
        [
            (
                o.state.value,
                o.next_attempt,
                o.reply,
                int(o.delay_warned),
                o.message_id,
                o.index,
                owner,
            )
            for o in outcomes
        ],
    )
    _insert_many(db, [_Insert(bounce, None) for bounce in bounces])
    finished: list[str | None] = []
    for queue_id in dict.fromkeys(o.message_id for o in outcomes):
        # One statement per message: gone once no recipient is left to deliver.
        row = db.execute(
            "DELETE FROM messages WHERE id=? AND NOT EXISTS (SELECT 1 FROM recipients "
            "WHERE message_id=? AND state NOT IN ('delivered','bounced')) RETURNING body_path",
            (queue_id, queue_id),
        ).fetchone()
        if row is not None:
            finished.append(row[0])
    return finished


def _unlink_bodies(paths: Sequence[str | None]) -> None:
    for path in paths:
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)
