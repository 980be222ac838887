"""Table tests of the client engine (``protocol/client.py``): replies in, commands out.

Covers reply framing and parsing (RFC 5321 §4.2: single and multi-line replies,
enhanced status codes of RFC 2034/3463, code-only lines, the 512-octet line
and 100-line limits, bare CR/LF, malformed and inconsistent codes, control
characters and invalid UTF-8 in text), replies that cannot answer their
command (3xx outside DATA/AUTH, a 2xx to DATA or STARTTLS), unsolicited replies
and 421 (RFC 5321 §3.8); command rendering and the refusal of anything outside
the grammar (CR/LF injection in paths, parameters and domains, non-ASCII
without SMTPUTF8, SASL names and data); the order and pipelining rules
(RFC 2920 §3.1); dot-stuffing and the bare CR/LF rule of ``send_body``; BDAT
chunk accounting; LMTP's one reply per accepted recipient (RFC 2033 §4.2),
also for BDAT LAST pipelined before the RCPT replies; EHLO capabilities;
AUTH continuations; the STARTTLS cut (CVE-2011-0411 class, client side); and
the fuzz invariant: any bytes, whole or byte by byte, give the same events or
a ``RemoteProtocolError``, never another exception.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postguard.protocol import LocalProtocolError, RemoteProtocolError, Reply, State
from postguard.protocol import client_events as ev
from postguard.protocol.client import (
    MAX_REPLY_LINES,
    NEED_DATA,
    PAUSED,
    R451_PROTOCOL_ERROR,
    R451_TLS_INJECTION,
    ClientConnection,
)

GREETING = b"220 mx.example.test ESMTP\r\n"
EHLO_REPLY = (
    b"250-mx.example.test greets client.example.org\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 1000\r\n"
    b"250-8BITMIME\r\n"
    b"250-STARTTLS\r\n"
    b"250-CHUNKING\r\n"
    b"250 AUTH PLAIN LOGIN\r\n"
)
PLAIN_EHLO_REPLY = b"250-mx.example.test\r\n250 8BITMIME\r\n"  # no PIPELINING
LHLO_REPLY = b"250-lmtp.example.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n"
DOMAIN = "client.example.org"


def drain(conn: ClientConnection, data: bytes = b"", *, bytewise: bool = False) -> list[object]:
    """Feed ``data`` (whole or octet by octet) and collect every event until NEED_DATA."""
    out: list[object] = []
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data] if data else []
    for piece in pieces or [b""]:
        if piece:
            conn.receive_data(piece)
        while (event := conn.next_event()) not in (NEED_DATA, PAUSED):
            out.append(event)
            if isinstance(event, ev.ConnectionClosed):
                return out
    return out


def greeted(*, lmtp: bool = False) -> ClientConnection:
    conn = ClientConnection(lmtp=lmtp)
    assert drain(conn, GREETING) == [ev.Greeting(Reply.of(220, None, "mx.example.test ESMTP"))]
    return conn


def ready(*, lmtp: bool = False, hello_reply: bytes | None = None) -> ClientConnection:
    conn = greeted(lmtp=lmtp)
    hello: ev.ClientCommand = ev.Lhlo(DOMAIN) if lmtp else ev.Ehlo(DOMAIN)
    conn.send(hello)
    reply = hello_reply if hello_reply is not None else (LHLO_REPLY if lmtp else EHLO_REPLY)
    [event] = drain(conn, reply)
    assert isinstance(event, ev.ServerReply) and event.command == hello
    assert conn.state is State.READY
    return conn


def only_reply(conn: ClientConnection, data: bytes, *, bytewise: bool = False) -> ev.ServerReply:
    [event] = drain(conn, data, bytewise=bytewise)
    assert isinstance(event, ev.ServerReply)
    return event


# ------------------------------------------------------------ reply parsing

REPLY_ROWS = [
    ("single_line", b"250 OK\r\n", 250, None, ("OK",)),
    ("enhanced_code", b"250 2.1.0 Sender OK\r\n", 250, "2.1.0", ("Sender OK",)),
    ("code_only", b"250\r\n", 250, None, ("",)),
    ("code_and_space", b"250 \r\n", 250, None, ("",)),
    (
        "multi_line",
        b"250-first\r\n250-second\r\n250 third\r\n",
        250,
        None,
        ("first", "second", "third"),
    ),
    ("multi_line_empty_text", b"250-\r\n250 last\r\n", 250, None, ("", "last")),
    (
        "enhanced_on_every_line",
        b"550-5.1.1 no such\r\n550 5.1.1 user\r\n",
        550,
        "5.1.1",
        ("no such", "user"),
    ),
    ("enhanced_code_only", b"250 2.0.0\r\n", 250, "2.0.0", ("",)),
    ("enhanced_class_mismatch_is_text", b"250 5.1.1 odd\r\n", 250, None, ("5.1.1 odd",)),
    ("enhanced_needs_a_space_after", b"250 2.0.0x\r\n", 250, None, ("2.0.0x",)),
    ("four_digit_subject_is_text", b"450 4.1000.1 x\r\n", 450, None, ("4.1000.1 x",)),
    ("transient", b"451 4.3.0 try later\r\n", 451, "4.3.0", ("try later",)),
    ("controls_are_replaced", b"250 a\x1b[31mb\x00c\tTAB\r\n", 250, None, ("a?[31mb?c\tTAB",)),
    ("invalid_utf8_is_replaced", b"250 caf\xe9\r\n", 250, None, ("caf\ufffd",)),
    ("utf8_text", "250 grüße\r\n".encode(), 250, None, ("grüße",)),
    ("long_text_is_cut_to_400", b"250 " + b"x" * 500 + b"\r\n", 250, None, ("x" * 400,)),
    ("exactly_512_octets", b"250 " + b"y" * 506 + b"\r\n", 250, None, ("y" * 400,)),
]


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(
    ("wire", "code", "enhanced", "lines"),
    [row[1:] for row in REPLY_ROWS],
    ids=[row[0] for row in REPLY_ROWS],
)
def test_reply_is_parsed(
    wire: bytes, code: int, enhanced: str | None, lines: tuple[str, ...], bytewise: bool
) -> None:
    conn = ready()
    conn.send(ev.Noop())
    event = only_reply(conn, wire, bytewise=bytewise)
    assert event.command == ev.Noop()
    assert (event.reply.code, event.reply.enhanced, event.reply.lines) == (code, enhanced, lines)


BAD_REPLY_ROWS = [
    ("bare_lf", ev.Noop(), b"250 OK\n"),
    ("bare_lf_in_multiline", ev.Noop(), b"250-a\n250 b\r\n"),
    ("bare_cr", ev.Noop(), b"250 O\rK\r\n"),
    ("lone_lf", ev.Noop(), b"\n"),
    ("empty_line", ev.Noop(), b"\r\n"),
    ("two_digit_code", ev.Noop(), b"25 OK\r\n"),
    ("letters", ev.Noop(), b"abc\r\n"),
    ("no_separator", ev.Noop(), b"250OK\r\n"),
    ("1xx_code", ev.Noop(), b"150 OK\r\n"),
    ("6xx_code", ev.Noop(), b"650 OK\r\n"),
    ("second_digit_over_5", ev.Noop(), b"260 OK\r\n"),
    ("code_changes_in_multiline", ev.Noop(), b"250-a\r\n251 b\r\n"),
    ("line_over_512_octets", ev.Noop(), b"250 " + b"z" * 507 + b"\r\n"),
    ("line_over_512_without_lf", ev.Noop(), b"250 " + b"z" * 600),
    ("too_many_lines", ev.Noop(), b"250-x\r\n" * MAX_REPLY_LINES + b"250 x\r\n"),
    ("354_to_noop", ev.Noop(), b"354 go ahead\r\n"),
    ("354_to_mail", ev.MailFrom("a@example.org"), b"354 go ahead\r\n"),
    ("334_to_noop", ev.Noop(), b"334 \r\n"),
    ("250_to_data", None, b"250 OK\r\n"),
    ("250_to_starttls", ev.StartTls(), b"250 OK\r\n"),
    ("unsolicited_250", None, b""),
]


@pytest.mark.parametrize(
    ("pending", "wire"), [r[1:] for r in BAD_REPLY_ROWS], ids=[r[0] for r in BAD_REPLY_ROWS]
)
def test_bad_reply_is_a_fatal_remote_protocol_error(
    pending: ev.ClientCommand | None, wire: bytes
) -> None:
    conn = ready()
    if pending is not None:
        conn.send(pending)
    elif wire:  # "250_to_data": a transaction up to DATA, with its first replies
        for command in (ev.MailFrom("a@example.org"), ev.RcptTo("b@example.net"), ev.Data()):
            conn.send(command)
        drain(conn, b"250 OK\r\n250 OK\r\n")
    else:  # unsolicited: nothing outstanding
        wire = b"250 OK\r\n"
    with pytest.raises(RemoteProtocolError) as caught:
        drain(conn, wire)
    assert caught.value.fatal
    assert caught.value.reply_hint == R451_PROTOCOL_ERROR
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError):  # it stays failed
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Quit())


def test_reply_split_anywhere_waits_for_the_rest() -> None:
    conn = ready()
    conn.send(ev.Noop())
    assert drain(conn, b"250-part") == []
    assert drain(conn, b"ial\r\n250") == []
    event = only_reply(conn, b" done\r\n")
    assert event.reply.lines == ("partial", "done")


def test_unsolicited_421_is_reported_and_closes() -> None:
    conn = ready()
    event = only_reply(conn, b"421 4.3.2 shutting down\r\n")
    assert event.command is None and event.reply.code == 421
    assert conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Noop())


def test_421_answers_the_head_and_drops_the_rest() -> None:
    conn = ready()
    conn.send(ev.MailFrom("a@example.org"))
    conn.send(ev.RcptTo("b@example.net"))
    event = only_reply(conn, b"421 4.4.2 timeout\r\n")
    assert event.command == ev.MailFrom("a@example.org")
    assert conn.state is State.CLOSED and conn.outstanding_commands == ()


def test_eof_gives_connection_closed_every_time() -> None:
    conn = ready()
    conn.send(ev.Noop())
    conn.receive_data(b"250 par")
    conn.receive_data(b"")
    assert conn.next_event() == ev.ConnectionClosed()
    assert conn.next_event() == ev.ConnectionClosed()
    assert conn.state is State.CLOSED
    assert conn.outstanding_commands == (ev.Noop(),)  # never answered
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more")


def test_greeting_554_closes_but_quit_may_still_be_sent() -> None:
    conn = ClientConnection()
    [greeting] = drain(conn, b"554 5.7.1 go away\r\n")
    assert isinstance(greeting, ev.Greeting) and greeting.reply.code == 554
    assert conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Ehlo(DOMAIN))
    assert conn.send(ev.Quit()) == b"QUIT\r\n"
    assert only_reply(conn, b"221 2.0.0 bye\r\n").command == ev.Quit()
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Quit())


def test_multiline_greeting() -> None:
    conn = ClientConnection()
    [greeting] = drain(conn, b"220-mx.example.test\r\n220 ready\r\n")
    assert isinstance(greeting, ev.Greeting)
    assert greeting.reply.lines == ("mx.example.test", "ready")
    assert conn.state is State.NEED_EHLO


# --------------------------------------------------------------- rendering

RENDER_ROWS = [
    ("ehlo", ev.Ehlo(DOMAIN), b"EHLO client.example.org\r\n"),
    ("ehlo_address_literal", ev.Ehlo("[192.0.2.1]"), b"EHLO [192.0.2.1]\r\n"),
    ("helo", ev.Helo(DOMAIN), b"HELO client.example.org\r\n"),
    ("null_sender", ev.MailFrom(""), b"MAIL FROM:<>\r\n"),
    ("mail", ev.MailFrom("a@example.org"), b"MAIL FROM:<a@example.org>\r\n"),
    (
        "mail_params",
        ev.MailFrom("a@example.org", {"SIZE": "123", "BODY": "8BITMIME"}),
        b"MAIL FROM:<a@example.org> SIZE=123 BODY=8BITMIME\r\n",
    ),
    (
        "mail_utf8",
        ev.MailFrom("grüße@例え.jp", {"SMTPUTF8": None}),
        "MAIL FROM:<grüße@例え.jp> SMTPUTF8\r\n".encode(),
    ),
    (
        "mail_auth_xtext",
        ev.MailFrom("a@example.org", {"AUTH": "a+2Bb@example.org"}),
        b"MAIL FROM:<a@example.org> AUTH=a+2Bb@example.org\r\n",
    ),
    ("data", ev.Data(), b"DATA\r\n"),
    ("bdat", ev.Bdat(10), b"BDAT 10\r\n"),
    ("bdat_last", ev.Bdat(0, last=True), b"BDAT 0 LAST\r\n"),
    ("rset", ev.Rset(), b"RSET\r\n"),
    ("noop", ev.Noop(), b"NOOP\r\n"),
    ("quit", ev.Quit(), b"QUIT\r\n"),
    ("starttls", ev.StartTls(), b"STARTTLS\r\n"),
    ("auth", ev.Auth("plain"), b"AUTH PLAIN\r\n"),
    ("auth_initial", ev.Auth("PLAIN", "AGEAYg=="), b"AUTH PLAIN AGEAYg==\r\n"),
    ("auth_empty_initial", ev.Auth("EXTERNAL", ""), b"AUTH EXTERNAL =\r\n"),
]


@pytest.mark.parametrize(
    ("command", "wire"), [r[1:] for r in RENDER_ROWS], ids=[r[0] for r in RENDER_ROWS]
)
def test_command_is_rendered(command: ev.ClientCommand, wire: bytes) -> None:
    assert ev.render_command(command) == wire


RCPT_ROWS = [
    ("plain", "b@example.net", b"RCPT TO:<b@example.net>\r\n"),
    ("quoted_local_part", '"john doe"@example.net', b'RCPT TO:<"john doe"@example.net>\r\n'),
    ("postmaster", "Postmaster", b"RCPT TO:<Postmaster>\r\n"),
    ("ipv6_literal", "b@[IPv6:2001:db8::1]", b"RCPT TO:<b@[IPv6:2001:db8::1]>\r\n"),
]


@pytest.mark.parametrize(
    ("path", "wire"), [r[1:] for r in RCPT_ROWS], ids=[r[0] for r in RCPT_ROWS]
)
def test_rcpt_is_rendered(path: str, wire: bytes) -> None:
    conn = ready()
    conn.send(ev.MailFrom("a@example.org"))
    assert conn.send(ev.RcptTo(path)) == wire


MALFORMED_ROWS = [
    ("crlf_in_reverse_path", ev.MailFrom("a@example.org>\r\nRSET\r\nMAIL FROM:<x@y.org")),
    ("lf_in_reverse_path", ev.MailFrom("a@exam\nple.org")),
    ("angle_in_reverse_path", ev.MailFrom("a@example.org> SIZE=1")),
    ("space_in_reverse_path", ev.MailFrom("a b@example.org")),
    ("no_domain", ev.MailFrom("a")),
    ("source_route", ev.MailFrom("@relay.example:a@example.org")),
    ("non_ascii_without_smtputf8", ev.MailFrom("grüße@example.org")),
    ("crlf_in_param_value", ev.MailFrom("a@example.org", {"SIZE": "1\r\nRSET"})),
    ("space_in_param_value", ev.MailFrom("a@example.org", {"ENVID": "a b"})),
    ("equals_in_param_value", ev.MailFrom("a@example.org", {"ENVID": "a=b"})),
    ("empty_param_value", ev.MailFrom("a@example.org", {"SIZE": ""})),
    ("bad_param_keyword", ev.MailFrom("a@example.org", {"SI ZE": "1"})),
    ("duplicate_param", ev.MailFrom("a@example.org", {"size": "1", "SIZE": "2"})),
    ("line_too_long", ev.MailFrom("a@example.org", {f"X{i}": "v" * 200 for i in range(16)})),
    ("ehlo_with_space", ev.Ehlo("client example.org")),
    ("ehlo_with_crlf", ev.Ehlo("client.example.org\r\nMAIL FROM:<a@b.org>")),
    ("ehlo_empty", ev.Ehlo("")),
    ("ehlo_not_a_domain", ev.Ehlo("under_score")),
    ("bdat_negative", ev.Bdat(-1)),
    ("bdat_bool_size", ev.Bdat(True)),
    ("sasl_bad_mechanism", ev.Auth("PL AIN")),
    ("sasl_mechanism_too_long", ev.Auth("X" * 21)),
    ("sasl_initial_not_base64", ev.Auth("PLAIN", "abc\r\nQUIT")),
    ("sasl_response_not_base64", ev.AuthResponse("a b")),
    ("sasl_initial_over_512", ev.Auth("PLAIN", "A" * 600)),
    ("sasl_response_over_12288", ev.AuthResponse("A" * 12292)),
    ("end_of_data_is_not_a_command", ev.EndOfData()),
]


@pytest.mark.parametrize(
    "command", [r[1] for r in MALFORMED_ROWS], ids=[r[0] for r in MALFORMED_ROWS]
)
def test_malformed_command_is_refused(command: ev.ClientCommand) -> None:
    with pytest.raises(LocalProtocolError):
        ev.render_command(command)


def test_refused_command_leaves_the_engine_unchanged() -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError):
        conn.send(ev.MailFrom("a@example.org>\r\nRSET"))
    assert conn.outstanding_commands == ()
    assert conn.send(ev.MailFrom("a@example.org")) == b"MAIL FROM:<a@example.org>\r\n"


def test_utf8_rcpt_needs_smtputf8_on_mail() -> None:
    conn = ready()
    conn.send(ev.MailFrom("a@example.org"))
    with pytest.raises(LocalProtocolError):
        conn.send(ev.RcptTo("grüße@example.net"))
    conn.send(ev.Rset())
    conn.send(ev.MailFrom("a@example.org", {"SMTPUTF8": None}))
    assert conn.send(ev.RcptTo("grüße@example.net")) == "RCPT TO:<grüße@example.net>\r\n".encode()


# ------------------------------------------------------------ order rules


def _mail(conn: ClientConnection) -> None:
    conn.send(ev.MailFrom("a@example.org"))


def _mail_rcpt(conn: ClientConnection) -> None:
    _mail(conn)
    conn.send(ev.RcptTo("b@example.net"))


def _data(conn: ClientConnection) -> None:
    _mail_rcpt(conn)
    conn.send(ev.Data())


ORDER_ROWS = [
    ("before_greeting", None, ev.Ehlo(DOMAIN)),
    ("mail_before_ehlo", "greeted", ev.MailFrom("a@example.org")),
    ("starttls_before_ehlo", "greeted", ev.StartTls()),
    ("auth_before_ehlo", "greeted", ev.Auth("PLAIN")),
    ("rcpt_before_mail", "ready", ev.RcptTo("b@example.net")),
    ("data_before_rcpt", "ready", ev.Data()),
    ("data_after_mail_only", _mail, ev.Data()),
    ("bdat_before_rcpt", _mail, ev.Bdat(1, last=True)),
    ("nested_mail", _mail, ev.MailFrom("c@example.org")),
    ("auth_in_transaction", _mail, ev.Auth("PLAIN")),
    ("starttls_in_transaction", _mail, ev.StartTls()),
    ("anything_after_data_before_354", _data, ev.Rset()),
    ("bdat_after_data", _data, ev.Bdat(1)),
    ("lhlo_in_smtp", "greeted", ev.Lhlo(DOMAIN)),
    ("auth_response_without_334", "ready", ev.AuthResponse("")),
]


@pytest.mark.parametrize(
    ("setup", "command"), [r[1:] for r in ORDER_ROWS], ids=[r[0] for r in ORDER_ROWS]
)
def test_command_out_of_order_is_a_local_error(setup: object, command: ev.ClientCommand) -> None:
    if setup is None:
        conn = ClientConnection()
    elif setup == "greeted":
        conn = greeted()
    else:
        conn = ready()
        if callable(setup):
            setup(conn)
    before = conn.outstanding_commands
    with pytest.raises(LocalProtocolError):
        conn.send(command)
    assert conn.outstanding_commands == before


@pytest.mark.parametrize(
    "first",
    [ev.Ehlo(DOMAIN), ev.Noop(), ev.StartTls(), ev.Auth("PLAIN", "AGEAYg=="), ev.Quit()],
    ids=lambda c: type(c).__name__,
)
def test_command_that_ends_a_group_must_be_answered_first(first: ev.ClientCommand) -> None:
    """RFC 2920 §3.1: EHLO, DATA, NOOP, QUIT (and STARTTLS, AUTH) end a pipelined group."""
    conn = ready()
    conn.send(first)
    with pytest.raises(LocalProtocolError, match="RFC 2920"):
        conn.send(ev.Rset())


def test_without_pipelining_each_reply_is_awaited() -> None:
    conn = ready(hello_reply=PLAIN_EHLO_REPLY)
    conn.send(ev.MailFrom("a@example.org"))
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.send(ev.RcptTo("b@example.net"))
    only_reply(conn, b"250 OK\r\n")
    assert conn.send(ev.RcptTo("b@example.net")) == b"RCPT TO:<b@example.net>\r\n"


def test_ehlo_in_lmtp_and_lhlo_rendering() -> None:
    conn = greeted(lmtp=True)
    with pytest.raises(LocalProtocolError, match="LHLO"):
        conn.send(ev.Ehlo(DOMAIN))
    assert conn.send(ev.Lhlo(DOMAIN)) == b"LHLO client.example.org\r\n"


def test_failed_mail_closes_the_transaction_on_our_side() -> None:
    conn = ready()
    _mail_rcpt(conn)
    drain(conn, b"550 5.7.1 no\r\n503 5.5.1 need MAIL\r\n")
    assert conn.outstanding_commands == ()
    assert conn.send(ev.MailFrom("c@example.org")) == b"MAIL FROM:<c@example.org>\r\n"


def test_failed_data_needs_rset() -> None:
    conn = ready()
    _data(conn)
    drain(conn, b"250 OK\r\n250 OK\r\n554 5.5.1 no\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(ev.MailFrom("c@example.org"))
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Data())
    conn.send(ev.Rset())
    only_reply(conn, b"250 OK\r\n")
    conn.send(ev.MailFrom("c@example.org"))


# ----------------------------------------------------------- capabilities


def test_ehlo_capabilities_are_parsed() -> None:
    conn = ready()
    assert conn.extensions == {
        "PIPELINING": "",
        "SIZE": "1000",
        "8BITMIME": "",
        "STARTTLS": "",
        "CHUNKING": "",
        "AUTH": "PLAIN LOGIN",
    }
    assert conn.supports_extension("pipelining")
    assert not conn.supports_extension("SMTPUTF8")
    assert conn.last_ehlo_response is not None
    assert conn.last_ehlo_response.lines[0] == "mx.example.test greets client.example.org"


def test_refused_ehlo_keeps_need_ehlo_and_helo_clears_extensions() -> None:
    conn = greeted()
    conn.send(ev.Ehlo(DOMAIN))
    event = only_reply(conn, b"502 5.5.1 EHLO not implemented\r\n")
    assert event.reply.enhanced == "5.5.1"
    assert conn.state is State.NEED_EHLO
    conn.send(ev.Helo(DOMAIN))
    only_reply(conn, b"250 mx.example.test\r\n")
    assert conn.state is State.READY and conn.extensions == {}


# ------------------------------------------------------------ message content

BODY_ROWS = [
    ("plain", b"Subject: x\r\n\r\nhello\r\n", b"Subject: x\r\n\r\nhello\r\n.\r\n"),
    ("adds_final_crlf", b"hello", b"hello\r\n.\r\n"),
    ("empty", b"", b".\r\n"),
    ("leading_dot", b".hidden\r\n", b"..hidden\r\n.\r\n"),
    ("dot_lines", b"a\r\n.\r\n..\r\n.x\r\n", b"a\r\n..\r\n...\r\n..x\r\n.\r\n"),
    ("lone_dot_content", b".", b"..\r\n.\r\n"),
    ("dot_not_at_line_start", b"a.b\r\n", b"a.b\r\n.\r\n"),
    ("eight_bit", "grüße\r\n".encode(), "grüße\r\n.\r\n".encode()),
]


@pytest.mark.parametrize(
    ("content", "wire"), [r[1:] for r in BODY_ROWS], ids=[r[0] for r in BODY_ROWS]
)
def test_body_is_dot_stuffed_and_terminated(content: bytes, wire: bytes) -> None:
    conn = ready()
    _data(conn)
    drain(conn, b"250 OK\r\n250 OK\r\n354 go\r\n")
    assert conn.can_send_body
    assert conn.send_body(content) == wire
    assert conn.outstanding_commands == (ev.EndOfData(),)
    event = only_reply(conn, b"250 2.0.0 queued\r\n")
    assert event.command == ev.EndOfData() and event.recipient is None


SMUGGLING_ROWS = [
    ("bare_lf", b"a\nb\r\n", b"a\r\nb\r\n.\r\n"),
    ("bare_cr", b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),
    ("lf_dot_crlf", b"a\n.\r\nMAIL FROM:<x@y.org>\r\n", b"a\r\n..\r\nMAIL FROM:<x@y.org>\r\n.\r\n"),
    ("cr_dot_cr", b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
    ("cr_before_crlf", b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n"),
    ("trailing_cr", b"a\r", b"a\r\n.\r\n"),
]


@pytest.mark.parametrize(
    ("content", "normalised"), [r[1:] for r in SMUGGLING_ROWS], ids=[r[0] for r in SMUGGLING_ROWS]
)
def test_bare_newline_in_body_is_refused_or_normalised(content: bytes, normalised: bytes) -> None:
    """SMTP smuggling: a bare CR/LF never reaches the wire; "." + bare newline can't end data."""
    conn = ready()
    _data(conn)
    drain(conn, b"250 OK\r\n250 OK\r\n354 go\r\n")
    with pytest.raises(LocalProtocolError, match="bare CR or LF"):
        conn.send_body(content)
    assert conn.can_send_body  # unchanged: the caller may normalise and retry
    assert conn.send_body(content, normalise_newlines=True) == normalised


