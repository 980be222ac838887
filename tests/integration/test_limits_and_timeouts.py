"""Budgets over real sockets: timeouts, the per-IP connection limit, graceful shutdown, IPv6.

Covers: the idle, command and data timeouts (RFC 5321 §4.5.3.2) answer
421 4.4.2 and close, and a timed-out DATA leaves nothing behind;
``max_connections_per_ip`` refuses the next connection with 421 4.7.0 and
gives the slot back when a connection ends; graceful shutdown (in-process
``shutdown`` and SIGTERM to ``postguard serve``) lets a transaction in DATA
finish with 250 before 421 4.3.2, sends 421 4.3.2 to idle sessions at once, and
stops accepting; a listener on ``[::1]`` delivers over IPv6.

Timeouts are short (300 ms where the client only waits, 1 s where it must
send something first, so a loaded machine cannot trip them early) and the
tests wait on the server's 421, not on a clock of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import time

import pytest

from helpers.dialogue import Dialogue

EHLO = "EHLO client.test"
POLL_TIMEOUT_SECONDS = 15.0


async def greet(port: int, host: str = "127.0.0.1") -> Dialogue:
    dlg = await Dialogue.connect(port, host=host)
    await dlg.expect("220 ")
    return dlg


async def in_data(port: int) -> Dialogue:
    """An mx session inside DATA, with the headers and one body line sent."""
    dlg = await greet(port)
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<test@localhost>", expect="250 2.1.5")
    await dlg.cmd("DATA", expect="354")
    dlg.send_raw(b"Subject: in flight\r\n\r\nfirst line\r\n")
    await dlg.writer.drain()
    return dlg


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_idle_timeout_is_421_4_4_2_then_close(server_factory) -> None:
    srv = await server_factory('[limits]\nidle_timeout = "300ms"\n')
    dlg = await greet(srv.ports["mx"])
    await dlg.expect("421 4.4.2")
    assert await dlg.is_closed()


async def test_idle_timeout_applies_after_ehlo(server_factory) -> None:
    srv = await server_factory('[limits]\nidle_timeout = "1s"\n')
    dlg = await greet(srv.ports["mx"])
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.expect("421 4.4.2")
    assert await dlg.is_closed()


async def test_command_timeout_inside_a_transaction_is_421_4_4_2(server_factory) -> None:
    srv = await server_factory('[limits]\ncommand_timeout = "1s"\n')
    dlg = await greet(srv.ports["mx"])
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.expect("421 4.4.2")
    assert await dlg.is_closed()


# 1 MiB is well past the size intake keeps in memory: the partial body is in a file.
@pytest.mark.parametrize("partial_octets", [0, 1024 * 1024], ids=["in-memory", "spilled-to-disk"])
async def test_data_timeout_is_421_4_4_2_and_nothing_is_delivered(
    server_factory, partial_octets: int
) -> None:
    srv = await server_factory('[limits]\ndata_timeout = "1s"\n')
    dlg = await in_data(srv.ports["mx"])
    line = b"p" * 998 + b"\r\n"  # the longest legal text line
    dlg.send_raw(line * (partial_octets // len(line)))
    await dlg.writer.drain()
    if partial_octets:
        # Precondition: the partial body really went to a file (bounded poll; the file
        # lives for at least the 1 s the server waits before timing out).
        deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
        while not srv.spooled() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [name for name in srv.spooled() if name.endswith(".tmp")], srv.spooled()
    await dlg.expect("421 4.4.2")
    assert await dlg.is_closed()
    # No 250 was sent, so nothing may be queued or delivered.
    assert srv.messages() == []
    assert srv.spooled() == []


async def test_third_connection_from_one_ip_is_421_4_7_0(server_factory) -> None:
    srv = await server_factory("[limits]\nmax_connections_per_ip = 2\n")
    first = await greet(srv.ports["mx"])
    second = await greet(srv.ports["submission"])  # the limit spans listeners
    third = await Dialogue.connect(srv.ports["mx"])
    await third.expect("421 4.7.0")
    assert await third.is_closed()
    # Those inside are unaffected.
    await first.cmd("NOOP", expect="250 2.0.0")
    await second.cmd("NOOP", expect="250 2.0.0")

    # Ending a connection gives its slot back (bounded poll: the release runs after EOF).
    await first.cmd("QUIT", expect="221 2.0.0")
    assert await first.is_closed()
    deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
    while True:
        again = await Dialogue.connect(srv.ports["mx"])
        [line] = await again.read_reply()
        if line.startswith("220 ") or time.monotonic() > deadline:
            break
        await again.close()
        await asyncio.sleep(0.02)
    assert line.startswith("220 ")
    await again.cmd("QUIT", expect="221 2.0.0")
    await second.cmd("QUIT", expect="221 2.0.0")


async def test_too_many_protocol_errors_is_421_4_7_0_then_close(mail_server) -> None:
    dlg = await greet(mail_server.ports["mx"])
    dlg.send_raw(b"BOGUS\r\n" * 25)  # one batch; the server stops reading after the 21st
    for _ in range(20):
        await dlg.expect("500 5.5.2")
    await dlg.expect("421 4.7.0")
    # Closing with unread input may reset rather than end the stream: both mean "closed".
    with contextlib.suppress(ConnectionResetError):
        assert await dlg.is_closed()


async def test_connections_in_the_tls_handshake_count_against_the_per_ip_limit(
    server_factory,
) -> None:
    srv = await server_factory("[limits]\nmax_connections_per_ip = 2\n")
    port = srv.ports["submissions"]
    # Two connections that never send a ClientHello.
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    try:
        try:
            third = await Dialogue.connect(port, tls=srv.client_tls(), server_hostname="localhost")
            [line] = await third.read_reply()
        except (ssl.SSLError, ConnectionError):
            line = "refused during the handshake"
        assert line.startswith(("421 4.7.0", "refused")), line
    finally:
        for _, writer in held:
            writer.close()


async def test_graceful_shutdown_finishes_data_then_421_and_idle_gets_421_at_once(
    server_factory,
) -> None:
    srv = await server_factory()
    busy = await in_data(srv.ports["mx"])
    idle = await greet(srv.ports["mx"])
    await idle.cmd(EHLO, expect="250 ")

    stopping = asyncio.create_task(srv.stop(grace=10.0))
    await idle.expect("421 4.3.2")
    assert await idle.is_closed()
    # The listening sockets are closed before sessions are told to finish.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", srv.ports["mx"])

    busy.send_raw(b"last line\r\n.\r\n")
    await busy.expect("250 2.0.0 OK: queued as ")
    await busy.expect("421 4.3.2")
    assert await busy.is_closed()
    await asyncio.wait_for(stopping, POLL_TIMEOUT_SECONDS)
    # 250 means on disk: delivered, or still in the queue for the next start.
    assert srv.messages() or srv.spooled()


async def test_sigterm_finishes_data_then_421_and_idle_gets_421_at_once(
    subprocess_factory,
) -> None:
    srv = subprocess_factory()
    busy = await in_data(srv.ports["mx"])
    idle = await greet(srv.ports["mx"])
    await idle.cmd(EHLO, expect="250 ")

    srv.proc.send_signal(signal.SIGTERM)
    await idle.expect("421 4.3.2")
    assert await idle.is_closed()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", srv.ports["submission"])

    busy.send_raw(b"last line\r\n.\r\n")
    await busy.expect("250 2.0.0 OK: queued as ")
    await busy.expect("421 4.3.2")
    assert await busy.is_closed()
    assert await asyncio.to_thread(srv.proc.wait, POLL_TIMEOUT_SECONDS) == 0
    assert srv.messages() or srv.spooled()


async def test_shutdown_grace_expiry_sends_421_to_an_unfinished_transaction(
    server_factory,
) -> None:
    srv = await server_factory()
    busy = await in_data(srv.ports["mx"])
    stopping = asyncio.create_task(srv.stop(grace=0.3))
    await busy.expect("421 4.3.2")
    assert await busy.is_closed()
    await asyncio.wait_for(stopping, POLL_TIMEOUT_SECONDS)
    assert srv.messages() == []
    assert srv.spooled() == []


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")
async def test_message_over_ipv6_loopback_is_delivered(server_factory) -> None:
    srv = await server_factory(mx_addresses=["127.0.0.1:0", "[::1]:0"])
    [port] = [port for host, port in srv.addresses["mx"] if host == "::1"]
    dlg = await greet(port, host="::1")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.starttls(srv.client_tls())
    await dlg.cmd(EHLO, expect="250 ")
    reply = await dlg.send_message(b"Subject: v6\r\n\r\nover ::1\r\n")
    assert reply[-1].startswith("250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await srv.delivered(1)
    assert b"([IPv6:::1])" in message
    assert message.endswith(b"Subject: v6\r\n\r\nover ::1\r\n")
    # The IPv4 address of the same listener still works.
    dlg = await greet(srv.ports["mx"])
    await dlg.cmd("QUIT", expect="221 2.0.0")
    with contextlib.suppress(ConnectionError):
        await dlg.close()
