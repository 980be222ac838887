"""Durability: "250 means on stable storage", across SIGKILL, power cuts, full disks and
I/O errors.

What this module proves, with real processes, real TLS and real file systems:

* **Order of operations.** Under ``strace``, for every message answered 250, the spool
  file was fsync'd, then renamed from ``<id>.tmp`` to ``<id>.msg``, then a directory fsync
  *started after that rename* completed, and only then was the 250 written to the socket.
  (A SIGKILL keeps the page cache, so the crash test alone cannot tell a missing fsync from
  a present one; the syscall trace can.)
* **Crash recovery.** Eight concurrent STARTTLS senders load a ``postguard serve``
  subprocess; once enough messages were acknowledged it is killed with SIGKILL mid-load and
  restarted on the same data directory and configuration file, three times. Every
  Message-ID that got a 250 must end up in the Maildir exactly once. The queue is
  at-least-once (a crash between storing a copy and recording it delivers the recipient
  again, see ``queue/manager.py``), but Maildir delivery is idempotent: a copy's name is
  derived from its queue ID and linked into ``new/`` (``delivery/maildir.py``), so the
  second attempt finds the first copy. A message that is missing, one delivered twice,
  or one that nobody sent fails the test, and so does a quarantined queue file.
* **Power cuts.** The same load on a data directory that is a journaled ext4 on a loop
  device; after each kill only what had reached the device is kept (the image copied
  as it was, mounted in place of the file system, which drops the page cache), three
  times. Delivering into the Maildir, every acknowledged Message-ID must be there
  exactly once; with every delivery refused, every acknowledged queue ID must still be
  in the queue (so only the queue log's own flush protects it). Checked to fail without
  the log's fdatasync and without the Maildir flushes.
* **Full disk and I/O errors.** A 512 KiB tmpfs mounted as the server's ``queue``
  directory (root only: CI runs as root; elsewhere the test skips and says why) is filled:
  DATA gets 452 4.3.1, for a message kept in memory and for one streamed to disk, nothing is
  delivered and no spool file is left; once space is freed the next message on the same
  connection gets 250 and is delivered. Remounted read-only (EROFS, a non-ENOSPC storage
  error), DATA gets 451 4.3.0.

Waiting is always a bounded poll on a condition (acknowledgement counts, Maildir contents),
never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.dialogue import Dialogue
from helpers.failing_disk import PowerCutDisk, power_cut_disk
from helpers.lmtp_sink import LmtpSink
from helpers.servers import ServerInfo, SubprocessServer, start_in_process, start_subprocess
from helpers.tmpfs import Tmpfs, mount_tmpfs

SENDERS = 8
MESSAGES_PER_CONNECTION = 5
ACKS_BEFORE_KILL = 40
KILL_ROUNDS = 3
POWER_CUT_ROUNDS = 3
LARGE_EVERY = 7  # each sender's 1st, 8th, ... message is large enough for a body file
LARGE_BODY_OCTETS = 300 * 1024  # spilled to queue/bodies/ (INLINE_BODY_MAX_OCTETS)
ACKS_TIMEOUT_SECONDS = 90.0
DELIVERY_TIMEOUT_SECONDS = 90.0
SENDERS_EXIT_TIMEOUT_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.05
MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.IGNORECASE | re.MULTILINE)
QUEUED_AS = re.compile(r"queued as ([0-9A-Z]{16})")


# --- helpers --------------------------------------------------------------------------


def message_body(message_id: str, size: int = 0) -> bytes:
    head = f"Message-ID: <{message_id}>\r\nSubject: durability {message_id}\r\n\r\n".encode()
    line = b"All work and no play makes Jack a dull boy, all work and no play.\r\n"
    return head + line * max(1, size // len(line))


def delivered_ids(server: ServerInfo, mailbox: str = "test@localhost") -> collections.Counter[str]:
    """Message-IDs of every message in the mailbox (new/ and cur/), with multiplicity."""
    found: collections.Counter[str] = collections.Counter()
    for sub in ("new", "cur"):
        folder = server.maildir(mailbox) / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            header = path.read_bytes().split(b"\r\n\r\n", 1)[0]
            found.update(m.decode() for m in MESSAGE_ID.findall(header))
    return found


async def wait_until_delivered(
    server: ServerInfo, wanted: set[str], timeout: float = DELIVERY_TIMEOUT_SECONDS
) -> collections.Counter[str]:
    """Bounded poll until every Message-ID in ``wanted`` is in the Maildir."""
    deadline = time.monotonic() + timeout
    while True:
        found = delivered_ids(server)
        if wanted <= found.keys() or time.monotonic() > deadline:
            return found
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


def body_files(data_dir: Path) -> list[str]:
    bodies = data_dir / "queue" / "bodies"
    return sorted(p.name for p in bodies.iterdir()) if bodies.is_dir() else []


async def wait_until_spool_is_empty(server: ServerInfo, timeout: float = 30.0) -> list[str]:
    """Wait until the queue holds nothing (no message rows, no body files)."""
    deadline = time.monotonic() + timeout
    while True:
        left = server.spooled()
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


@contextlib.contextmanager
def postguard_records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """caplog's records of the "postguard" logger, even if propagation was turned off."""
    logger = logging.getLogger("postguard")
    saved = logger.propagate, logger.level
    logger.addHandler(caplog.handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield caplog.records
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate, logger.level = saved


@pytest.fixture
def queue_tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 512 KiB tmpfs mounted at ``<data_dir>/queue`` of an in-process server's data dir."""
    yield from mount_tmpfs(tmp_path / "server" / "queue")


async def open_session(server: ServerInfo, *, tls: bool = True) -> Dialogue:
    dlg = await Dialogue.connect(server.ports["mx"])
    await dlg.expect("220")
    await dlg.cmd("EHLO client.test", expect="250")
    if tls:
        await dlg.starttls(server.client_tls())
        await dlg.cmd("EHLO client.test", expect="250")
    return dlg


# --- crash recovery -------------------------------------------------------------------------


@dataclass
class LoadRound:
    """Senders that load one server until it is killed; records what was acknowledged."""

    server: SubprocessServer
    round_no: int
    acked: list[str] = field(default_factory=list)
    queued: dict[str, str] = field(default_factory=dict)  # Message-ID -> queue ID, from the 250
    sizes: dict[str, int] = field(default_factory=dict)  # Message-ID -> message_body size
    in_doubt: set[str] = field(default_factory=set)  # DATA sent, no reply seen
    refused: list[str] = field(default_factory=list)  # non-250 replies before the kill
    errors: list[str] = field(default_factory=list)  # exceptions before the kill
    killed: bool = False
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    async def sender(self, sender_no: int) -> None:
        tls = self.server.client_tls()
        counter = 0
        while not self.killed:
            dlg: Dialogue | None = None
            try:
                dlg = await Dialogue.connect(self.server.ports["mx"])
                await dlg.expect("220")
                await dlg.cmd("EHLO client.test", expect="250")
                await dlg.starttls(tls)
                await dlg.cmd("EHLO client.test", expect="250")
                for _ in range(MESSAGES_PER_CONNECTION):
                    counter += 1
                    message_id = f"r{self.round_no}.s{sender_no}.n{counter}@durability.test"
                    size = LARGE_BODY_OCTETS if counter % LARGE_EVERY == 1 else 2048
                    self.in_doubt.add(message_id)
                    self.sizes[message_id] = size
                    reply = await dlg.send_message(message_body(message_id, size))
                    if reply[-1].startswith("250 "):
                        self.in_doubt.discard(message_id)
                        self.acked.append(message_id)
                        self.queued[message_id] = "".join(QUEUED_AS.findall(reply[-1]))
                        if len(self.acked) >= ACKS_BEFORE_KILL:
                            self.enough.set()
                    elif not self.killed:
                        self.refused.append(f"{message_id}: {reply!r}")
                        return
                await dlg.cmd("QUIT", expect="221")
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, AssertionError) as exc:
                # TimeoutError and ConnectionError are OSErrors; after SIGKILL all are expected
                if not self.killed:
                    self.errors.append(f"sender {sender_no}: {exc!r}")
                return
            finally:
                if dlg is not None:
                    dlg.writer.close()

    async def run_until_killed(self) -> None:
        tasks = [asyncio.create_task(self.sender(i)) for i in range(SENDERS)]
        try:
            await asyncio.wait(
                [asyncio.create_task(self.enough.wait()), *tasks],
                timeout=ACKS_TIMEOUT_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert self.enough.is_set(), (
                f"round {self.round_no}: only {len(self.acked)} acknowledgements; "
                f"errors={self.errors} refused={self.refused}\n{self.server.stderr()[-3000:]}"
            )
        finally:
            self.killed = True
            await asyncio.to_thread(self.server.kill9)  # senders keep running meanwhile
            await asyncio.wait_for(
                asyncio.gather(*tasks, return_exceptions=True), SENDERS_EXIT_TIMEOUT_SECONDS
            )


def recovered_counts(server: SubprocessServer) -> list[int]:
    """``recovered=N`` of every start-up logged to this data directory's stderr file."""
    return [int(n) for n in re.findall(r"server\.started.*recovered=(\d+)", server.stderr())]


async def test_every_acknowledged_message_survives_sigkill_and_restart(
    traversable_dir: Path, record_property: pytest.RecordProperty
) -> None:
    data_dir = traversable_dir / "crash"
    server = start_subprocess(data_dir)
    acked: list[str] = []
    in_doubt: set[str] = set()
    report: list[str] = []
    try:
        for round_no in range(1, KILL_ROUNDS + 1):
            load = LoadRound(server, round_no)
            await load.run_until_killed()
            assert not load.errors, load.errors
            assert not load.refused, load.refused
            acked += load.acked
            in_doubt |= load.in_doubt
            assert len(set(acked)) == len(acked)

            server = await asyncio.to_thread(server.restart)  # same data dir and config file
            found = await wait_until_delivered(server, set(acked))
            missing = sorted(set(acked) - found.keys())
            assert not missing, (
                f"after kill {round_no}: {len(missing)} acknowledged messages lost: {missing[:10]}"
            )
            report.append(
                f"kill {round_no}: {len(load.acked)} acknowledged, {len(load.in_doubt)} in doubt, "
                f"recovered at restart {recovered_counts(server)[-1]}"
            )

        left = await wait_until_spool_is_empty(server)
        assert not left, f"spool not drained after delivery: {left}"
        found = delivered_ids(server)
        assert set(acked) <= found.keys()
        unknown = sorted(found.keys() - set(acked) - in_doubt)
        assert not unknown, f"delivered messages nobody sent: {unknown[:10]}"
        quarantine = data_dir / "queue" / "quarantine"
        assert not quarantine.exists() or not list(quarantine.iterdir()), "corrupt queue file"
        duplicates = {mid: n for mid, n in found.items() if n > 1}
        delivered_in_doubt = len(in_doubt & found.keys())
        report.append(
            f"total: {len(acked)} acknowledged, all delivered exactly once; "
            f"{delivered_in_doubt}/{len(in_doubt)} unacknowledged in-flight messages "
            "delivered too"
        )
        print("\n".join(report))
        record_property("durability_report", " | ".join(report))
        record_property("duplicates", len(duplicates))
        assert not duplicates, f"delivered more than once: {sorted(duplicates.items())[:10]}"
        assert server.stop() == 0
    finally:
        server.stop()


@pytest.fixture
def power_disk(traversable_dir: Path) -> Iterator[PowerCutDisk]:
    yield from power_cut_disk(traversable_dir / "disk")


def queue_command(server: SubprocessServer, *args: str) -> str:
    """Run ``postguard queue ARGS`` against the server's configuration; its output."""
    assert server.config_path is not None
    command = ["queue", *args, "--config", str(server.config_path)]
    done = subprocess.run(
        [sys.executable, "-m", "postguard", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def queued_ids(server: SubprocessServer) -> set[str]:
    """Queue IDs in the server's queue, read with ``postguard queue list --json``."""
    return {m["queue_id"] for m in json.loads(queue_command(server, "list", "--json"))}


# "held": every delivery is refused (LMTP to a closed port), so acknowledged mail must
# be found in the queue itself after each cut: only the queue log's own flush protects
# it, with no Maildir flush (whose syncfs covers the log too) to hide a missing one.
HELD_TOML = """
[delivery]
default = "lmtp"
[delivery.lmtp]
address = "127.0.0.1:{port}"
tls = "none"
[queue]
first_retry = "1h"
"""


@pytest.mark.parametrize(
    ("delivery", "workers"),
    [("maildir", 1), ("held", 1), ("maildir", 2)],
    ids=["maildir", "held", "maildir-2-workers"],
)
async def test_every_acknowledged_message_survives_a_power_cut(
    power_disk: PowerCutDisk, record_property: pytest.RecordProperty, delivery: str, workers: int
) -> None:
    """SIGKILL keeps the page cache; a power cut does not. Here the data directory is a
    journaled ext4 on a loop device, and after the kill only what had reached the
    device is kept (``helpers.failing_disk.power_cut_disk``): a missing fsync of a
    file, a directory or the queue's log loses acknowledged mail in this test, not in
    the SIGKILL one."""
    closed = socket.socket()  # bound, never listening: connections to it are refused
    closed.bind(("127.0.0.1", 0))
    extra = HELD_TOML.format(port=closed.getsockname()[1]) if delivery == "held" else ""
    data_dir = power_disk.mount  # config and data on the disk; the server's log beside it
    server = start_subprocess(data_dir, extra, server_toml=f"workers = {workers}")
    os.sync()  # the configuration file too: the cuts come later, under load
    acked: dict[str, str] = {}
    sizes: dict[str, int] = {}
    in_doubt: set[str] = set()
    report: list[str] = []
    sinks: list[LmtpSink] = []
    try:
        for round_no in range(1, POWER_CUT_ROUNDS + 1):
            load = LoadRound(server, round_no)
            await load.run_until_killed()
            assert not load.errors, load.errors
            assert not load.refused, load.refused
            acked |= load.queued
            sizes |= load.sizes
            in_doubt |= load.in_doubt
            await asyncio.to_thread(power_disk.power_cut)

            server = await asyncio.to_thread(server.restart)
            if delivery == "held":
                missing = sorted(set(acked.values()) - await asyncio.to_thread(queued_ids, server))
            else:
                found = await wait_until_delivered(server, set(acked))
                missing = sorted(set(acked) - found.keys())
            assert not missing, (
                f"after power cut {round_no}: {len(missing)} acknowledged messages lost: "
                f"{missing[:10]}"
            )
            report.append(
                f"power cut {round_no}: {len(load.acked)} acknowledged, "
                f"{len(load.in_doubt)} in doubt, recovered {recovered_counts(server)[-1]}"
            )
        if delivery == "held":
            # Now the LMTP port answers: everything queued is delivered, and each
            # acknowledged message must arrive once, whole (body files included).
            sinks.append(LmtpSink(listening=closed))
            await asyncio.to_thread(queue_command, server, "retry", "--all")
            left = await wait_until_spool_is_empty(server)
            assert not left, f"queue not drained into LMTP: {left}"
            arrived = collections.Counter(sinks[0].stored)
            assert all(arrived[mid] == 1 for mid in acked), sorted(set(acked) - set(arrived))
            for content in sinks[0].contents:
                [mid] = (m.decode() for m in MESSAGE_ID.findall(content))
                if mid in acked:
                    assert content.endswith(message_body(mid, sizes[mid])), mid
        else:
            left = await wait_until_spool_is_empty(server)
            assert not left, f"spool not drained after delivery: {left}"
            found = delivered_ids(server)
            unknown = sorted(found.keys() - set(acked) - in_doubt)
            assert not unknown, f"delivered messages nobody sent: {unknown[:10]}"
            duplicates = {mid: n for mid, n in found.items() if n > 1}
            assert not duplicates, f"delivered more than once: {sorted(duplicates.items())[:10]}"
        record_property("power_cut_report", " | ".join(report))
        assert server.stop() == 0
    finally:
        server.stop()
        for sink in sinks:
            sink.close()
        closed.close()


# --- the order of syscalls behind a 250 -------------------------------------------------------


@dataclass
class Syscall:
    name: str
    args: str
    start: int  # line index of the call's entry in the trace
    end: int  # line index of its completion
    result: str


def parse_strace(text: str) -> list[Syscall]:
    """Parse ``strace -f -y`` output, joining ``<unfinished ...>``/``resumed`` pairs."""
    calls: list[Syscall] = []
    pending: dict[str, tuple[str, str, int]] = {}
    complete = re.compile(r"^(\w+)\((.*)\)\s+=\s+(.*)$")
    unfinished = re.compile(r"^(\w+)\((.*) <unfinished \.\.\.>$")
    resumed = re.compile(r"^<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(.*)$")
    for index, raw in enumerate(text.splitlines()):
        tid, _, line = raw.partition(" ")
        line = line.strip()
        if m := unfinished.match(line):
            pending[tid] = (m.group(1), m.group(2), index)
        elif m := resumed.match(line):
            name, args, start = pending.pop(tid, (m.group(1), "", index))
            calls.append(Syscall(name, args + m.group(2), start, index, m.group(3)))
        elif m := complete.match(line):
            calls.append(Syscall(m.group(1), m.group(2), index, index, m.group(3)))
    return calls


async def test_250_is_sent_only_after_the_queue_log_is_fsynced(
    traversable_dir: Path, tmp_path: Path
) -> None:
    """The acceptance contract at the syscall level, for the SQLite store.

    For every message: after the server read the message's content from the socket, it
    wrote the queue's write-ahead log (queue.db-wal) and flushed it, and only after that
    flush returned did it write the 250 reply. (SIGKILL keeps the page cache, so the crash
    test alone cannot tell whether the fsync happened; strace can.) The flush is the log's
    fdatasync, or a syncfs(2) of the log's file system when a Maildir delivery asked for
    one in the same sync round (the store then skips the redundant fdatasync).
    """
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("SKIPPED LOUDLY: strace is not installed (apt-get install strace)")
    data_dir = traversable_dir / "traced"
    server = start_subprocess(data_dir, '[log]\nlevel = "warning"\n')
    trace_path, trace_err = tmp_path / "trace.txt", tmp_path / "strace.err"
    syscalls = "read,recvfrom,fsync,fdatasync,syncfs,write,pwrite64,writev,sendto,sendmsg"
    with open(trace_err, "w") as err:
        options = ["-f", "-y", "-s", "300", "-e", f"trace={syscalls}", "-o", str(trace_path)]
        tracer = subprocess.Popen([strace, *options, "-p", str(server.pid)], stderr=err)
    sent: dict[str, str] = {}  # Message-ID -> queue id
    try:
        deadline = time.monotonic() + 20
        while "attached" not in trace_err.read_text() and time.monotonic() < deadline:
            assert tracer.poll() is None, trace_err.read_text()
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
        assert "attached" in trace_err.read_text(), "strace did not attach"

        async def send(sender_no: int) -> None:
            dlg = await open_session(server, tls=False)  # plaintext, so the data is readable
            for n in range(4):
                message_id = f"t{sender_no}.{n}@trace.test"
                reply = await dlg.send_message(message_body(message_id))
                assert reply[-1].startswith("250 2.0.0"), reply
                [sent[message_id]] = QUEUED_AS.findall(reply[-1])
            await dlg.cmd("QUIT", expect="221")
            await dlg.close()

        await asyncio.gather(*(send(i) for i in range(3)))
    finally:
        tracer.send_signal(signal.SIGINT)  # detaches; the server keeps running
        tracer.wait(timeout=20)
        server.stop()

    calls = parse_strace(trace_path.read_text())
    wal = os.path.realpath(data_dir / "queue" / "queue.db-wal")
    wal_writes = [c for c in calls if c.name in ("write", "pwrite64") and f"<{wal}>" in c.args]
    wal_device = os.stat(data_dir / "queue").st_dev  # the log itself is gone after stop

    def flushes_the_log(call: Syscall) -> bool:
        if not call.result.startswith("0"):
            return False
        if call.name in ("fsync", "fdatasync"):
            return f"<{wal}>" in call.args
        if call.name == "syncfs":  # syncfs(7</…/Maildir/new>): flushes that whole file system
            [path] = re.findall(r"<([^>]*)>", call.args) or [""]
            return bool(path) and os.path.exists(path) and os.stat(path).st_dev == wal_device
        return False

    wal_syncs = [c for c in calls if flushes_the_log(c)]
    assert len(sent) == 12
    for message_id, qid in sent.items():
        received = [c for c in calls if c.name in ("read", "recvfrom") and message_id in c.args]
        reply = [c for c in calls if f"queued as {qid}" in c.args]
        assert received, f"no read of {message_id} in the trace"
        assert reply, f"no 250 for {qid} in the trace"
        got, answered = received[0].end, reply[0].start
        covering = [
            sync
            for sync in wal_syncs
            if got < sync.start
            and sync.end < answered
            and any(got < w.start and w.end < sync.start for w in wal_writes)
        ]
        assert covering, f"{qid}: 250 sent without a WAL write and fsync after its content"


# --- full disk and I/O errors ---------------------------------------------------------------


async def test_full_queue_file_system_is_452_4_3_1_and_the_next_message_after_freeing_is_250(
    tmp_path: Path, queue_tmpfs: Tmpfs, caplog: pytest.LogCaptureFixture
) -> None:
    # min_free_disk off: this test is about what happens when the disk really is full.
    server = await start_in_process(tmp_path / "server", '[queue]\nmin_free_disk = "0B"\n')
    try:
        dlg = await open_session(server)
        queue_tmpfs.fill()
        with postguard_records(caplog) as records:
            small = await dlg.send_message(message_body("small@full.test", 2048))
            large = await dlg.send_message(message_body("large@full.test", 300 * 1024))
        assert small[-1].startswith("452 4.3.1"), small
        assert large[-1].startswith("452 4.3.1"), large
        failures = [r for r in records if r.getMessage() == "queue.commit_failed"]
        assert [r.levelno for r in failures] == [logging.ERROR] * 2
        assert body_files(server.data_dir) == [], "a failed commit left a body file"
        assert server.spooled() == []

        queue_tmpfs.free()
        ok = await dlg.send_message(message_body("after@full.test", 2048))
        assert ok[-1].startswith("250 2.0.0"), ok
        await dlg.cmd("QUIT", expect="221")
        await dlg.close()

        found = await wait_until_delivered(server, {"after@full.test"})
        assert found == collections.Counter({"after@full.test": 1})
        assert await wait_until_spool_is_empty(server) == []
    finally:
        await server.stop()


async def test_io_error_storing_the_content_is_451_4_3_0_then_250_once_fixed(
    tmp_path: Path,
) -> None:
    """An I/O error other than a full disk (here ENOTDIR: the body directory was replaced
    by a file) gives 451 4.3.0, never 250; once repaired, the next message gets 250."""
    server = await start_in_process(tmp_path / "server")
    bodies = server.data_dir / "queue" / "bodies"
    try:
        dlg = await open_session(server)
        bodies.rmdir()
        bodies.write_bytes(b"not a directory")
        try:
            refused = await dlg.send_message(message_body("io@io.test", 300 * 1024))
        finally:
            bodies.unlink()
            bodies.mkdir(mode=0o700)
        assert refused[-1].startswith("451 4.3.0"), refused
        ok = await dlg.send_message(message_body("fixed@io.test", 300 * 1024))
        assert ok[-1].startswith("250 2.0.0"), ok
        await dlg.cmd("QUIT", expect="221")
        await dlg.close()
        found = await wait_until_delivered(server, {"fixed@io.test"})
        assert found == collections.Counter({"fixed@io.test": 1})
    finally:
        await server.stop()


async def test_below_min_free_disk_mail_is_refused_with_452_before_the_content(
    tmp_path: Path, queue_tmpfs: Tmpfs
) -> None:
    """Postfix's queue_minfree: with less than min_free_disk free, MAIL gets 452 4.3.1."""
    server = await start_in_process(tmp_path / "server", '[queue]\nmin_free_disk = "256KiB"\n')
    try:
        dlg = await open_session(server)
        await dlg.cmd("MAIL FROM:<a@example.org>", expect="250")
        await dlg.cmd("RSET", expect="250")
        queue_tmpfs.fill()
        await asyncio.sleep(1.1)  # the free-space reading is cached for one second
        await dlg.cmd("MAIL FROM:<a@example.org>", expect="452 4.3.1")
        await dlg.cmd("QUIT", expect="221")
        await dlg.close()
    finally:
        await server.stop()