def test_body_needs_a_354() -> None:
    conn = ready()
    with pytest.raises(LocalProtocolError, match="354"):
        conn.send_body(b"x")
    _data(conn)
    with pytest.raises(LocalProtocolError, match="354"):
        conn.send_body(b"x")
    drain(conn, b"250 OK\r\n250 OK\r\n354 go\r\n")
    with pytest.raises(LocalProtocolError, match="send_body"):
        conn.send(ev.Rset())


def test_bdat_chunks_are_accounted() -> None:
    conn = ready()
    _mail_rcpt(conn)
    assert conn.send(ev.Bdat(5)) == b"BDAT 5\r\n"
    with pytest.raises(LocalProtocolError, match="BDAT chunk"):
        conn.send(ev.Bdat(1))
    assert conn.send_chunk(b"ab") == b"ab"
    with pytest.raises(LocalProtocolError):
        conn.send_chunk(b"cdef")
    conn.send_chunk(b"c\nd")  # BDAT content is octets: no line-ending rule here
    assert conn.send(ev.Bdat(0, last=True)) == b"BDAT 0 LAST\r\n"
    events = drain(conn, b"250 OK\r\n250 OK\r\n250 5 octets\r\n250 2.0.0 queued\r\n")
    assert [type(e.command).__name__ for e in events if isinstance(e, ev.ServerReply)] == [
        "MailFrom",
        "RcptTo",
        "Bdat",
        "Bdat",
    ]
    conn.send(ev.MailFrom("next@example.org"))  # the transaction ended with LAST


