"""The mx listener over real sockets and real TLS: what it offers, whom it accepts, what it keeps.

Covers, with exact reply codes and enhanced codes (RFC 3463): opportunistic and
required STARTTLS (RFC 3207), local recipients versus relay (550 5.1.1 / 550
5.7.1), postmaster (RFC 5321 §4.1.1.3), VRFY (252), SIZE (RFC 1870), the
recipient limit (452 4.5.3), PIPELINING (RFC 2920), CHUNKING/BINARYMIME
(RFC 3030), 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531). Each delivery is
checked in the Maildir on disk. "Nothing was delivered" is checked without
waiting: a rejected message never got a 250, and a message that did would sit
in the queue directory until it is in the Maildir, so both being empty proves it.
"""

from __future__ import annotations

import pytest

from helpers.dialogue import Dialogue

EHLO = "EHLO client.test"

MAILBOXES_TOML = """
[local]
domains = ["localhost"]
mailboxes = ["test@localhost", "a@localhost", "b@localhost", "c@localhost", "ü@localhost"]
[local.aliases]
"postmaster@localhost" = "test@localhost"
"""


async def greet(port: int) -> Dialogue:
    dlg = await Dialogue.connect(port)
    await dlg.expect("220 ")
    return dlg


async def ehlo_keywords(dlg: Dialogue) -> list[str]:
    """EHLO and return its keyword lines (without "250-" / "250 ")."""
    lines = await dlg.cmd(EHLO, expect="250 ")
    return [line[4:] for line in lines[1:]]


async def open_mx(srv, *, tls: bool = False) -> Dialogue:
    """A greeted mx session, after EHLO (and STARTTLS plus EHLO again when ``tls``)."""
    dlg = await greet(srv.ports["mx"])
    await dlg.cmd(EHLO, expect="250 ")
    if tls:
        await dlg.starttls(srv.client_tls())
        await dlg.cmd(EHLO, expect="250 ")
    return dlg


async def test_ehlo_offers_starttls_in_plaintext_and_not_after_tls(mail_server) -> None:
    dlg = await greet(mail_server.ports["mx"])
    before = await ehlo_keywords(dlg)
    assert "STARTTLS" in before
    for keyword in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"):
        assert keyword in before
    await dlg.cmd("STARTTLS", expect="220 2.0.0")
    await dlg.writer.start_tls(mail_server.client_tls(), server_hostname="localhost")
    after = await ehlo_keywords(dlg)
    assert "STARTTLS" not in after
    assert "PIPELINING" in after
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_auth_is_not_advertised_and_auth_is_502_on_mx(mail_server) -> None:
    dlg = await greet(mail_server.ports["mx"])
    assert not [k for k in await ehlo_keywords(dlg) if k.upper().startswith("AUTH")]
    await dlg.cmd("AUTH PLAIN AHVzZXIAcGFzcw==", expect="502 5.5.1")
    await dlg.starttls(mail_server.client_tls())
    assert not [k for k in await ehlo_keywords(dlg) if k.upper().startswith("AUTH")]
    await dlg.cmd("AUTH PLAIN AHVzZXIAcGFzcw==", expect="502 5.5.1")
    await dlg.close()


async def test_plaintext_message_is_delivered_with_an_esmtp_received_header(mail_server) -> None:
    dlg = await open_mx(mail_server)
    reply = await dlg.send_message(b"Subject: plain\r\n\r\nno tls here\r\n")
    assert reply[-1].startswith("250 2.0.0 OK: queued as ")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await mail_server.delivered(1)
    assert b"with ESMTP id" in message
    assert b"using TLS" not in message
    assert message.endswith(b"Subject: plain\r\n\r\nno tls here\r\n")


async def test_required_tls_refuses_mail_before_starttls_with_530(server_factory) -> None:
    srv = await server_factory(mx_tls="required")
    dlg = await greet(srv.ports["mx"])
    assert "STARTTLS" in await ehlo_keywords(dlg)
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="530 5.7.0")
    await dlg.close()
    assert srv.messages() == []


async def test_required_tls_accepts_mail_after_starttls(server_factory) -> None:
    srv = await server_factory(mx_tls="required")
    dlg = await open_mx(srv, tls=True)
    reply = await dlg.send_message(b"Subject: required\r\n\r\nover tls\r\n")
    assert reply[-1].startswith("250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await srv.delivered(1)
    assert b"with ESMTPS id" in message


async def test_unknown_local_recipient_is_550_5_1_1(mail_server) -> None:
    dlg = await open_mx(mail_server)
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<nobody@localhost>", expect="550 5.1.1")
    await dlg.cmd("DATA", expect="554 5.5.1")  # no valid recipients
    await dlg.cmd("QUIT", expect="221 2.0.0")


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "after-starttls"])
async def test_other_domain_is_relay_denied_550_5_7_1(mail_server, tls: bool) -> None:
    dlg = await open_mx(mail_server, tls=tls)
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<victim@example.com>", expect="550 5.7.1")
    await dlg.cmd("RCPT TO:<test@localhost.example.com>", expect="550 5.7.1")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert mail_server.messages() == []
    assert mail_server.spooled() == []


