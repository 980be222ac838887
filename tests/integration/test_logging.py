"""JSON-lines logs of a real ``postguard serve`` process (``[log] format = "json"``).

Covers: every stderr line is one JSON object with ts/level/event; a connection
is logged with its session id, listener and client address; each command is
logged with its reply code under the same session id; and secrets never reach
the log: not the message body, not an AUTH PLAIN payload (nor its decoded
password), not a SASL continuation line sent after it (STYLE.md §6).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

from helpers.dialogue import Dialogue

EHLO = "EHLO client.test"
JSON_LOG = '[log]\nformat = "json"\nlevel = "debug"\n'
BODY_SECRET = "body-secret-3f9a1c77"
PASSWORD = "hunter2-pw-8d2e4b"
POLL_TIMEOUT_SECONDS = 15.0


async def wait_for_disconnects(srv, count: int) -> list[dict]:
    """Bounded poll until ``count`` sessions have logged smtp.disconnected; all records."""
    deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
    while True:
        # The server may be writing a line right now: only complete lines are parsed.
        lines = srv.stderr().split("\n")[:-1]
        records = [json.loads(line) for line in lines]
        done = [r for r in records if r.get("event") == "smtp.disconnected"]
        if len(done) >= count or time.monotonic() > deadline:
            assert len(done) >= count, srv.stderr()
            return records
        await asyncio.sleep(0.05)


async def test_json_log_lines_describe_sessions_and_commands(subprocess_factory) -> None:
    srv = subprocess_factory(JSON_LOG)
    dlg = await Dialogue.connect(srv.ports["mx"])
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.starttls(srv.client_tls())
    await dlg.cmd(EHLO, expect="250 ")
    reply = await dlg.send_message(
        f"Subject: logs\r\n\r\n{BODY_SECRET}\r\n".encode(), mail_from="alice@example.org"
    )
    assert reply[-1].startswith("250 2.0.0")
    await dlg.cmd("RCPT TO:<x@localhost>", expect="503 5.5.1")  # no MAIL: a protocol error
    await dlg.cmd("QUIT", expect="221 2.0.0")
    await srv.wait_for_messages(1)
    records = await wait_for_disconnects(srv, 1)

    for record in records:
        assert {"ts", "level", "event"} <= record.keys(), record
    [connected] = [r for r in records if r["event"] == "smtp.connected"]
    session = connected["session"]
    assert connected["listener"] == "mx"
    assert connected["client"] == "127.0.0.1"
    commands = [
        (r["command"], r["reply"])
        for r in records
        if r["event"] == "smtp.command" and r.get("session") == session
    ]
    assert commands[:4] == [("Ehlo", 250), ("StartTls", 220), ("Ehlo", 250), ("MailFrom", 250)]
    assert ("RcptTo", 250) in commands
    assert ("StartData", 354) in commands
    assert ("EndOfMessage", 250) in commands
    assert commands[-1] == ("Quit", 221)
    [mail] = [r for r in records if r.get("command") == "MailFrom"]
    assert mail["mail_from"] == "alice@example.org"
    [error] = [r for r in records if r["event"] == "smtp.protocol_error"]
    assert (error["session"], error["reply"]) == (session, 503)
    [accepted] = [r for r in records if r["event"] == "smtp.message_accepted"]
    assert accepted["session"] == session
    [disconnected] = [r for r in records if r["event"] == "smtp.disconnected"]
    assert (disconnected["session"], disconnected["messages"]) == (session, 1)
    assert BODY_SECRET not in srv.stderr()

    # After a clean stop the whole log is complete: every line, start to end, is JSON.
    assert await asyncio.to_thread(srv.stop) == 0
    events = [json.loads(line)["event"] for line in srv.stderr().splitlines()]
    assert events[-1] == "server.stopped"
    assert BODY_SECRET not in srv.stderr()


async def test_auth_payloads_never_reach_the_log(subprocess_factory) -> None:
    srv = subprocess_factory(JSON_LOG)
    plain = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    login_password = base64.b64encode(PASSWORD.encode()).decode()

    # mx, plaintext and under TLS: AUTH is not offered there, but is still not logged.
    dlg = await Dialogue.connect(srv.ports["mx"])
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd(f"AUTH PLAIN {plain}", expect="5")
    await dlg.cmd(login_password, expect="5")  # a SASL continuation line, out of context
    await dlg.starttls(srv.client_tls())
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd(f"AUTH PLAIN {plain}", expect="5")
    await dlg.cmd("QUIT", expect="221 2.0.0")

    # submission before and after STARTTLS.
    dlg = await Dialogue.connect(srv.ports["submission"])
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd(f"AUTH PLAIN {plain}", expect="530 5.7.0")
    await dlg.starttls(srv.client_tls())
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd(f"AUTH PLAIN {plain}", expect="5")
    await dlg.cmd(f"AUTH LOGIN {login_password}", expect="5")
    await dlg.cmd(login_password, expect="5")
    await dlg.cmd("QUIT", expect="221 2.0.0")

    records = await wait_for_disconnects(srv, 2)
    log = srv.stderr()
    for secret in (plain, login_password, PASSWORD, "alice"):
        assert secret not in log
    auth = [r for r in records if r.get("command") == "Auth"]
    assert auth and all(r["mechanism"] in ("PLAIN", "LOGIN") for r in auth)