# --------------------------------------------------------------- pipelining


def test_pipelined_replies_match_their_commands_in_order() -> None:
    conn = ready()
    commands: list[ev.ClientCommand] = [
        ev.MailFrom("a@example.org"),
        ev.RcptTo("b@example.net"),
        ev.RcptTo("c@example.net"),
        ev.RcptTo("d@example.net"),
        ev.Data(),
    ]
    for command in commands:
        conn.send(command)
    wire = b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 unknown\r\n250 2.1.5 OK\r\n354 go\r\n"
    events = drain(conn, wire)
    assert [e.command for e in events if isinstance(e, ev.ServerReply)] == commands
    assert [e.reply.code for e in events if isinstance(e, ev.ServerReply)] == [
        250,
        250,
        550,
        250,
        354,
    ]
    assert [r.forward_path for r in conn.accepted_recipients] == ["b@example.net", "d@example.net"]


def lmtp_transaction(conn: ClientConnection) -> None:
    for command in (
        ev.MailFrom("a@example.org"),
        ev.RcptTo("one@example.net"),
        ev.RcptTo("two@example.net"),
        ev.RcptTo("three@example.net"),
    ):
        conn.send(command)


def test_lmtp_gives_one_reply_per_accepted_recipient() -> None:
    """RFC 2033 §4.2: after the end of data, one reply for each RCPT that got a 2xx."""
    conn = ready(lmtp=True)
    lmtp_transaction(conn)
    conn.send(ev.Data())
    drain(conn, b"250 OK\r\n250 OK\r\n550 5.1.1 no such user\r\n250 OK\r\n354 go\r\n")
    conn.send_body(b"Subject: x\r\n\r\nhi\r\n")
    first = only_reply(conn, b"250 2.0.0 <one@example.net> Saved\r\n")
    assert conn.outstanding_commands == (ev.EndOfData(),)  # one more reply owed
    second = only_reply(conn, b"452 4.2.2 <three@example.net> Quota exceeded\r\n")
    assert (first.command, first.recipient) == (ev.EndOfData(), ev.RcptTo("one@example.net"))
    assert (second.command, second.recipient) == (ev.EndOfData(), ev.RcptTo("three@example.net"))
    assert second.reply.enhanced == "4.2.2"
    assert conn.outstanding_commands == () and conn.accepted_recipients == ()
    with pytest.raises(RemoteProtocolError):  # a third reply is one too many
        drain(conn, b"250 OK\r\n")


