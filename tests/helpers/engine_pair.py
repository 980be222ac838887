"""Drive the sans-IO server engine with bytes and an "accept everything" session.

``run(b"EHLO x\\r\\nMAIL FROM:<a@b>\\r\\n...")`` feeds the bytes to a fresh
:class:`~postguard.protocol.ServerConnection` (after its 220 greeting), answers
every event the way a permissive session would, and returns a
:class:`Transcript`: the replies in order, the events, the engine's
``RemoteProtocolError``s and the messages delivered (the ``MessageData`` of one
accepted ``EndOfMessage``, joined). Bytes can be fed in one write, byte by byte,
or in any list of writes, so tests can check that framing does not depend on
how the peer's bytes were split.

The default answers (:data:`DEFAULT_ANSWERS`): 250 to EHLO (with the keywords
of :func:`~postguard.protocol.extensions.ehlo_keywords`) and HELO, 250 to MAIL
and RCPT, 354 to DATA, 250 "queued" to an accepted message, 250 to a chunk,
250 to RSET/NOOP, 221 to QUIT, 252 to VRFY (no disclosure), 502 to EXPN, 214 to
HELP, 235 to AUTH and 220 to STARTTLS, after which ``tls_established()`` is
called at once (unless ``complete_tls=False``). An ``EndOfMessage`` or
``EndOfChunk`` carrying an engine violation is always answered with that
violation. ``policy`` overrides any answer, with a ``Reply`` or a callable.

The driver also records, after every ``next_event`` loop that drained the input
(``NEED_DATA``), how many octets the engine still buffers (``_buf``, and the
DATA receiver's carried partial line): tests may read these private attributes
to check that memory stays bounded (STYLE.md §2).

This is the server half of STYLE.md's ``engine_pair.py``; the client⇄server
pair (h11's ``ConnectionPair``) joins it when ``protocol/client.py`` exists.

Must not: do I/O, or decide anything a real session would decide differently
in a way tests rely on without overriding ``policy``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from postguard.protocol import (
    NEED_DATA,
    PAUSED,
    RemoteProtocolError,
    ServerConnection,
    ServerOptions,
    State,
    extensions,
    replies,
)
from postguard.protocol import commands as c
from postguard.protocol.replies import Reply

HOSTNAME = "mx.example.test"
R235_AUTHENTICATED = Reply.of(235, "2.7.0", "Authentication successful")

EHLO = b"EHLO client.example.org\r\n"
MAIL = b"MAIL FROM:<sender@example.org>\r\n"
RCPT = b"RCPT TO:<rcpt@example.net>\r\n"
ENVELOPE = EHLO + MAIL + RCPT

Answer = Reply | Callable[[c.Command, "Dialogue"], Reply]
Policy = Mapping[type[c.Command], Answer]
E = TypeVar("E", bound=c.Event)


def _ehlo_answer(event: c.Command, dlg: Dialogue) -> Reply:
    assert isinstance(event, c.Ehlo)
    keywords = extensions.ehlo_keywords(dlg.conn.options, tls_active=dlg.conn.tls_active)
    return replies.ehlo_response(HOSTNAME, event.domain, keywords)


def _queued_answer(event: c.Command, dlg: Dialogue) -> Reply:
    return replies.queued(f"Q{len(dlg.transcript.messages) + 1:04d}")


def _chunk_answer(event: c.Command, dlg: Dialogue) -> Reply:
    assert isinstance(event, c.EndOfChunk)
    return replies.chunk_received(event.octets)


DEFAULT_ANSWERS: Mapping[type[c.Command], Answer] = {
    c.Ehlo: _ehlo_answer,
    c.Helo: replies.helo_response(HOSTNAME),
    c.MailFrom: replies.R250_SENDER_OK,
    c.RcptTo: replies.R250_RECIPIENT_OK,
    c.StartData: replies.R354_START_DATA,
    c.EndOfMessage: _queued_answer,
    c.EndOfChunk: _chunk_answer,
    c.Rset: replies.R250_RESET,
    c.Noop: replies.R250_OK,
    c.Quit: replies.R221_BYE,
    c.Vrfy: replies.R252_CANNOT_VRFY,
    c.Expn: replies.R502_NOT_IMPLEMENTED,
    c.Help: replies.R214_HELP,
    c.StartTls: replies.R220_READY_TO_START_TLS,
    c.Auth: R235_AUTHENTICATED,
}

_STOPPED = frozenset({State.CLOSED, State.ERROR})


@dataclass
class Transcript:
    """What happened while bytes were fed through the engine.

    Attributes:
        greeting: the 220 sent before any input, or None.
        replies: every reply sent after the greeting, in order.
        events: every event ``next_event`` returned (not the sentinels).
        errors: every ``RemoteProtocolError`` the engine raised, in order.
        messages: the content of each accepted message.
        rejected: ``EndOfMessage``/``EndOfChunk`` events answered negatively.
        content_octets: total octets of ``MessageData`` the engine handed out.
        max_message_octets: the most ``MessageData`` octets of one message.
        max_buffered: the largest ``len(conn._buf)`` after a drain.
        max_carried: the largest partial line the DATA receiver carried after a drain.
    """

    greeting: Reply | None = None
    replies: list[Reply] = field(default_factory=list)
    events: list[c.Event] = field(default_factory=list)
    errors: list[RemoteProtocolError] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    rejected: list[c.EndOfMessage | c.EndOfChunk] = field(default_factory=list)
    content_octets: int = 0
    max_message_octets: int = 0
    max_buffered: int = 0
    max_carried: int = 0

    @property
    def wire(self) -> bytes:
        """The replies as the peer would read them."""
        return b"".join(reply.render() for reply in self.replies)

    @property
    def codes(self) -> list[str]:
        """Each reply as "code enhanced" ("250 2.1.0"), or just "code" without one."""
        return [f"{r.code} {r.enhanced}" if r.enhanced else str(r.code) for r in self.replies]

    @property
    def last(self) -> Reply:
        """The last reply sent."""
        return self.replies[-1]

    @property
    def commands(self) -> list[c.Command]:
        """The command events (those that expect a reply), in order."""
        return [e for e in self.events if isinstance(e, c.Command)]

    def of_type(self, kind: type[E]) -> list[E]:
        """The events of one type, in order."""
        return [e for e in self.events if isinstance(e, kind)]

    def normalized(self) -> tuple[bytes, tuple[bytes, ...], tuple[c.Event, ...]]:
        """Replies, delivered messages, and the events other than ``MessageData``.

        Two feeds of the same bytes must give equal values, however they were
        split. ``MessageData`` is left out on purpose: how content is cut into
        events depends on the reads, and a message that is then rejected may have
        released a clean prefix in one feed and nothing in another. Delivered
        content is compared through ``messages``.
        """
        events = tuple(e for e in self.events if not isinstance(e, c.MessageData))
        return self.wire, tuple(self.messages), events


class Dialogue:
    """A ServerConnection plus a permissive session, fed bytes by the test."""

    def __init__(
        self,
        options: ServerOptions | None = None,
        *,
        policy: Policy | None = None,
        greet: bool = True,
        complete_tls: bool = True,
    ) -> None:
        """Create the engine and, unless ``greet`` is False, send the 220 greeting.

        Args:
            options: the engine's options (defaults: ``ServerOptions()``).
            policy: answers that replace :data:`DEFAULT_ANSWERS` for some events.
            greet: send the greeting now.
            complete_tls: call ``tls_established()`` right after a 220 to
                STARTTLS. When False the dialogue stops at the TLS cut: further
                input is not fed (it would be TLS records), until the test calls
                :meth:`establish_tls`.
        """
        self.conn = ServerConnection(options)
        self.answers: dict[type[c.Command], Answer] = {**DEFAULT_ANSWERS, **(policy or {})}
        self.complete_tls = complete_tls
        self.transcript = Transcript()
        self._content: list[bytes] = []
        self._content_octets = 0
        self._eof = False
        if greet:
            self.transcript.greeting = replies.greeting(HOSTNAME)
            self.conn.send(self.transcript.greeting)

    @property
    def is_stopped(self) -> bool:
        """True once the engine will take no more input (closed, failed, or at the TLS cut)."""
        return self.conn.state in _STOPPED or self.conn.state is State.TLS_PENDING

    def feed(self, data: bytes) -> Transcript:
        """Feed one write and answer every event it produces."""
        if data and not self._eof and not self.is_stopped:
            self.conn.receive_data(data)
            self.pump()
        return self.transcript

    def feed_bytewise(self, data: bytes) -> Transcript:
        """Feed ``data`` one octet per write."""
        for i in range(len(data)):
            self.feed(data[i : i + 1])
        return self.transcript

    def feed_all(self, writes: Iterable[bytes]) -> Transcript:
        """Feed each element of ``writes`` as one write."""
        for data in writes:
            self.feed(data)
        return self.transcript

    def close(self) -> Transcript:
        """Signal EOF (``b""``) and answer what remains."""
        if not self._eof and self.conn.state not in _STOPPED:
            self._eof = True
            self.conn.receive_data(b"")
            self.pump()
        return self.transcript

    def establish_tls(self) -> Transcript:
        """Complete a pending STARTTLS (``tls_established()``) and continue."""
        self.conn.tls_established()
        self.pump()
        return self.transcript

    def pump(self) -> None:
        """Pull events until the engine needs data or pauses; answer each one."""
        while True:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as err:
                self.transcript.errors.append(err)
                self._send(err.reply_hint)
                continue
            if event is NEED_DATA:
                self._measure()
                return
            if event is PAUSED:
                return
            assert isinstance(event, c.Event)
            self.transcript.events.append(event)
            self._handle(event)

    def _measure(self) -> None:
        t = self.transcript
        t.max_buffered = max(t.max_buffered, len(self.conn._buf))
        receiver = self.conn._data
        if receiver is not None and self.conn.state is State.DATA:
            t.max_carried = max(t.max_carried, len(receiver._carry))

    def _handle(self, event: c.Event) -> None:
        if isinstance(event, c.MessageData):
            self._content.append(event.data)
            self._content_octets += len(event.data)
            self.transcript.content_octets += len(event.data)
            self.transcript.max_message_octets = max(
                self.transcript.max_message_octets, self._content_octets
            )
            return
        if not isinstance(event, c.Command):
            return  # ConnectionClosed
        if isinstance(event, c.EndOfMessage | c.EndOfChunk) and event.violation is not None:
            reply = event.violation
        else:
            reply = self._answer(event)
        self._send(reply)
        if isinstance(event, c.EndOfMessage | c.EndOfChunk):
            self._end_of_content(event, reply)
        if isinstance(event, c.StartTls) and reply.code == 220 and self.complete_tls:
            self.conn.tls_established()

    def _answer(self, event: c.Command) -> Reply:
        answer = self.answers[type(event)]
        return answer if isinstance(answer, Reply) else answer(event, self)

    def _end_of_content(self, event: c.EndOfMessage | c.EndOfChunk, reply: Reply) -> None:
        if not reply.is_positive:
            self.transcript.rejected.append(event)
        elif isinstance(event, c.EndOfMessage):
            self.transcript.messages.append(b"".join(self._content))
        else:
            return  # an accepted chunk: the message goes on
        self._content.clear()
        self._content_octets = 0

    def _send(self, reply: Reply) -> None:
        self.conn.send(reply)
        self.transcript.replies.append(reply)


def run(
    data: bytes | Iterable[bytes] = b"",
    *,
    options: ServerOptions | None = None,
    policy: Policy | None = None,
    bytewise: bool = False,
    eof: bool = False,
    complete_tls: bool = True,
) -> Transcript:
    """Feed ``data`` to a fresh, greeted engine and return the transcript.

    Args:
        data: one write (``bytes``), or an iterable of writes.
        options: engine options.
        policy: answers overriding :data:`DEFAULT_ANSWERS`.
        bytewise: feed one octet per write.
        eof: signal EOF after the data.
        complete_tls: see :class:`Dialogue`.
    """
    dlg = Dialogue(options, policy=policy, complete_tls=complete_tls)
    writes = [data] if isinstance(data, bytes | bytearray) else list(data)
    for write in writes:
        if bytewise:
            dlg.feed_bytewise(bytes(write))
        else:
            dlg.feed(bytes(write))
    if eof:
        dlg.close()
    return dlg.transcript


def two_way_splits(data: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """Every way to cut ``data`` into two non-empty writes: (cut position, writes)."""
    for i in range(1, len(data)):
        yield i, [data[:i], data[i:]]
