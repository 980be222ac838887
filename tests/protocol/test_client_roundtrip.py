"""Round trips: the client engine's bytes go into the server engine and back (h11's ConnectionPair).

Each test drives a :class:`ClientConnection` against a
:class:`~postguard.protocol.ServerConnection` answered by the permissive
session of ``helpers.engine_pair.Dialogue``: the client's bytes are fed to the
server, the server's replies to the client. Nothing is mocked and nothing is
hand-written on the wire.

Covers a pipelined transaction with dot lines and 8-bit content (the message
the server hands out is exactly the client's content), any content (Hypothesis),
newline normalisation against SMTP smuggling, BDAT chunks, STARTTLS on both
sides, per-command rejections in a pipelined batch, server-side grammar
errors (552 for SIZE) matched to the right command, AUTH with an initial
response, SMTPUTF8 addresses, capabilities learnt from the server's own EHLO
response, and QUIT.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.engine_pair import Answer, Dialogue
from postguard.protocol import (
    LocalProtocolError,
    ServerOptions,
    State,
    replies,
)
from postguard.protocol import client_events as ev
from postguard.protocol import commands as c
from postguard.protocol.client import NEED_DATA, PAUSED, ClientConnection

DOMAIN = "client.example.org"


class Pair:
    """A client engine wired to a server engine; bytes move only through ``exchange``."""

    def __init__(
        self,
        options: ServerOptions | None = None,
        *,
        policy: dict[type[c.Command], Answer] | None = None,
    ) -> None:
        self.server = Dialogue(options, policy=policy, complete_tls=False)
        self.client = ClientConnection()
        self._seen = 0
        greeting = self.server.transcript.greeting
        assert greeting is not None
        self.client.receive_data(greeting.render())
        [event] = self._client_events()
        assert isinstance(event, ev.Greeting) and event.reply.code == 220

    def exchange(self, wire: bytes) -> list[ev.ServerReply]:
        """Feed the client's bytes to the server; its replies back to the client."""
        self.server.feed(wire)
        new = self.server.transcript.replies[self._seen :]
        self._seen = len(self.server.transcript.replies)
        self.client.receive_data(b"".join(reply.render() for reply in new))
        events = self._client_events()
        assert all(isinstance(e, ev.ServerReply) for e in events), events
        return events  # type: ignore[return-value]

    def send(self, *commands: ev.ClientCommand) -> list[ev.ServerReply]:
        """Send commands as one write (pipelined when more than one)."""
        return self.exchange(b"".join(self.client.send(command) for command in commands))

    def hello(self) -> ev.ServerReply:
        [reply] = self.send(ev.Ehlo(DOMAIN))
        assert reply.reply.code == 250
        return reply

    def _client_events(self) -> list[ev.ClientEvent]:
        out: list[ev.ClientEvent] = []
        while (event := self.client.next_event()) not in (NEED_DATA, PAUSED):
            assert isinstance(event, ev.ClientEvent)
            out.append(event)
        return out


def codes(events: list[ev.ServerReply]) -> list[int]:
    return [e.reply.code for e in events]


def test_capabilities_come_from_the_server_engine() -> None:
    pair = Pair()
    pair.hello()
    assert pair.client.supports_extension("PIPELINING")
    assert pair.client.supports_extension("CHUNKING")
    assert pair.client.supports_extension("STARTTLS")
    assert pair.client.extensions["SIZE"] == str(ServerOptions().max_message_size)
    plain = Pair(ServerOptions(chunking=False, starttls=False, smtputf8=False))
    plain.hello()
    assert not plain.client.supports_extension("CHUNKING")
    assert not plain.client.supports_extension("STARTTLS")


def test_pipelined_transaction_delivers_the_exact_content() -> None:
    content = (
        b"From: a@example.org\r\nSubject: round trip\r\n\r\n"
        b".leading dot\r\n.\r\n..\r\nend of data lookalike: \r\n.\r\n" + "8-bit: grüße\r\n".encode()
    )
    pair = Pair()
    pair.hello()
    commands: list[ev.ClientCommand] = [
        ev.MailFrom("a@example.org", {"BODY": "8BITMIME", "SIZE": str(len(content))}),
        ev.RcptTo("b@example.net"),
        ev.RcptTo("c@example.net"),
        ev.Data(),
    ]
    events = pair.send(*commands)
    assert [e.command for e in events] == commands
    assert codes(events) == [250, 250, 250, 354]
    [end] = pair.exchange(pair.client.send_body(content))
    assert end.command == ev.EndOfData() and end.reply.code == 250
    assert pair.server.transcript.messages == [content]
    mail = pair.server.transcript.of_type(c.MailFrom)[0]
    assert isinstance(mail, c.MailFrom)
    assert str(mail.reverse_path) == "a@example.org" and mail.size == len(content)
    rcpts = [str(e.forward_path) for e in pair.server.transcript.of_type(c.RcptTo)]  # type: ignore[attr-defined]
    assert rcpts == ["b@example.net", "c@example.net"]
    [bye] = pair.send(ev.Quit())
    assert bye.reply.code == 221
    assert pair.client.state is State.CLOSED and pair.server.conn.state is State.CLOSED


LINE = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@given(st.lists(LINE, max_size=20), st.booleans())
def test_any_content_arrives_unchanged(lines: list[bytes], final_crlf: bool) -> None:
    content = b"\r\n".join(lines) + (b"\r\n" if final_crlf and lines else b"")
    pair = Pair(ServerOptions(max_message_size=None))
    pair.hello()
    assert (
        codes(pair.send(ev.MailFrom("a@example.org"), ev.RcptTo("b@example.net"), ev.Data()))[-1]
        == 354
    )
    [end] = pair.exchange(pair.client.send_body(content))
    assert end.reply.code == 250
    expected = content if not content or content.endswith(b"\r\n") else content + b"\r\n"
    assert pair.server.transcript.messages == [expected]