def test_lmtp_bdat_last_pipelined_before_the_rcpt_replies() -> None:
    """How many final replies are owed is learnt from RCPT replies that follow BDAT LAST."""
    conn = ready(lmtp=True)
    lmtp_transaction(conn)
    conn.send(ev.Bdat(3, last=True))
    conn.send_chunk(b"x\r\n")
    wire = (
        b"250 OK\r\n250 OK\r\n250 OK\r\n550 5.1.1 no\r\n"
        b"250 2.0.0 one saved\r\n451 4.3.0 two failed\r\n"
    )
    events = [e for e in drain(conn, wire, bytewise=True) if isinstance(e, ev.ServerReply)]
    finals = [(e.recipient.forward_path, e.reply.code) for e in events if e.recipient]
    assert finals == [("one@example.net", 250), ("two@example.net", 451)]
    assert conn.outstanding_commands == ()


def test_lmtp_with_no_accepted_recipient_expects_one_reply_to_the_end() -> None:
    conn = ready(lmtp=True)
    conn.send(ev.MailFrom("a@example.org"))
    conn.send(ev.RcptTo("x@example.net"))
    conn.send(ev.Bdat(1, last=True))
    conn.send_chunk(b"x")
    events = drain(conn, b"250 OK\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n")
    last = events[-1]
    assert isinstance(last, ev.ServerReply) and last.recipient is None and last.reply.code == 554
    assert conn.outstanding_commands == ()