@pytest.mark.parametrize(
    "rcpt", ["Postmaster", "postmaster", "postmaster@localhost", "PostMaster@LocalHost"]
)
async def test_postmaster_is_accepted_and_delivered_to_its_alias(mail_server, rcpt: str) -> None:
    dlg = await open_mx(mail_server)
    reply = await dlg.send_message(b"Subject: abuse report\r\n\r\nhi\r\n", rcpt=rcpt)
    assert reply[-1].startswith("250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await mail_server.delivered(1, mailbox="test@localhost")
    assert message.endswith(b"Subject: abuse report\r\n\r\nhi\r\n")


async def test_vrfy_is_252_and_does_not_tell_users_apart(mail_server) -> None:
    dlg = await open_mx(mail_server)
    known = await dlg.cmd("VRFY test@localhost", expect="252 2.0.0")
    unknown = await dlg.cmd("VRFY nobody@localhost", expect="252 2.0.0")
    bare = await dlg.cmd("VRFY test", expect="252 2.0.0")
    assert known == unknown == bare
    assert "test" not in known[0] and "localhost" not in known[0]
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_size_is_advertised_with_the_configured_limit(server_factory) -> None:
    srv = await server_factory('[limits]\nmax_message_size = "1KiB"\n')
    dlg = await greet(srv.ports["mx"])
    assert "SIZE 1024" in await ehlo_keywords(dlg)
    await dlg.close()


async def test_declared_size_over_the_limit_is_552_5_3_4_at_mail(server_factory) -> None:
    srv = await server_factory('[limits]\nmax_message_size = "1KiB"\n')
    dlg = await open_mx(srv)
    await dlg.cmd("MAIL FROM:<a@example.org> SIZE=1025", expect="552 5.3.4")
    await dlg.cmd("MAIL FROM:<a@example.org> SIZE=1024", expect="250 2.1.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_body_over_the_limit_is_552_5_3_4_after_data_and_not_delivered(
    server_factory,
) -> None:
    srv = await server_factory('[limits]\nmax_message_size = "1KiB"\n')
    dlg = await open_mx(srv)
    body = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
    body += (b"y" * 70 + b"\r\n") * 20  # 1,528 octets: over 1 KiB, every line short
    reply = await dlg.send_message(body)
    assert reply[-1].startswith("552 5.3.4")
    # The session goes on: the transaction ended, a new one is possible.
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RSET", expect="250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert srv.messages() == []
    assert srv.spooled() == []


@pytest.mark.parametrize(("size", "expected"), [(1024, "250 2.0.0"), (1025, "552 5.3.4")])
async def test_message_size_limit_is_exact(server_factory, size: int, expected: str) -> None:
    srv = await server_factory('[limits]\nmax_message_size = "1KiB"\n')
    dlg = await open_mx(srv)
    lines = [b"Subject: edge\r\n", b"\r\n"] + [b"z" * 126 + b"\r\n"] * 7  # 913 octets
    body = b"".join(lines)
    body += b"e" * (size - len(body) - 2) + b"\r\n"
    assert len(body) == size
    reply = await dlg.send_message(body)
    assert reply[-1].startswith(expected)
    await dlg.cmd("QUIT", expect="221 2.0.0")
    if expected.startswith("250"):
        [message] = await srv.delivered(1)
        assert message.endswith(body)
    else:
        assert srv.messages() == []
        assert srv.spooled() == []


async def test_bdat_over_the_limit_is_552_5_3_4_and_not_delivered(server_factory) -> None:
    srv = await server_factory('[limits]\nmax_message_size = "1KiB"\n')
    dlg = await open_mx(srv)
    chunk = (b"b" * 98 + b"\r\n") * 8  # 800 octets; two chunks make 1,600
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<test@localhost>", expect="250 2.1.5")
    dlg.send_raw(b"BDAT 800\r\n" + chunk)
    await dlg.expect("250 2.0.0 800 octets received")
    dlg.send_raw(b"BDAT 800 LAST\r\n" + chunk)
    await dlg.expect("552 5.3.4")
    await dlg.cmd("NOOP", expect="250 2.0.0")  # the chunk was consumed, not read as commands
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert srv.messages() == []
    assert srv.spooled() == []


async def test_recipients_past_the_limit_get_452_4_5_3(server_factory) -> None:
    srv = await server_factory("[limits]\nmax_recipients = 2\n" + MAILBOXES_TOML)
    dlg = await open_mx(srv)
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<a@localhost>", expect="250 2.1.5")
    await dlg.cmd("RCPT TO:<b@localhost>", expect="250 2.1.5")
    await dlg.cmd("RCPT TO:<c@localhost>", expect="452 4.5.3")
    await dlg.cmd("DATA", expect="354")
    dlg.send_raw(b"Subject: two of three\r\n\r\nhi\r\n.\r\n")
    await dlg.expect("250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    assert len(await srv.delivered(1, mailbox="a@localhost")) == 1
    assert len(await srv.delivered(1, mailbox="b@localhost")) == 1
    assert srv.messages("c@localhost") == []


async def test_pipelined_batch_in_one_write_gets_every_reply_in_order(mail_server) -> None:
    dlg = await greet(mail_server.ports["mx"])
    assert "PIPELINING" in await ehlo_keywords(dlg)
    dlg.send_raw(
        b"MAIL FROM:<p@example.org>\r\n"
        b"RCPT TO:<test@localhost>\r\n"
        b"RCPT TO:<nobody@localhost>\r\n"
        b"RCPT TO:<elsewhere@example.com>\r\n"
        b"DATA\r\n"
    )
    for expected in ("250 2.1.0", "250 2.1.5", "550 5.1.1", "550 5.7.1", "354"):
        await dlg.expect(expected)
    dlg.send_raw(b"Subject: pipelined\r\n\r\nbatch\r\n.\r\nNOOP\r\nQUIT\r\n")
    await dlg.expect("250 2.0.0 OK: queued as ")
    await dlg.expect("250 2.0.0")
    await dlg.expect("221 2.0.0")
    assert await dlg.is_closed()
    [message] = await mail_server.delivered(1)
    assert message.endswith(b"Subject: pipelined\r\n\r\nbatch\r\n")


async def test_bdat_chunks_are_delivered_in_order(mail_server) -> None:
    dlg = await open_mx(mail_server, tls=True)
    first = b"Subject: chunked\r\n\r\nfirst "
    last = b"and last\r\n"
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<test@localhost>", expect="250 2.1.5")
    dlg.send_raw(b"BDAT %d\r\n" % len(first) + first)
    await dlg.expect(f"250 2.0.0 {len(first)} octets received")
    dlg.send_raw(b"BDAT %d LAST\r\n" % len(last) + last)
    await dlg.expect("250 2.0.0 OK: queued as ")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await mail_server.delivered(1)
    assert message.endswith(first + last)


async def test_bdat_last_with_binarymime_delivers_raw_octets_unchanged(mail_server) -> None:
    dlg = await open_mx(mail_server)
    # BINARYMIME content is not line-oriented: bare LF, bare CR, NUL and 8-bit octets.
    content = b"Subject: binary\r\nContent-Type: application/octet-stream\r\n\r\n"
    content += bytes(range(256)) + b"\n\r\x00tail"
    await dlg.cmd("MAIL FROM:<a@example.org> BODY=BINARYMIME", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<test@localhost>", expect="250 2.1.5")
    dlg.send_raw(b"BDAT %d LAST\r\n" % len(content) + content)
    await dlg.expect("250 2.0.0 OK: queued as ")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await mail_server.delivered(1)
    assert message.endswith(content)


async def test_data_after_binarymime_is_503_5_5_1(mail_server) -> None:
    dlg = await open_mx(mail_server)
    await dlg.cmd("MAIL FROM:<a@example.org> BODY=BINARYMIME", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<test@localhost>", expect="250 2.1.5")
    await dlg.cmd("DATA", expect="503 5.5.1")
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_8bitmime_body_is_delivered_unchanged(mail_server) -> None:
    dlg = await open_mx(mail_server)
    body = "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße, 東京\r\n"
    await dlg.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<test@localhost>", expect="250 2.1.5")
    await dlg.cmd("DATA", expect="354")
    dlg.send_raw(body.encode("utf-8") + b".\r\n")
    await dlg.expect("250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await mail_server.delivered(1)
    assert message.endswith(body.encode("utf-8"))


async def test_smtputf8_delivers_to_a_utf8_mailbox(server_factory) -> None:
    srv = await server_factory(MAILBOXES_TOML)
    dlg = await greet(srv.ports["mx"])
    assert "SMTPUTF8" in await ehlo_keywords(dlg)
    await dlg.cmd("MAIL FROM:<jörg@exämple.org> SMTPUTF8 BODY=8BITMIME", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<ü@localhost>", expect="250 2.1.5")
    await dlg.cmd("DATA", expect="354")
    dlg.send_raw("Subject: ünïcödé\r\n\r\nhallo\r\n.\r\n".encode())
    await dlg.expect("250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await srv.delivered(1, mailbox="ü@localhost")
    assert b"with UTF8SMTP id" in message
    assert "for <ü@localhost>".encode() in message
    assert message.endswith("Subject: ünïcödé\r\n\r\nhallo\r\n".encode())


async def test_utf8_address_without_smtputf8_is_553_5_6_7(server_factory) -> None:
    srv = await server_factory(MAILBOXES_TOML)
    dlg = await open_mx(srv)
    await dlg.cmd("MAIL FROM:<jörg@example.org>", expect="553 5.6.7")
    await dlg.cmd("MAIL FROM:<a@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<ü@localhost>", expect="553 5.6.7")
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_utf8_address_that_is_not_a_mailbox_is_550_5_1_1(mail_server) -> None:
    dlg = await open_mx(mail_server)
    await dlg.cmd("MAIL FROM:<a@example.org> SMTPUTF8", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<ü@localhost>", expect="550 5.1.1")
    await dlg.cmd("QUIT", expect="221 2.0.0")
