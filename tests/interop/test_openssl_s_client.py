"""``openssl s_client -starttls smtp`` driven over stdin, one command per reply.

Covers: a full EHLO/MAIL/RCPT/DATA/QUIT dialogue typed by hand after
s_client's STARTTLS, verified against the development CA (chain and IP
address), delivered to the Maildir over TLS 1.3; and s_client's own handshake
report: TLSv1.3 and "Verify return code: 0 (ok)".

s_client runs as a child process of the test's event loop (see ``harness``).
Commands are written one at a time, each after the previous reply arrived:
writing the whole dialogue up front would send the body before the 354, which
is not what a client may do (RFC 2920 §3.1) and is not what this test is about.

Without ``-quiet``, s_client treats lines starting with "Q" or "R" (QUIT,
RCPT) as its own commands; ``-nocommands`` turns that off.
"""

from __future__ import annotations

import pytest

from interop.harness import LineTool, MarkedMessage, assert_delivered

pytestmark = pytest.mark.interop


def s_client_argv(openssl: str, port: int, ca: str, *options: str) -> list[str]:
    return [
        openssl, "s_client",
        "-starttls", "smtp",
        "-connect", f"127.0.0.1:{port}",
        "-CAfile", ca,
        "-verify_return_error",
        "-verify_ip", "127.0.0.1",
        "-crlf",
        *options,
    ]  # fmt: skip


async def test_s_client_starttls_dialogue_is_delivered(openssl, mail_server) -> None:
    sent = MarkedMessage.new("openssl")
    argv = s_client_argv(openssl, mail_server.ports["mx"], str(mail_server.ca), "-quiet")
    client = await LineTool.start(*argv)
    await client.cmd("EHLO openssl.client.test", expect="250 ")
    await client.cmd(f"MAIL FROM:<{sent.mail_from}>", expect="250 2.1.0")
    await client.cmd(f"RCPT TO:<{sent.rcpt_to}>", expect="250 2.1.5")
    await client.cmd("DATA", expect="354")
    for line in sent.as_bytes(b"\n").decode().splitlines():
        assert not line.startswith("."), "the body would need dot-stuffing"
        client.send_line(line)
    await client.cmd(".", expect="250 2.0.0 OK: queued as ")
    await client.cmd("QUIT", expect="221 2.0.0")
    result = await client.finish()
    assert result.returncode == 0, result.describe()
    assert_delivered(await mail_server.wait_for_messages(1), sent, tls="TLSv1.3")


async def test_s_client_handshake_is_tls13_with_verified_chain(openssl, mail_server) -> None:
    argv = s_client_argv(openssl, mail_server.ports["mx"], str(mail_server.ca), "-nocommands")
    client = await LineTool.start(*argv)
    ehlo = await client.cmd("EHLO openssl.client.test", expect="250 ")
    # RFC 3207 §4.2: STARTTLS is not offered again once TLS is up.
    assert not any("STARTTLS" in line for line in ehlo), ehlo
    await client.cmd("QUIT", expect="221 2.0.0")
    result = await client.finish()
    assert result.returncode == 0, result.describe()
    assert "New, TLSv1.3, Cipher is " in result.stdout, result.describe()
    assert "Verification: OK" in result.stdout, result.describe()
    assert "Verify return code: 0 (ok)" in result.stdout, result.describe()
    assert "subject=CN = localhost" in result.stdout, result.describe()


async def test_s_client_is_sent_the_certificate_alone_and_builds_the_path_itself(
    openssl, mail_server
) -> None:
    # The development CA is the client's trust anchor, not part of what the server sends
    # (RFC 8446 §4.4.2): the handshake carries one certificate, and verification still
    # reaches the CA (depth 1) from the client's own -CAfile.
    argv = s_client_argv(
        openssl, mail_server.ports["mx"], str(mail_server.ca), "-nocommands", "-showcerts"
    )
    client = await LineTool.start(*argv)
    await client.cmd("EHLO openssl.client.test", expect="250 ")
    await client.cmd("QUIT", expect="221 2.0.0")
    result = await client.finish()
    assert result.returncode == 0, result.describe()
    sent = result.stdout.count("-----BEGIN CERTIFICATE-----")
    assert sent == 1, result.describe()
    assert "depth=1 " in result.stdout + result.stderr, result.describe()
    assert "Verify return code: 0 (ok)" in result.stdout, result.describe()