def test_lmtp_failed_chunk_means_a_single_final_reply() -> None:
    conn = ready(lmtp=True)
    lmtp_transaction(conn)
    conn.send(ev.Bdat(1))
    conn.send_chunk(b"x")
    conn.send(ev.Bdat(0, last=True))
    wire = b"250 OK\r\n250 OK\r\n250 OK\r\n250 OK\r\n452 4.3.1 no space\r\n503 5.5.1 failed\r\n"
    events = drain(conn, wire)
    assert isinstance(events[-1], ev.ServerReply) and events[-1].recipient is None
    assert conn.outstanding_commands == ()


# -------------------------------------------------------------------- AUTH


def test_auth_continuation_allows_only_responses() -> None:
    conn = ready()
    conn.send(ev.Auth("LOGIN"))
    event = only_reply(conn, b"334 VXNlcm5hbWU6\r\n")
    assert event.reply.lines == ("VXNlcm5hbWU6",) and event.reply.enhanced is None
    with pytest.raises(LocalProtocolError, match="334"):
        conn.send(ev.Noop())
    assert conn.send(ev.AuthResponse("dXNlcg==")) == b"dXNlcg==\r\n"
    only_reply(conn, b"334 UGFzc3dvcmQ6\r\n")
    conn.send(ev.AuthResponse("cGFzcw=="))
    only_reply(conn, b"235 2.7.0 Authentication successful\r\n")
    assert conn.authenticated
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Auth("PLAIN"))  # RFC 4954 §4: no second AUTH


