"""Storage that fails under a running server: a failed sync is never trusted.

With ``tests/helpers/failsync.c`` preloaded into ``postguard serve``, fsync(2),
fdatasync(2) or syncfs(2) return EIO for chosen files (the data is still written: what
is tested is what postguard does with the error).

* **The queue's log.** Once an fdatasync of ``queue.db-wal`` fails, the message whose
  commit it was gets 451 4.3.0, nothing after it gets 250 (although the next sync would
  succeed: the shim, like the kernel, reports the error once), the failure is logged at
  CRITICAL as ``queue.store_failed``, and the whole server exits with status 74
  (EX_IOERR), with one process or several, so that a supervisor restarts it. The
  restart delivers every message that got 250 exactly once.
* **Maildir copies.** While every flush of the Maildir fails, no copy is left in
  ``new/``: a copy whose flush failed is removed, and the recipient is deferred with the
  reason. Once the disk is healthy again, ``postguard queue retry --all`` delivers
  every message exactly once, byte for byte.
* **A spilled body file.** A failed fsync of one large message's body file refuses that
  message (451) and leaves no file; the queue's log is untouched and the server goes on.
* **A disk that really loses pages** (``helpers.failing_disk``, no shim): the same
  stop with status 74 when the kernel itself fails the log's writeback.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import smtplib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers.failing_disk import FailingDisk, failing_disk
from helpers.failsync import FailSync, build_failsync
from helpers.servers import ServerInfo, SubprocessServer, start_subprocess

EX_IOERR = 74
EXIT_TIMEOUT_SECONDS = 30.0
DELIVERY_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.05
LOST_WRITE_ATTEMPTS = 50
MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.MULTILINE)


@pytest.fixture(scope="module")
def failsync_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_failsync(tmp_path_factory.mktemp("failsync"))


@pytest.fixture
def injections() -> Iterator[list[FailSync]]:
    made: list[FailSync] = []
    yield made
    for injection in made:
        injection.cleanup()


def body(message_id: str) -> bytes:
    return (
        f"Message-ID: <{message_id}>\r\nSubject: storage {message_id}\r\n\r\n"
        f"The body of {message_id}.\r\n"
    ).encode()


def send(server: ServerInfo, message_id: str) -> int:
    """Send one message to test@localhost; its final reply code, or 0 if the server
    could not be reached or dropped the connection."""
    try:
        with smtplib.SMTP(server.host, server.ports["mx"], timeout=30) as client:
            client.sendmail("alice@example.org", ["test@localhost"], body(message_id))
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code
    except (OSError, smtplib.SMTPException):
        return 0
    return 250


def delivered_ids(server: ServerInfo) -> collections.Counter[str]:
    found: collections.Counter[str] = collections.Counter()
    for sub in ("new", "cur"):
        folder = server.maildir() / sub
        if folder.is_dir():
            for path in folder.iterdir():
                match = MESSAGE_ID.search(path.read_bytes())
                found[match.group(1).decode() if match else f"?{path.name}"] += 1
    return found


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


def queue_cli(server: SubprocessServer, *args: str) -> str:
    assert server.config_path is not None
    done = subprocess.run(
        [sys.executable, "-m", "postguard", "queue", *args, "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_queue_log_sync_stops_the_server_and_loses_nothing(
    subprocess_factory: Callable[..., SubprocessServer],
    failsync_library: Path,
    injections: list[FailSync],
    workers: int,
) -> None:
    wal = FailSync(failsync_library, match="queue.db-wal", calls="fdatasync,fsync", once=True)
    injections.append(wal)
    srv = subprocess_factory(server_toml=f"workers = {workers}", env=wal.env())
    acknowledged = [f"before{n}@storage.test" for n in range(3)]
    assert [send(srv, mid) for mid in acknowledged] == [250, 250, 250]
    wait_until(lambda: not srv.spooled(), DELIVERY_TIMEOUT_SECONDS, "the first delivery")

    wal.arm()
    # The next sync of the log fails, whether this message's commit or the queue
    # manager's: either way this message is not acknowledged ...
    failing = send(srv, "failing@storage.test")
    assert failing != 250
    assert failing in (451, 421, 0), failing
    # ... nor is any later one, although the log's next sync would succeed.
    assert not wal.armed, "the shim reports the failure once"
    later = send(srv, "later@storage.test")
    assert later != 250

    assert srv.proc is not None
    status = srv.proc.wait(timeout=EXIT_TIMEOUT_SECONDS)
    assert status == EX_IOERR, srv.stderr()[-3000:]
    log = srv.stderr()
    assert "queue.store_failed" in log and "queue.db-wal" in log
    assert "Traceback" not in log, log[-3000:]
    assert any(line.startswith("fdatasync ") for line in wal.failures())

    again = srv.restart()  # a healthy disk: no shim
    try:
        wait_until(
            lambda: all(delivered_ids(again)[mid] >= 1 for mid in acknowledged),
            DELIVERY_TIMEOUT_SECONDS,
            "the acknowledged messages after the restart",
        )
        wait_until(lambda: not again.spooled(), DELIVERY_TIMEOUT_SECONDS, "an empty queue")
        found = delivered_ids(again)
        assert all(found[mid] == 1 for mid in acknowledged), found
        # The unacknowledged ones may have reached the disk (their client would retry:
        # at most one duplicate); nothing else may appear.
        assert set(found) <= {*acknowledged, "failing@storage.test", "later@storage.test"}
        assert found["failing@storage.test"] <= 1 and found["later@storage.test"] <= 1
    finally:
        again.stop()


def test_copies_whose_maildir_flush_failed_are_stored_again_once_healthy(
    subprocess_factory: Callable[..., SubprocessServer],
    traversable_dir: Path,
    failsync_library: Path,
    injections: list[FailSync],
) -> None:
    # subprocess_factory's first server lives in traversable_dir / "server1".
    mail_root = traversable_dir / "server1" / "mail"
    disk = FailSync(failsync_library, match=str(mail_root), calls="fsync,fdatasync,syncfs")
    injections.append(disk)
    disk.arm()
    srv = subprocess_factory(
        '[queue]\nfirst_retry = "1h"\nscan_interval = "100ms"\n', env=disk.env()
    )
    assert srv.maildir().parent.parent == mail_root
    ids = [f"flush{n}@storage.test" for n in range(8)]

    async def send_all() -> list[int]:  # concurrently: the queue batches them
        return list(await asyncio.gather(*(asyncio.to_thread(send, srv, mid) for mid in ids)))

    assert asyncio.run(send_all()) == [250] * len(ids)

    def recipients() -> list[dict[str, object]]:
        return [r for m in json.loads(queue_cli(srv, "list", "--json")) for r in m["recipients"]]

    def all_deferred(attempts: int) -> bool:
        found = recipients()
        return len(found) == len(ids) and all(
            r["state"] == "deferred" and r["attempts"] == attempts for r in found
        )

    wait_until(lambda: all_deferred(1), DELIVERY_TIMEOUT_SECONDS, "every recipient deferred")
    # Retried while the disk still fails: the manager claims all eight at once, so the
    # Maildir agent stores them as one batch and leaves the flush (one syncfs) to the
    # queue; that flush fails, and the copies already linked into new/ must go.
    tried = len(disk.failures())
    queue_cli(srv, "retry", "--all")
    wait_until(lambda: all_deferred(2), DELIVERY_TIMEOUT_SECONDS, "the second attempts")
    assert [f.split()[0] for f in disk.failures()[tried:]] == ["syncfs"]
    new = srv.maildir() / "new"
    assert sorted(new.iterdir()) == []  # no copy of unknown health is left
    for rcpt in recipients():
        assert str(rcpt["last_reply"]).startswith("451 4.3.0"), rcpt
        assert "Input/output error" in str(rcpt["last_reply"]), rcpt

    disk.disarm()
    queue_cli(srv, "retry", "--all")
    wait_until(lambda: not srv.spooled(), DELIVERY_TIMEOUT_SECONDS, "the retried deliveries")
    found = delivered_ids(srv)
    assert found == collections.Counter(dict.fromkeys(ids, 1)), found
    contents = [path.read_bytes() for path in new.iterdir()]
    for mid in ids:  # each stored afresh, whole: Return-Path, Received, then what was sent
        (copy,) = [c for c in contents if f"<{mid}>".encode() in c]
        assert copy.startswith(b"Return-Path: <alice@example.org>\r\n"), copy[:200]
        assert copy.endswith(body(mid)), mid
    assert srv.stop() == 0


def test_a_failed_body_file_sync_refuses_that_message_only(
    subprocess_factory: Callable[..., SubprocessServer],
    traversable_dir: Path,
    failsync_library: Path,
    injections: list[FailSync],
) -> None:
    # A body over 256 KiB is spilled to queue/bodies/ and fsync'd before the commit. Its
    # failed fsync concerns that file alone: the message gets 451 and leaves nothing
    # behind, the queue's log is untouched, and the server goes on.
    bodies = traversable_dir / "server1" / "queue" / "bodies"
    disk = FailSync(failsync_library, match=str(bodies), calls="fsync,fdatasync")
    injections.append(disk)
    srv = subprocess_factory(env=disk.env())
    filler = b"Forty-two octets of filler, line after line.\r\n" * 7000  # ~330 KiB

    def send_large(message_id: str) -> int:
        try:
            with smtplib.SMTP(srv.host, srv.ports["mx"], timeout=30) as client:
                client.sendmail("alice@example.org", ["test@localhost"], body(message_id) + filler)
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code
        return 250

    disk.arm()
    assert send_large("large-refused@storage.test") == 451
    assert any(line.startswith("fsync ") for line in disk.failures())
    assert sorted(bodies.iterdir()) == []  # no spilled file left behind
    disk.disarm()
    assert send_large("large-accepted@storage.test") == 250
    wait_until(lambda: not srv.spooled(), DELIVERY_TIMEOUT_SECONDS, "the delivery")
    assert delivered_ids(srv) == collections.Counter({"large-accepted@storage.test": 1})
    (copy,) = (srv.maildir() / "new").iterdir()
    assert copy.read_bytes().endswith(body("large-accepted@storage.test") + filler)
    assert "queue.store_failed" not in srv.stderr()
    assert srv.stop() == 0


def run_postguard(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postguard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.mark.parametrize("command", [["serve"], ["queue", "list"]])
def test_a_corrupt_queue_database_is_named_not_a_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "queue").mkdir()
    (tmp_path / "queue" / "queue.db").write_bytes(b"not a database, just bytes\n" * 100)
    done = run_postguard(*command, "--data-dir", str(tmp_path))
    assert done.returncode == EX_IOERR, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"postguard: queue database {tmp_path / 'queue' / 'queue.db'}: file is not a database"
        " (move it aside to start with an empty queue, or restore it from a backup)"
    )


def test_a_queue_written_by_a_newer_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "queue").mkdir()
    db = tmp_path / "queue" / "queue.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    done = run_postguard("queue", "stats", "--data-dir", str(tmp_path))
    assert done.returncode == EX_IOERR, done.stderr
    assert "written by a newer postguard (schema 99" in done.stderr
    with sqlite3.connect(db) as conn:  # left as it was, not "migrated" down
        assert conn.execute("PRAGMA user_version").fetchone() == (99,)


def test_the_queue_cli_reports_a_failed_write(
    subprocess_factory: Callable[..., SubprocessServer],
    failsync_library: Path,
    injections: list[FailSync],
) -> None:
    srv = subprocess_factory()
    assert send(srv, "cli@storage.test") == 250
    wal = FailSync(failsync_library, match="queue.db-wal", calls="fdatasync,fsync")
    injections.append(wal)
    wal.arm()
    assert srv.config_path is not None
    done = run_postguard("queue", "retry", "--all", "--config", str(srv.config_path), env=wal.env())
    assert done.returncode == EX_IOERR, done.stderr
    assert "Traceback" not in done.stderr
    assert "syncing queue.db-wal failed: Input/output error" in done.stderr


def test_a_data_directory_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n")
    done = run_postguard("serve", "--data-dir", str(blocker / "data"))
    assert done.returncode == 73, done.stderr  # EX_CANTCREAT
    assert done.stderr.strip() == f"postguard: {blocker / 'data'}: Not a directory"


@pytest.fixture
def real_disk(traversable_dir: Path) -> Iterator[FailingDisk]:
    yield from failing_disk(traversable_dir / "disk")


def test_a_disk_that_really_loses_writes_stops_the_server_and_loses_nothing(
    real_disk: FailingDisk,
) -> None:
    # No shim: the data directory is on ext4 over a loop device whose backing tmpfs is
    # then filled, so the kernel itself fails the writeback of new blocks. Before the
    # restart the file system is mounted again, which drops its page cache: what the
    # restarted server finds is what reached the image, as after a power cut.
    data_dir = real_disk.mount  # the server's log beside it, off the failing disk
    config = '[queue]\nmin_free_disk = "1MiB"\nscan_interval = "100ms"\n'
    srv = start_subprocess(data_dir, config)
    os.sync()  # its configuration file too: only what is written from now on may be lost
    acknowledged = ["before@real.test"]
    unacknowledged: list[str] = []
    try:
        assert send(srv, acknowledged[0]) == 250
        wait_until(lambda: not srv.spooled(), DELIVERY_TIMEOUT_SECONDS, "the first delivery")

        real_disk.fail_writes()
        # Writes that land on blocks the image already held still succeed, so a few
        # messages may be acknowledged (truly durable) before one hits a lost block.
        for n in range(LOST_WRITE_ATTEMPTS):
            message_id = f"during{n}@real.test"
            reply = send(srv, message_id)
            if reply != 250:
                assert reply in (451, 421, 0), reply
                unacknowledged.append(message_id)
                break
            acknowledged.append(message_id)
        assert unacknowledged, f"{LOST_WRITE_ATTEMPTS} messages and no write was lost"
        assert srv.proc is not None
        status = srv.proc.wait(timeout=EXIT_TIMEOUT_SECONDS)
        log = srv.stderr()
        assert status == EX_IOERR, log[-3000:]
        assert "queue.store_failed" in log
        assert "Traceback" not in log, log[-3000:]
    finally:
        srv.stop()

    real_disk.remount()
    again = start_subprocess(data_dir, config)
    try:
        assert send(again, "after@real.test") == 250
        acknowledged.append("after@real.test")
        wait_until(lambda: not again.spooled(), DELIVERY_TIMEOUT_SECONDS, "an empty queue")
        found = delivered_ids(again)
        assert all(found[mid] == 1 for mid in acknowledged), (acknowledged, found)
        assert set(found) <= {*acknowledged, *unacknowledged}, found
        assert all(found[mid] <= 1 for mid in unacknowledged), found
    finally:
        again.stop()
