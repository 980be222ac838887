"""CVE-2011-0411 (STARTTLS command injection) over a real socket and a real TLS handshake.

The attack: a man in the middle appends a command to the client's
"STARTTLS\\r\\n" in the same plaintext packet. A vulnerable server buffers it
and executes it after the handshake, as if the client had sent it under TLS
(Postfix, Exim and others in 2011; Wietse Venema's advisory).

For mx and submission: "STARTTLS\\r\\nMAIL FROM:<evil@example.org>\\r\\n" in one
write, the handshake, then our own MAIL. The first reply read after the
handshake must answer our MAIL (503 5.5.1: RFC 3207 §4.2 requires EHLO again),
which proves the injected MAIL was neither executed nor answered. The server
logs ``smtp.starttls_injection`` with the number of octets it discarded.
Unlike an engine-level test, this goes through the kernel socket, asyncio's
TLS upgrade and the stream's own buffer, where the injected bytes may sit.
"""

from __future__ import annotations

import logging

import pytest

from helpers.dialogue import Dialogue

INJECTED = b"MAIL FROM:<evil@example.org>\r\n"


def injection_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "smtp.starttls_injection"]


@pytest.mark.parametrize("listener", ["mx", "submission"])
async def test_command_pipelined_after_starttls_is_not_executed_under_tls(
    mail_server, caplog, listener: str
) -> None:
    caplog.set_level(logging.INFO, logger="postguard")
    dlg = await Dialogue.connect(mail_server.ports[listener])
    await dlg.expect("220 ")
    await dlg.cmd("EHLO client.test", expect="250 ")
    dlg.send_raw(b"STARTTLS\r\n" + INJECTED)
    await dlg.expect("220 2.0.0")
    await dlg.writer.start_tls(mail_server.client_tls(), server_hostname="localhost")

    # The first reply under TLS answers *our* command: EHLO is required again, so the
    # injected MAIL, had it run, would have been refused or answered before this one.
    await dlg.cmd("MAIL FROM:<x@example.org>", expect="503 5.5.1")
    await dlg.cmd("EHLO client.test", expect="250 ")
    if listener == "mx":
        # No transaction was opened by the injection: MAIL is not "nested".
        await dlg.cmd("MAIL FROM:<x@example.org>", expect="250 2.1.0")
        await dlg.cmd("RSET", expect="250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert await dlg.is_closed()

    [record] = injection_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.pg_fields["discarded_octets"] == len(INJECTED)
    assert record.pg_fields["session"]


@pytest.mark.parametrize("listener", ["mx", "submission"])
async def test_starttls_alone_logs_no_injection(mail_server, caplog, listener: str) -> None:
    caplog.set_level(logging.INFO, logger="postguard")
    dlg = await Dialogue.connect(mail_server.ports[listener])
    await dlg.expect("220 ")
    await dlg.cmd("EHLO client.test", expect="250 ")
    await dlg.starttls(mail_server.client_tls())
    await dlg.cmd("EHLO client.test", expect="250 ")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert await dlg.is_closed()
    assert injection_records(caplog) == []


async def test_injection_is_logged_as_json_by_a_serve_process(subprocess_factory) -> None:
    srv = subprocess_factory('[log]\nformat = "json"\n')
    dlg = await Dialogue.connect(srv.ports["mx"])
    await dlg.expect("220 ")
    await dlg.cmd("EHLO client.test", expect="250 ")
    dlg.send_raw(b"STARTTLS\r\n" + INJECTED)
    await dlg.expect("220 2.0.0")
    await dlg.writer.start_tls(srv.client_tls(), server_hostname="localhost")
    await dlg.cmd("MAIL FROM:<x@example.org>", expect="503 5.5.1")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert await dlg.is_closed()
    # The warning is written before the handshake, so it is in the file by now.
    lines = [line for line in srv.stderr().splitlines() if "smtp.starttls_injection" in line]
    assert len(lines) == 1, srv.stderr()
    assert f'"discarded_octets": {len(INJECTED)}' in lines[0]
    assert '"level": "warning"' in lines[0]
    assert "evil@example.org" not in srv.stderr()
