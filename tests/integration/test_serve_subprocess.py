"""`postguard serve` as a real process: start-up banner, delivery, SIGTERM, privilege drop,
worker processes (shared sockets, dying with the parent, a dead worker's mail recovered and
the worker replaced)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pwd
import re
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from helpers.dialogue import Dialogue
from helpers.lmtp_sink import LmtpSink


async def test_serve_subprocess_accepts_and_delivers(subprocess_factory) -> None:
    srv = subprocess_factory()
    assert set(srv.ports) == {"mx", "submission", "submissions"}
    dlg = await Dialogue.connect(srv.ports["mx"])
    await dlg.expect("220")
    await dlg.cmd("EHLO client.test", expect="250")
    await dlg.starttls(srv.client_tls())
    await dlg.cmd("EHLO client.test", expect="250")
    reply = await dlg.send_message(b"Subject: sub\r\n\r\nx\r\n")
    assert reply[-1].startswith("250 2.0.0 OK: queued as ")
    await dlg.cmd("QUIT", expect="221")
    messages = await srv.wait_for_messages(1)
    assert len(messages) == 1
    assert srv.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to test the privilege drop")
def test_serve_started_as_root_runs_as_nobody(subprocess_factory) -> None:
    srv = subprocess_factory()
    status = Path(f"/proc/{srv.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    nobody = pwd.getpwnam("nobody").pw_uid
    assert uid_line.split()[1:] == [str(nobody)] * 4


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _spawner_and_workers(pid: int) -> tuple[int, list[int]]:
    """The server's spawner (its only child) and the workers the spawner forked."""
    [spawner] = _children(pid)
    return spawner, _children(spawner)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether ``pid`` has exited (or is a zombie) within ``timeout`` (bounded poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status")
        try:
            if "zombie" in status.read_text():
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


async def test_two_workers_share_the_sockets_and_deliver_every_message_once(
    subprocess_factory,
) -> None:
    srv = subprocess_factory(server_toml="workers = 2")
    spawner, [worker] = _spawner_and_workers(srv.pid)

    async def send(n: int) -> None:
        dlg = await Dialogue.connect(srv.ports["mx"])
        await dlg.expect("220")
        await dlg.cmd("EHLO client.test", expect="250")
        for i in range(5):
            body = f"Message-ID: <w{n}.{i}@workers.test>\r\n\r\nx\r\n".encode()
            reply = await dlg.send_message(body)
            assert reply[-1].startswith("250 2.0.0"), reply
        await dlg.cmd("QUIT", expect="221")
        await dlg.close()

    await asyncio.gather(*(send(n) for n in range(8)))
    messages = await srv.wait_for_messages(40)
    ids = [m.split(b"<w", 1)[1].split(b">", 1)[0] for m in messages]
    assert len(ids) == len(set(ids)) == 40
    assert srv.stop() == 0
    assert not Path(f"/proc/{worker}").exists(), "the worker outlived a graceful stop"
    assert not Path(f"/proc/{spawner}").exists(), "the spawner outlived a graceful stop"
    assert "server.worker_died" not in srv.stderr()  # told to stop: not a death


def test_workers_die_with_a_killed_parent(subprocess_factory) -> None:
    srv = subprocess_factory(server_toml="workers = 3")
    spawner, workers = _spawner_and_workers(srv.pid)
    assert len(workers) == 2
    srv.kill9()
    assert _gone(spawner), "the spawner survived kill -9 of the server"
    for worker in workers:
        assert _gone(worker), "a worker survived kill -9 of the server"


def test_the_spawner_ignores_a_signal_sent_to_every_process(subprocess_factory) -> None:
    # A service manager may send SIGTERM to the whole process group: the workers must
    # be able to finish their sessions, so their parent (the spawner) must not go first.
    srv = subprocess_factory(server_toml="workers = 2")
    spawner, [worker] = _spawner_and_workers(srv.pid)
    os.kill(spawner, signal.SIGTERM)
    os.kill(spawner, signal.SIGHUP)
    time.sleep(0.3)
    assert not _gone(spawner, timeout=0.1) and not _gone(worker, timeout=0.1)
    for pid in (worker, spawner, srv.pid):
        os.kill(pid, signal.SIGTERM)
    assert srv.proc is not None and srv.proc.wait(timeout=20) == 0
    assert _gone(spawner) and _gone(worker)
    assert "server.worker_died" not in srv.stderr()


def _leases(data_dir: Path) -> dict[str, str | None]:
    """Queue ID → lease owner of every recipient still queued (read-only, like the CLI)."""
    db = data_dir / "queue" / "queue.db"
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT message_id, lease_owner FROM recipients"))


async def test_a_dead_workers_leased_mail_goes_to_the_others(subprocess_factory) -> None:
    lmtp = LmtpSink(held=True)
    try:
        srv = subprocess_factory(
            server_toml="workers = 2",
            extra_toml=(
                '[delivery]\ndefault = "lmtp"\n\n'
                f'[delivery.lmtp]\naddress = "127.0.0.1:{lmtp.port}"\ntls = "none"\n'
            ),
        )
        spawner, [worker] = _spawner_and_workers(srv.pid)
        sent: list[str] = []

        async def send(n: int) -> None:
            dlg = await Dialogue.connect(srv.ports["mx"])
            await dlg.expect("220")
            await dlg.cmd("EHLO client.test", expect="250")
            for i in range(3):
                mid = f"dead{n}.{i}@workers.test"
                reply = await dlg.send_message(f"Message-ID: <{mid}>\r\n\r\nx\r\n".encode())
                assert reply[-1].startswith("250 2.0.0"), reply
                sent.append(mid)
            await dlg.cmd("QUIT", expect="221")
            await dlg.close()

        # Both processes accept connections; send until the worker holds some leases
        # (its deliveries stall at the LMTP greeting, so they stay leased).
        for attempt in range(10):
            await asyncio.gather(*(send(attempt * 100 + n) for n in range(8)))
            await asyncio.sleep(0.3)
            if any(owner and f":{worker}:" in owner for owner in _leases(srv.data_dir).values()):
                break
        theirs = [q for q, o in _leases(srv.data_dir).items() if o and f":{worker}:" in o]
        assert theirs, "the worker never took a connection"

        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            owners = _leases(srv.data_dir)
            if all(not (owners.get(q) or "").count(f":{worker}:") for q in theirs):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the dead worker's leases were never given back")
        assert "server.worker_died" in srv.stderr()
        assert "killed by SIGKILL" in srv.stderr()

        # The spawner forks a replacement (after a second: the dead one died young, see
        # cli/workers.py), which takes connections like the first one did.
        deadline = time.monotonic() + 15
        while not (fresh := [p for p in _children(spawner) if p != worker]):
            assert time.monotonic() < deadline, "no replacement worker was started"
            await asyncio.sleep(0.1)
        [replacement] = fresh
        assert "server.worker_started" in srv.stderr()
        for attempt in range(10):
            await asyncio.gather(*(send(1000 + attempt * 100 + n) for n in range(8)))
            await asyncio.sleep(0.3)
            owners = _leases(srv.data_dir).values()
            if any(owner and f":{replacement}:" in owner for owner in owners):
                break
        else:
            pytest.fail("the replacement worker never took a connection")

        lmtp.release.set()  # now every delivery, the dead worker's included, can finish
        deadline = time.monotonic() + 30
        while set(sent) - set(lmtp.stored) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not set(sent) - set(lmtp.stored), "mail the dead worker had leased is stuck"
        assert srv.stop() == 0
    finally:
        lmtp.close()


async def test_a_dead_spawner_leaves_the_first_process_serving(subprocess_factory) -> None:
    srv = subprocess_factory(server_toml="workers = 2")
    spawner, [worker] = _spawner_and_workers(srv.pid)
    os.kill(spawner, signal.SIGKILL)
    assert _gone(spawner) and _gone(worker), "the worker outlived its spawner"
    deadline = time.monotonic() + 10
    while "server.spawner_died" not in srv.stderr():
        assert time.monotonic() < deadline, "the spawner's death was not logged"
        await asyncio.sleep(0.05)
    # No replacement can be forked now, but the first process serves on, alone.
    dlg = await Dialogue.connect(srv.ports["mx"])
    await dlg.expect("220")
    await dlg.cmd("EHLO client.test", expect="250")
    reply = await dlg.send_message(b"Message-ID: <alone@workers.test>\r\n\r\nx\r\n")
    assert reply[-1].startswith("250 2.0.0"), reply
    await dlg.cmd("QUIT", expect="221")
    await dlg.close()
    assert any(b"<alone@workers.test>" in m for m in await srv.wait_for_messages(1))
    assert srv.stop() == 0


def _connections_per_process(port: int) -> dict[int, int]:
    """Established connections on ``port`` per server process (``ss``, iproute2)."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(collections.Counter(int(p) for p in re.findall(r"pid=(\d+)", out)))


def test_a_burst_of_long_sessions_is_spread_over_the_workers(subprocess_factory) -> None:
    # SMTP sessions can last long; whoever accepts a burst keeps it. Twenty clients
    # connect at once and stay: each of the two processes must hold about half.
    srv = subprocess_factory(server_toml="workers = 2")
    _spawner, [worker] = _spawner_and_workers(srv.pid)
    port = srv.ports["mx"]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        for client in clients:
            client.settimeout(10)
            assert client.recv(512).startswith(b"220 ")  # accepted, session running
        counts = _connections_per_process(port)
        assert set(counts) == {srv.pid, worker}, counts
        assert sorted(counts.values()) in ([10, 10], [9, 11]), counts
    finally:
        for client in clients:
            client.close()
    assert srv.stop() == 0
