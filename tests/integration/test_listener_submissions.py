"""The submissions listener (port 465 style, RFC 8314 implicit TLS) over real sockets.

Covers: the 220 greeting is sent only after the TLS handshake, a plaintext
client never sees a greeting, a client capped at TLS 1.1 is refused (RFC 8996),
STARTTLS under implicit TLS is 503 5.5.1 and is not advertised, and MAIL
without AUTH is 530 5.7.0.

The "nothing arrives" checks need a bound: silence cannot be awaited as an
event. ``SILENCE_SECONDS`` is that bound; it makes the test slower, never flaky
(a greeting sent in error would only arrive earlier).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import pytest

from helpers.dialogue import Dialogue

EHLO = "EHLO client.test"
SILENCE_SECONDS = 0.5
EOF_TIMEOUT_SECONDS = 15.0


async def read_until_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (a reset counts as the end)."""
    received = b""
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(EOF_TIMEOUT_SECONDS):
            while chunk := await reader.read(4096):
                received += chunk
    return received


async def test_greeting_is_sent_only_after_the_tls_handshake(mail_server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", mail_server.ports["submissions"])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), SILENCE_SECONDS)
    await writer.start_tls(mail_server.client_tls(), server_hostname="localhost")
    dlg = Dialogue(reader, writer)
    [greeting] = await dlg.expect("220 localhost ESMTP")
    assert greeting.startswith("220 ")
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_plaintext_client_gets_no_greeting_and_is_disconnected(mail_server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", mail_server.ports["submissions"])
    writer.write(b"EHLO client.test\r\n")
    received = await read_until_eof(reader)
    writer.close()
    assert b"220" not in received
    assert b"ESMTP" not in received
    assert b"250" not in received


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
async def test_client_capped_below_tls_1_2_is_refused(mail_server, version: str) -> None:
    context = mail_server.client_tls()
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = getattr(ssl.TLSVersion, version)
    # Let this client offer legacy versions at all (OpenSSL 3 refuses them at level 1+).
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                mail_server.ports["submissions"],
                ssl=context,
                server_hostname="localhost",
            ),
            EOF_TIMEOUT_SECONDS,
        )
    except ssl.SSLError as exc:
        # The server refused the version; the client did not fail on its own.
        assert exc.reason != "NO_PROTOCOLS_AVAILABLE", exc
    except ConnectionError:
        pass  # the server aborted the handshake
    else:
        greeting = await read_until_eof(reader)
        writer.close()
        pytest.fail(f"TLS below 1.2 was accepted; server sent {greeting!r}")
    # The refusal does not disturb the listener.
    dlg = await Dialogue.connect(
        mail_server.ports["submissions"], tls=mail_server.client_tls(), server_hostname="localhost"
    )
    await dlg.expect("220 ")
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_client_capped_at_tls_1_2_is_served(mail_server) -> None:
    context = mail_server.client_tls()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    dlg = await Dialogue.connect(
        mail_server.ports["submissions"], tls=context, server_hostname="localhost"
    )
    await dlg.expect("220 ")
    assert dlg.writer.get_extra_info("ssl_object").version() == "TLSv1.2"
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_starttls_under_implicit_tls_is_503_and_not_advertised(mail_server) -> None:
    dlg = await Dialogue.connect(
        mail_server.ports["submissions"], tls=mail_server.client_tls(), server_hostname="localhost"
    )
    await dlg.expect("220 ")
    await dlg.cmd("STARTTLS", expect="503 5.5.1")
    ehlo = await dlg.cmd(EHLO, expect="250 ")
    assert not any("STARTTLS" in line for line in ehlo)
    await dlg.cmd("STARTTLS", expect="503 5.5.1 TLS already active")
    await dlg.cmd("NOOP", expect="250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_mail_under_implicit_tls_without_auth_is_530_authentication_required(
    mail_server,
) -> None:
    dlg = await Dialogue.connect(
        mail_server.ports["submissions"], tls=mail_server.client_tls(), server_hostname="localhost"
    )
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="530 5.7.0 Authentication required")
    await dlg.cmd("QUIT", expect="221 2.0.0")
