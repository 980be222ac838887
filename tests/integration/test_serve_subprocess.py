"""`postguard serve` as a real process: start-up banner, delivery, SIGTERM, privilege drop."""

from __future__ import annotations

import os
import pwd
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