def test_smuggling_attempt_is_normalised_into_one_harmless_message() -> None:
    """SMTP smuggling: "<LF>.<CR><LF>" must not end the data at the next hop."""
    content = (
        b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<v@example.net>\r\n"
    )
    pair = Pair()
    pair.hello()
    pair.send(ev.MailFrom("a@example.org"), ev.RcptTo("b@example.net"), ev.Data())
    with pytest.raises(LocalProtocolError):
        pair.client.send_body(content)
    [end] = pair.exchange(pair.client.send_body(content, normalise_newlines=True))
    assert end.reply.code == 250
    assert pair.server.transcript.messages == [content.replace(b"hello\n", b"hello\r\n")]
    assert len(pair.server.transcript.of_type(c.MailFrom)) == 1  # no smuggled command


def test_bdat_chunks_round_trip() -> None:
    pair = Pair()
    pair.hello()
    first, second = b"Subject: chunks\r\n\r\n", b"binary-ish \x00 part\r\n"
    wire = pair.client.send(ev.MailFrom("a@example.org")) + pair.client.send(
        ev.RcptTo("b@example.net")
    )
    wire += pair.client.send(ev.Bdat(len(first))) + pair.client.send_chunk(first)
    wire += pair.client.send(ev.Bdat(len(second), last=True)) + pair.client.send_chunk(second)
    events = pair.exchange(wire)
    assert codes(events) == [250, 250, 250, 250]
    assert [type(e.command).__name__ for e in events] == ["MailFrom", "RcptTo", "Bdat", "Bdat"]
    assert pair.server.transcript.messages == [first + second]


def test_starttls_cut_on_both_sides() -> None:
    pair = Pair()
    pair.hello()
    [ready] = pair.send(ev.StartTls())
    assert ready.reply.code == 220
    assert pair.client.state is State.TLS_PENDING
    assert pair.server.conn.state is State.TLS_PENDING
    # Both sides now run the handshake (not part of the engines), then:
    pair.server.establish_tls()
    pair.client.tls_established()
    with pytest.raises(LocalProtocolError):
        pair.client.send(ev.MailFrom("a@example.org"))
    pair.hello()
    assert pair.client.tls_active and not pair.client.supports_extension("STARTTLS")
    events = pair.send(ev.MailFrom("a@example.org"), ev.RcptTo("b@example.net"), ev.Data())
    assert codes(events) == [250, 250, 354]


def _refuse_unknown(event: c.Command, dlg: Dialogue) -> replies.Reply:
    assert isinstance(event, c.RcptTo)
    if event.forward_path.local_part == "unknown":
        return replies.R550_NO_SUCH_USER
    return replies.R250_RECIPIENT_OK


def test_rejections_in_a_pipelined_batch_hit_the_right_commands() -> None:
    pair = Pair(policy={c.RcptTo: _refuse_unknown})
    pair.hello()
    events = pair.send(
        ev.MailFrom("a@example.org"),
        ev.RcptTo("known@example.net"),
        ev.RcptTo("unknown@example.net"),
        ev.RcptTo("other@example.net"),
        ev.Data(),
    )
    assert [(e.reply.code, e.reply.enhanced) for e in events] == [
        (250, "2.1.0"),
        (250, "2.1.5"),
        (550, "5.1.1"),
        (250, "2.1.5"),
        (354, None),
    ]
    assert [r.forward_path for r in pair.client.accepted_recipients] == [
        "known@example.net",
        "other@example.net",
    ]


def test_server_grammar_error_is_matched_to_its_command() -> None:
    pair = Pair(ServerOptions(max_message_size=100))
    pair.hello()
    events = pair.send(ev.MailFrom("a@example.org", {"SIZE": "1000"}), ev.RcptTo("b@example.net"))
    assert [(e.command, e.reply.code) for e in events] == [
        (ev.MailFrom("a@example.org", {"SIZE": "1000"}), 552),
        (ev.RcptTo("b@example.net"), 503),
    ]
    [ok] = pair.send(ev.MailFrom("a@example.org", {"SIZE": "10"}))
    assert ok.reply.code == 250


def test_auth_with_initial_response() -> None:
    pair = Pair(ServerOptions(auth=True))
    pair.hello()
    [done] = pair.send(ev.Auth("PLAIN", "AGFsaWNlAHNlY3JldA=="))
    assert done.reply.code == 235 and pair.client.authenticated
    auth = pair.server.transcript.of_type(c.Auth)[0]
    assert isinstance(auth, c.Auth) and auth.initial_response == b"\x00alice\x00secret"


def test_smtputf8_addresses_round_trip() -> None:
    pair = Pair()
    pair.hello()
    events = pair.send(
        ev.MailFrom("grüße@bücher.example", {"SMTPUTF8": None}),
        ev.RcptTo("δοκιμή@παράδειγμα.example"),
    )
    assert codes(events) == [250, 250]
    mail = pair.server.transcript.of_type(c.MailFrom)[0]
    assert isinstance(mail, c.MailFrom) and mail.smtputf8
    assert str(mail.reverse_path) == "grüße@bücher.example"


def test_rset_mid_transaction() -> None:
    pair = Pair()
    pair.hello()
    events = pair.send(ev.MailFrom("a@example.org"), ev.RcptTo("b@example.net"), ev.Rset())
    assert codes(events) == [250, 250, 250]
    assert pair.client.accepted_recipients == ()
    assert codes(pair.send(ev.MailFrom("c@example.org"))) == [250]