def test_auth_can_be_cancelled() -> None:
    conn = ready()
    conn.send(ev.Auth("LOGIN"))
    only_reply(conn, b"334 VXNlcm5hbWU6\r\n")
    assert conn.send(ev.AuthResponse("*")) == b"*\r\n"
    only_reply(conn, b"501 5.0.0 cancelled\r\n")
    assert not conn.authenticated
    conn.send(ev.Noop())


def test_long_sasl_challenge_is_refused_not_cut() -> None:
    conn = ready()
    conn.send(ev.Auth("GSSAPI"))
    with pytest.raises(RemoteProtocolError):
        drain(conn, b"334 " + b"A" * 450 + b"\r\n")


def test_auth_secrets_are_not_in_repr() -> None:
    assert "c2VjcmV0" not in repr(ev.Auth("PLAIN", "c2VjcmV0"))
    assert "c2VjcmV0" not in repr(ev.AuthResponse("c2VjcmV0"))


# ---------------------------------------------------------------- STARTTLS


def test_starttls_then_tls_established_requires_ehlo_again() -> None:
    conn = ready()
    conn.send(ev.StartTls())
    only_reply(conn, b"220 2.0.0 Ready to start TLS\r\n")
    assert conn.state is State.TLS_PENDING
    assert conn.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Ehlo(DOMAIN))
    conn.tls_established()
    assert conn.tls_active and conn.state is State.NEED_EHLO
    assert conn.extensions == {} and conn.last_ehlo_response is None
    with pytest.raises(LocalProtocolError):
        conn.send(ev.MailFrom("a@example.org"))
    with pytest.raises(LocalProtocolError):
        conn.tls_established()
    conn.send(ev.Ehlo(DOMAIN))
    only_reply(conn, b"250-mx.example.test\r\n250 PIPELINING\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(ev.StartTls())  # not twice


def test_refused_starttls_keeps_plaintext() -> None:
    conn = ready()
    conn.send(ev.StartTls())
    only_reply(conn, b"454 4.7.0 TLS not available\r\n")
    assert conn.state is State.READY and not conn.tls_active


@pytest.mark.parametrize("bytewise", [False, True], ids=["one_read", "bytewise"])
def test_replies_injected_after_starttls_220_are_fatal(bytewise: bool) -> None:
    """CVE-2011-0411 class, client side: plaintext behind the 220 is never read as TLS data."""
    conn = ready()
    conn.send(ev.StartTls())
    injected = b"220 Ready\r\n250-evil.example\r\n250 AUTH PLAIN\r\n"
    with pytest.raises(RemoteProtocolError) as caught:
        drain(conn, injected, bytewise=bytewise)
    assert caught.value.reply_hint == R451_TLS_INJECTION and caught.value.fatal
    assert conn.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.tls_established()


def test_data_arriving_at_the_tls_cut_is_fatal() -> None:
    conn = ready()
    conn.send(ev.StartTls())
    only_reply(conn, b"220 Ready\r\n")
    conn.receive_data(b"250 late\r\n")
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert caught.value.reply_hint == R451_TLS_INJECTION


def test_implicit_tls_never_sends_starttls() -> None:
    conn = ClientConnection(implicit_tls=True)
    drain(conn, GREETING)
    conn.send(ev.Ehlo(DOMAIN))
    drain(conn, EHLO_REPLY)
    with pytest.raises(LocalProtocolError):
        conn.send(ev.StartTls())


# -------------------------------------------------------------------- fuzz

_OCTETS = [b"2", b"3", b"4", b"5", b"0", b"1", b"9", b" ", b"-", b"\r", b"\n", b".", b"x", b"\xff"]
_PIECES = [
    b"\r\n",
    b"250 OK\r\n",
    b"250-",
    b"354 go\r\n",
    b"220 x\r\n",
    b"421 bye\r\n",
    b"550 5.1.1 no\r\n",
]
REPLY_ALPHABET = st.sampled_from([*_OCTETS, *_PIECES])


def run_all(conn: ClientConnection, data: bytes, bytewise: bool) -> tuple[list[object], bool]:
    events: list[object] = []
    try:
        pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
        for piece in pieces:
            if piece:
                conn.receive_data(piece)
            while (event := conn.next_event()) not in (NEED_DATA, PAUSED):
                events.append(event)
                if isinstance(event, ev.ConnectionClosed):
                    return events, False
    except RemoteProtocolError:
        return events, True
    return events, False


@given(st.lists(REPLY_ALPHABET, max_size=60).map(b"".join), st.booleans())
def test_any_bytes_give_events_or_remote_protocol_error(data: bytes, lmtp: bool) -> None:
    results = []
    for bytewise in (False, True):
        conn = ClientConnection(lmtp=lmtp)
        conn.receive_data(GREETING)
        conn.next_event()
        conn.send(ev.Lhlo(DOMAIN) if lmtp else ev.Ehlo(DOMAIN))
        conn.receive_data(b"250-x\r\n250 PIPELINING\r\n")
        conn.next_event()
        for command in (ev.MailFrom("a@example.org"), ev.RcptTo("b@example.net"), ev.Data()):
            conn.send(command)
        results.append(run_all(conn, data, bytewise))
        assert len(conn._buf) <= 512 + 64  # bounded: at most one partial line
    assert results[0] == results[1]
