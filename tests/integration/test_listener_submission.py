"""The submission listener (port 587 style) over real sockets: STARTTLS first, then AUTH.

Covers RFC 3207 §4 ("530 Must issue a STARTTLS command first" for everything
but the session commands before TLS), RFC 6409 §4.3/RFC 8314 (530 5.7.0
"Authentication required" for MAIL after TLS without AUTH), STARTTLS syntax
(501 with a parameter, 503 under TLS), the RFC 3207 §4.2 reset (EHLO again
after the handshake), and the start-up WARNING for the
``listener.submission.allow_plaintext`` weakening (subprocess stderr).
"""

from __future__ import annotations

import pytest

from helpers.dialogue import Dialogue

EHLO = "EHLO client.test"
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_REQUIRED = "530 5.7.0 Authentication required"


async def greet(port: int) -> Dialogue:
    dlg = await Dialogue.connect(port)
    await dlg.expect("220 ")
    return dlg


async def test_session_commands_are_allowed_before_starttls(mail_server) -> None:
    dlg = await greet(mail_server.ports["submission"])
    ehlo = await dlg.cmd(EHLO, expect="250 ")
    assert "250-STARTTLS" in ehlo or "250 STARTTLS" in ehlo
    await dlg.cmd("HELO client.test", expect="250 localhost")
    await dlg.cmd("NOOP", expect="250 2.0.0")
    await dlg.cmd("RSET", expect="250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert await dlg.is_closed()


@pytest.mark.parametrize(
    "command",
    [
        "MAIL FROM:<a@example.org>",
        "VRFY test@localhost",
        "EXPN staff",
        "HELP",
        "AUTH PLAIN AHVzZXIAcGFzcw==",
    ],
)
async def test_commands_before_starttls_are_530_starttls_first(mail_server, command) -> None:
    dlg = await greet(mail_server.ports["submission"])
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd(command, expect=STARTTLS_FIRST)
    # The refusal changed nothing: STARTTLS still works.
    await dlg.starttls(mail_server.client_tls())
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.close()


@pytest.mark.parametrize("command", ["RCPT TO:<test@localhost>", "DATA"])
async def test_rcpt_and_data_before_starttls_are_530_starttls_first(mail_server, command) -> None:
    dlg = await greet(mail_server.ports["submission"])
    await dlg.cmd(EHLO, expect="250 ")
    try:
        await dlg.cmd(command, expect=STARTTLS_FIRST)
    finally:
        await dlg.close()


async def test_pipelined_transaction_before_starttls_is_refused_whole(mail_server) -> None:
    dlg = await greet(mail_server.ports["submission"])
    await dlg.cmd(EHLO, expect="250 ")
    dlg.send_raw(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<test@localhost>\r\nDATA\r\n")
    await dlg.expect(STARTTLS_FIRST)
    await dlg.expect("5")  # RCPT: refused (530 or 503), never 250
    await dlg.expect("5")  # DATA: refused, never 354
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert mail_server.spooled() == []


async def test_mail_after_starttls_without_auth_is_530_authentication_required(
    mail_server,
) -> None:
    dlg = await greet(mail_server.ports["submission"])
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.starttls(mail_server.client_tls())
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect=AUTH_REQUIRED)
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_starttls_with_a_parameter_is_501(mail_server) -> None:
    dlg = await greet(mail_server.ports["submission"])
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd("STARTTLS now", expect="501 5.5.4")
    await dlg.starttls(mail_server.client_tls())  # the plain form still works
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.close()


async def test_starttls_under_tls_is_503_5_5_1(mail_server) -> None:
    dlg = await greet(mail_server.ports["submission"])
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.starttls(mail_server.client_tls())
    await dlg.cmd("STARTTLS", expect="503 5.5.1")  # before EHLO
    ehlo = await dlg.cmd(EHLO, expect="250 ")
    assert not any("STARTTLS" in line for line in ehlo)
    await dlg.cmd("STARTTLS", expect="503 5.5.1 TLS already active")
    await dlg.cmd("NOOP", expect="250 2.0.0")  # still TLS, still usable
    await dlg.close()


async def test_ehlo_is_required_again_after_starttls(mail_server) -> None:
    dlg = await greet(mail_server.ports["submission"])
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.starttls(mail_server.client_tls())
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="503 5.5.1")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect=AUTH_REQUIRED)
    await dlg.close()


async def test_allow_plaintext_logs_a_weakening_warning_at_startup(subprocess_factory) -> None:
    srv = subprocess_factory(listener_toml={"submission": "allow_plaintext = true"})
    warnings = [
        line
        for line in srv.stderr().splitlines()
        if "listener.submission.allow_plaintext" in line and "warning" in line.lower()
    ]
    assert len(warnings) == 1, srv.stderr()
    assert str(srv.data_dir / "postguard.toml") in warnings[0]
    # The weakening does what it says: MAIL in plaintext now meets AUTH, not STARTTLS.
    dlg = await greet(srv.ports["submission"])
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect=AUTH_REQUIRED)
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_no_weakening_warning_without_allow_plaintext(subprocess_factory) -> None:
    srv = subprocess_factory()
    assert "allow_plaintext" not in srv.stderr()
    assert "server.weakening" not in srv.stderr()
