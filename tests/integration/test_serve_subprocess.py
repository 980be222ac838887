"""`postguard serve` as a real process: start-up banner, delivery, SIGTERM, privilege drop."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from pathlib import Path

import pytest

from helpers.dialogue import Dialogue


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


async def test_two_workers_share_the_sockets_and_deliver_every_message_once(
    subprocess_factory,
) -> None:
    srv = subprocess_factory(server_toml="workers = 2")
    [worker] = _children(srv.pid)

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


def test_workers_die_with_a_killed_parent(subprocess_factory) -> None:
    srv = subprocess_factory(server_toml="workers = 2")
    [worker] = _children(srv.pid)
    srv.kill9()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded wait for the kernel to deliver PDEATHSIG
    status = Path(f"/proc/{worker}/status")
    assert not status.exists() or "zombie" in status.read_text(), "worker survived kill -9"
