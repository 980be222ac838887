"""ClientConnection: the sans-IO client side of SMTP and LMTP.

Theory of operation
-------------------
The mirror of ``server.py`` (h11's shape). The caller turns commands into bytes
with :meth:`ClientConnection.send` (and message content with ``send_body`` /
``send_chunk``), writes them, feeds what the server sends to
:meth:`ClientConnection.receive_data` (``b""`` means EOF) and pulls events with
:meth:`ClientConnection.next_event`: one :class:`~.client_events.Greeting`, then
one :class:`~.client_events.ServerReply` per reply, or :data:`NEED_DATA`, or
:data:`PAUSED` at the STARTTLS cut.

Every command sent is appended to a FIFO; each reply answers the head of it, so
pipelined replies (RFC 2920 §3) come out matched to their commands. The end of
the message is an entry too (:class:`~.client_events.EndOfData`, or
``Bdat(last=True)``). In LMTP that entry is answered once per recipient that
got a 2xx to RCPT (RFC 2033 §4.2). Which recipients those are is only known
when the entry reaches the head of the FIFO: RCPT replies come back in order
before it, even when MAIL, RCPT and BDAT LAST were pipelined in one write.

The engine keeps two views: what we have *sent* (is a transaction open, has a
RCPT been sent, may the body go now) decides whether ``send`` is legal
(:class:`LocalProtocolError` if not). What we have *received* (greeted, EHLO
done, capabilities, accepted recipients) comes from replies in FIFO order.

What the engine enforces, because it is grammar, not policy: the syntax of
every command it sends (``client_events.render_command``: a CR or LF can never
reach the wire inside a path, parameter or domain), the pipelining rules
(RFC 2920 §3.1), no bare CR/LF in DATA content (SMTP smuggling),
dot-stuffing, reply syntax and limits
(RFC 5321 §4.2, §4.5.3.1.5), and the STARTTLS cut (RFC 3207; CVE-2011-0411).
A reply that breaks those rules is a fatal :class:`RemoteProtocolError`: after
it, replies can no longer be matched to commands. Its ``reply_hint`` is a 4xx
the caller can record against the message (try again later).

Parsed replies become :class:`~.replies.Reply` values. ``Reply`` refuses text
lines over 400 characters, while a wire line may hold up to 508 octets of text;
longer text is cut to 400 characters (it is only ever logged), except in a 334
SASL challenge, where cutting would corrupt it: that is refused. (So SASL
challenges are limited to 400 characters of base64: enough for PLAIN, LOGIN,
CRAM-MD5, XOAUTH2 and OAUTHBEARER errors; GSSAPI would need more.)

Must not: do I/O, read clocks, log, or decide policy (whether to use STARTTLS,
what to do with a 4xx): that is the caller's.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from . import client_events as ev
from .client_events import render_command
from .errors import LocalProtocolError, RemoteProtocolError
from .extensions import PIPELINING, parse_ehlo_response
from .replies import Reply
from .server import NEED_DATA, PAUSED, Sentinel
from .state import State

__all__ = [
    "MAX_REPLY_LINES",
    "MAX_REPLY_LINE_OCTETS",
    "NEED_DATA",
    "PAUSED",
    "R451_PROTOCOL_ERROR",
    "R451_TLS_INJECTION",
    "ClientConnection",
]

MAX_REPLY_LINE_OCTETS = 512  # RFC 5321 §4.5.3.1.5: reply line incl. code and CRLF
# Not an RFC limit: it bounds one reply to 100 x 512 = 51,200 octets. The longest
# replies in practice are EHLO responses of 10-30 lines.
MAX_REPLY_LINES = 100
_MAX_REPLY_TEXT = 400  # Reply's limit for one line of text (replies.py)

# What the caller records against the message when the server broke the protocol:
# RFC 3463 X.5.0 "other or undefined protocol status"; X.7.0 "other security status".
R451_PROTOCOL_ERROR = Reply.of(451, "4.5.0", "Remote server protocol error")
R451_TLS_INJECTION = Reply.of(451, "4.7.0", "Remote server sent data before the TLS handshake")

# RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39, then SP or "-" and text.
_REPLY_LINE = re.compile(rb"([2-5][0-5][0-9])(?:([ -])(.*))?", re.DOTALL)
# RFC 3463 §2: class "." subject "." detail, subject and detail 1*3digit.
_ENHANCED = re.compile(r"([245])\.[0-9]{1,3}\.[0-9]{1,3}(?= |$)")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ANY_NEWLINE = re.compile(rb"\r\n|\r|\n")

# RFC 2920 §3.1 (and RFC 3207 §4.2, RFC 4954 §4): these end a pipelined group; the
# client waits for their reply before sending anything else.
_ENDS_GROUP = (
    ev.Ehlo,
    ev.Helo,
    ev.Lhlo,
    ev.Data,
    ev.Noop,
    ev.Quit,
    ev.StartTls,
    ev.Auth,
    ev.AuthResponse,
)


class _BadReply(Exception):
    """Internal: the reply stream broke RFC 5321 §4.2; carries the log detail."""


class ReplyReceiver:
    """Frames one (possibly multi-line) reply at a time (RFC 5321 §4.2.1).

    Only CRLF ends a reply line: a bare LF or CR is a protocol error, as in
    the server's command framing. Memory is bounded by ``MAX_REPLY_LINES``
    lines of at most the line limit each.
    """

    __slots__ = ("_code", "_lines")

    def __init__(self) -> None:
        self._code: bytes | None = None
        self._lines: list[bytes] = []

    def receive(self, buf: bytearray, line_limit: int) -> tuple[int, list[bytes]] | None:
        """Take one complete reply from the front of ``buf``.

        Returns:
            (code, raw text of each line), or None when ``buf`` holds no
            complete reply yet (the lines read so far are kept).

        Raises:
            _BadReply: a line is too long, malformed, or the reply has too
                many lines.
        """
        while True:
            lf = buf.find(b"\n", 0, line_limit)
            if lf < 0:
                if len(buf) >= line_limit:
                    raise _BadReply(f"reply line longer than {line_limit} octets")
                return None
            line = bytes(buf[: lf + 1])
            del buf[: lf + 1]
            if lf == 0 or line[-2] != 0x0D:
                raise _BadReply("bare LF in reply")
            body = line[:-2]
            if b"\r" in body:
                raise _BadReply("bare CR in reply")
            match = _REPLY_LINE.fullmatch(body)
            if match is None:
                raise _BadReply("malformed reply line")
            code, separator, text = match.group(1), match.group(2), match.group(3) or b""
            if self._code is None:
                self._code = code
            elif code != self._code:
                raise _BadReply("reply code changed inside a multi-line reply")
            self._lines.append(text)
            if len(self._lines) > MAX_REPLY_LINES:
                raise _BadReply(f"reply longer than {MAX_REPLY_LINES} lines")
            if separator != b"-":
                lines, self._lines, self._code = self._lines, [], None
                return int(code), lines


@dataclass(slots=True)
class _Sent:
    """One FIFO entry: a command awaiting its reply, and its transaction number."""

    command: ev.ClientCommand
    transaction: int


class ClientConnection:
    """Our side of one SMTP or LMTP connection to a server, without I/O.

    Attributes:
        lmtp: speak LMTP (LHLO, one reply per recipient after the content).
        state: GREETING, NEED_EHLO, READY, TLS_PENDING, CLOSED or ERROR (the
            connection-level states of :class:`~.state.State`).
        tls_active: whether the connection is under TLS.
        extensions: the server's EHLO/LHLO keywords (upper case) → parameters.
        last_ehlo_response: the last positive EHLO/LHLO reply, or None.
        authenticated: True after a 235 to AUTH.
        discarded_after_starttls: octets dropped at the TLS cut (log them).
    """

    def __init__(self, lmtp: bool = False, *, implicit_tls: bool = False) -> None:
        self.lmtp = lmtp
        self.state = State.GREETING
        self.tls_active = implicit_tls
        self.extensions: dict[str, str] = {}
        self.last_ehlo_response: Reply | None = None
        self.authenticated = False
        self.discarded_after_starttls = 0
        self._buf = bytearray()
        self._eof = False
        self._replies = ReplyReceiver()
        self._sent: deque[_Sent] = deque()
        self._error: RemoteProtocolError | None = None
        # What we have sent.
        self._transaction = 0  # incremented by each MAIL
        self._in_transaction = False
        self._smtputf8 = False
        self._rcpts_sent = 0
        self._content_mode: type[ev.Data] | type[ev.Bdat] | None = None
        self._chunk_remaining = 0
        self._body_allowed = False
        self._sasl_continues = False
        self._quit_sent = False
        # What we have received.
        self._accepted: list[ev.RcptTo] = []
        self._chunk_failed = False
        self._final_recipients: deque[ev.RcptTo | None] | None = None

    # ------------------------------------------------------------- queries

    def supports_extension(self, keyword: str) -> bool:
        """Whether the last EHLO/LHLO response offered ``keyword``."""
        return keyword.upper() in self.extensions

    @property
    def outstanding_commands(self) -> tuple[ev.ClientCommand, ...]:
        """The commands sent and not yet (completely) answered, oldest first."""
        return tuple(sent.command for sent in self._sent)

    @property
    def accepted_recipients(self) -> tuple[ev.RcptTo, ...]:
        """The recipients of the open transaction that got a 2xx, in order."""
        return tuple(self._accepted)

    @property
    def can_send_body(self) -> bool:
        """True after a 354 to DATA, until ``send_body``."""
        return self._body_allowed

    # ------------------------------------------------------------- output

    def send(self, command: ev.ClientCommand) -> bytes:
        """Render ``command`` for the wire and record that it awaits a reply.

        Raises:
            LocalProtocolError: the command is malformed (an address, domain or
                parameter outside the grammar), or not legal now (before the
                greeting, out of order, pipelined without PIPELINING or after
                a command that ends a group). The engine is unchanged then.
        """
        line = render_command(command, smtputf8=self._smtputf8)
        self._check_can_send(command)
        self._record(command)
        return line

    def send_body(self, content: bytes, *, normalise_newlines: bool = False) -> bytes:
        """Render message content after a 354: dot-stuffed, ended by CRLF "." CRLF.

        A final CRLF is added when the content does not end with one
        (RFC 5321 §4.1.1.4). Line lengths are not checked: content that came in
        through our server already passed its 1000-octet rule.

        Args:
            content: the message (headers and body) with CRLF line endings.
            normalise_newlines: turn every bare CR and bare LF into CRLF
                instead of refusing the content.

        Raises:
            LocalProtocolError: no 354 is pending, or the content holds a bare
                CR or LF and ``normalise_newlines`` is False.
        """
        self._check_usable()
        if not self._body_allowed:
            raise LocalProtocolError("send_body() needs a 354 reply to DATA first")
        crlf = content.count(b"\r\n")
        if content.count(b"\r") != crlf or content.count(b"\n") != crlf:
            # SECURITY: SMTP smuggling (CVE-2023-51764 family): a bare LF or CR can be
            # read by the next hop as a line end, and "<LF>.<CR><LF>" as the end of
            # data, so the rest of our message would run as commands over there.
            if not normalise_newlines:
                raise LocalProtocolError("content contains a bare CR or LF")
            content = _ANY_NEWLINE.sub(b"\r\n", content)
        # RFC 5321 §4.5.2: a line starting with "." gets one more.
        stuffed = content.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        if stuffed and not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self._body_allowed = False
        self._in_transaction = False
        self._sent.append(_Sent(ev.EndOfData(), self._transaction))
        return stuffed + b".\r\n"

    def send_chunk(self, data: bytes) -> bytes:
        """Account for octets of the BDAT chunk announced last and return them.

        BDAT content goes on the wire as it is (RFC 3030 §2): no dot-stuffing,
        no line-ending check. A chunk may be passed in several pieces.

        Raises:
            LocalProtocolError: more octets than the BDAT announced are left.
        """
        self._check_usable()
        if len(data) > self._chunk_remaining:
            raise LocalProtocolError("more octets than the BDAT command announced")
        self._chunk_remaining -= len(data)
        return bytes(data)

    def tls_established(self) -> None:
        """Tell the engine the TLS handshake after a 220 to STARTTLS completed.

        RFC 3207 §4.2: the client discards all knowledge obtained from the
        server before TLS (its capabilities) and must send EHLO again.

        Raises:
            LocalProtocolError: if no STARTTLS was accepted.
        """
        if self.state is not State.TLS_PENDING:
            raise LocalProtocolError("tls_established() without an accepted STARTTLS")
        # SECURITY: CVE-2011-0411 class: nothing received in plaintext may be read as
        # if it came under TLS (next_event already failed if anything was there).
        self.discarded_after_starttls += len(self._buf)
        self._buf.clear()
        self.tls_active = True
        self.state = State.NEED_EHLO
        self.extensions = {}
        self.last_ehlo_response = None
        self.authenticated = False

    # -------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the server; ``b""`` signals EOF.

        Raises:
            LocalProtocolError: if data arrives after EOF was signalled.
        """
        if self._eof:
            raise LocalProtocolError("data received after EOF")
        if not data:
            self._eof = True
        else:
            self._buf += data

    def next_event(self) -> ev.ClientEvent | Sentinel:
        """Return the next event, :data:`NEED_DATA`, or :data:`PAUSED` at the TLS cut.

        Raises:
            RemoteProtocolError: the server broke the protocol; always fatal
                (close the connection; ``reply_hint`` is a 4xx for the message).
        """
        if self._error is not None:
            raise self._error
        if self.state is State.TLS_PENDING:
            if self._buf:
                raise self._fail(R451_TLS_INJECTION, "data received before the TLS handshake")
            if self._eof:
                self.state = State.CLOSED
                return ev.ConnectionClosed()
            return PAUSED
        try:
            parsed = self._replies.receive(self._buf, MAX_REPLY_LINE_OCTETS)
        except _BadReply as exc:
            raise self._fail(R451_PROTOCOL_ERROR, str(exc)) from None
        if parsed is None:
            if self._eof:
                self.state = State.CLOSED
                return ev.ConnectionClosed()
            return NEED_DATA
        return self._on_reply(*parsed)

    # ----------------------------------------------------------- internals

    def _fail(self, hint: Reply, detail: str) -> RemoteProtocolError:
        self.state = State.ERROR
        self._error = RemoteProtocolError(hint, detail=detail, fatal=True)
        return self._error

    def _check_usable(self) -> None:
        if self.state is State.ERROR:
            raise LocalProtocolError("the connection failed; close it")

    def _on_reply(self, code: int, raw_lines: list[bytes]) -> ev.ClientEvent:
        if self.state is State.GREETING:
            reply = self._make_reply(code, raw_lines, enhanced=True)
            # RFC 5321 §3.1: 554 (or 421) instead of 220 refuses the session.
            self.state = State.NEED_EHLO if code == 220 else State.CLOSED
            return ev.Greeting(reply)
        if not self._sent:
            reply = self._make_reply(code, raw_lines, enhanced=True)
            if code == 421:  # RFC 5321 §3.8: the server may close at any time
                self.state = State.CLOSED
                return ev.ServerReply(reply, None)
            raise self._fail(R451_PROTOCOL_ERROR, f"unsolicited {code} reply")
        head = self._sent[0]
        command = head.command
        hello = isinstance(command, ev.Ehlo | ev.Lhlo | ev.Helo)
        # RFC 2034 §3: the EHLO response carries no enhanced code (its lines are keywords).
        reply = self._make_reply(code, raw_lines, enhanced=not (hello and code < 400))
        self._check_reply(command, code)
        recipient: ev.RcptTo | None = None
        if self.lmtp and _ends_message(command):
            if self._final_recipients is None:
                # RFC 2033 §4.2: one reply per recipient that got a 2xx to RCPT. A
                # transaction that failed before its end gets a single reply.
                accepted: list[ev.RcptTo | None] = [] if self._chunk_failed else [*self._accepted]
                self._final_recipients = deque(accepted or [None])
            recipient = self._final_recipients.popleft()
            if not self._final_recipients:
                self._final_recipients = None
                self._sent.popleft()
        else:
            self._sent.popleft()
        self._apply(head, reply)
        return ev.ServerReply(reply, command, recipient)

    def _make_reply(self, code: int, raw_lines: list[bytes], *, enhanced: bool) -> Reply:
        texts = [_CONTROL.sub("?", raw.decode("utf-8", errors="replace")) for raw in raw_lines]
        status: str | None = None
        if enhanced:
            match = _ENHANCED.match(texts[0])
            if match is not None and match.group(1) == str(code)[0]:
                status = match.group(0)
                texts = [_strip_status(text, status) for text in texts]
        if code == 334 and any(len(text) > _MAX_REPLY_TEXT for text in texts):
            raise self._fail(R451_PROTOCOL_ERROR, "SASL challenge too long to keep")
        return Reply(code, status, tuple(text[:_MAX_REPLY_TEXT] for text in texts))

    def _check_reply(self, command: ev.ClientCommand, code: int) -> None:
        # 3xx only ever answers DATA (354) and AUTH (334), and a positive reply to
        # STARTTLS is 220 (RFC 3207 §4). Anything else means we are out of step.
        if 300 <= code < 400:
            ok = (code == 354 and isinstance(command, ev.Data)) or (
                code == 334 and isinstance(command, ev.Auth | ev.AuthResponse)
            )
        elif isinstance(command, ev.StartTls | ev.Data) and code < 300:
            ok = isinstance(command, ev.StartTls) and code == 220
        else:
            ok = True
        if not ok:
            raise self._fail(R451_PROTOCOL_ERROR, f"{code} cannot answer {type(command).__name__}")

    def _apply(self, sent: _Sent, reply: Reply) -> None:
        command, code = sent.command, reply.code
        positive = code < 400
        current = sent.transaction == self._transaction
        if code == 421:
            # RFC 5321 §3.8: the server closes; nothing else will be answered.
            self.state = State.CLOSED
            self._sent.clear()
            self._final_recipients = None
            return
        match command:
            case ev.Ehlo() | ev.Lhlo() | ev.Helo() if positive:
                is_helo = isinstance(command, ev.Helo)
                self.extensions = {} if is_helo else parse_ehlo_response(list(reply.lines))
                self.last_ehlo_response = None if is_helo else reply
                self.state = State.READY
                self._accepted.clear()
            case ev.MailFrom():
                self._accepted.clear()
                self._chunk_failed = False
                if not positive and current:
                    self._in_transaction = False  # the server opened none
            case ev.RcptTo() if positive:
                self._accepted.append(command)
            case ev.Data() if code == 354 and current:
                self._body_allowed = True
            case ev.Bdat(last=False) if not positive:
                self._chunk_failed = True  # RFC 3030 §2: the transaction has failed
            case ev.EndOfData() | ev.Bdat(last=True) if self._final_recipients is None:
                self._accepted.clear()
                self._chunk_failed = False
            case ev.Rset() if positive:
                self._accepted.clear()
                self._chunk_failed = False
            case ev.StartTls() if code == 220:
                self.state = State.TLS_PENDING
                if self._buf:
                    # SECURITY: CVE-2011-0411 class, client side: replies "pipelined"
                    # behind the 220 came in plaintext (perhaps from a man in the
                    # middle) and would be read as the answer to our EHLO under TLS.
                    self.discarded_after_starttls += len(self._buf)
                    self._buf.clear()
                    raise self._fail(R451_TLS_INJECTION, "data received after 220 to STARTTLS")
            case ev.Auth() | ev.AuthResponse():
                self._sasl_continues = code == 334
                self.authenticated = self.authenticated or code == 235
            case ev.Quit() if positive:
                self.state = State.CLOSED
            case _:
                pass

    # ------------------------------------------------------------ sending

    def _check_can_send(self, command: ev.ClientCommand) -> None:
        self._check_usable()
        name = type(command).__name__
        if self._chunk_remaining:
            raise LocalProtocolError("the BDAT chunk is not complete (send_chunk)")
        if self._body_allowed:
            raise LocalProtocolError("a 354 was received: send_body() comes next")
        if self.state is State.GREETING:
            raise LocalProtocolError("wait for the server's greeting (RFC 5321 §3.1)")
        if self.state is State.TLS_PENDING:
            raise LocalProtocolError("complete the TLS handshake, then tls_established()")
        if self.state is State.CLOSED:
            if isinstance(command, ev.Quit) and not self._quit_sent and not self._eof:
                return
            raise LocalProtocolError(f"{name} on a closed connection")
        if self._sasl_continues != isinstance(command, ev.AuthResponse):
            raise LocalProtocolError("after 334 only an AuthResponse may follow (RFC 4954 §4)")
        if self._sent:
            last = self._sent[-1].command
            if isinstance(last, _ENDS_GROUP):
                raise LocalProtocolError(
                    f"{name} after {type(last).__name__} before its reply (RFC 2920 §3.1)"
                )
            if PIPELINING not in self.extensions:
                raise LocalProtocolError(f"{name} before the last reply: no PIPELINING")
        ready = self.state is State.READY
        match command:
            case ev.Ehlo() | ev.Helo() if self.lmtp:
                raise LocalProtocolError("LMTP uses LHLO (RFC 2033 §4.1)")
            case ev.Lhlo() if not self.lmtp:
                raise LocalProtocolError("LHLO is LMTP only")
            case ev.StartTls() if self.tls_active or not ready or self._in_transaction:
                raise LocalProtocolError("STARTTLS needs EHLO, no TLS and no transaction")
            case ev.Auth() if not ready or self._in_transaction or self.authenticated:
                raise LocalProtocolError("AUTH needs EHLO, no transaction (RFC 4954 §4)")
            case ev.MailFrom() if not ready or self._in_transaction:
                raise LocalProtocolError("MAIL needs EHLO and no open transaction")
            case ev.RcptTo() if not self._in_transaction or self._content_mode is not None:
                raise LocalProtocolError("RCPT needs MAIL, before the content")
            case ev.Data() if (
                not self._in_transaction or not self._rcpts_sent or self._content_mode is not None
            ):
                raise LocalProtocolError("DATA needs MAIL and a RCPT, and no content sent")
            case ev.Bdat() if not self._rcpts_sent or self._content_mode is ev.Data:
                raise LocalProtocolError("BDAT needs a RCPT, and no DATA")
            case ev.Bdat() if not self._in_transaction:
                raise LocalProtocolError("BDAT needs an open transaction")
            case ev.EndOfData():
                raise LocalProtocolError("the end of data is sent by send_body()")
            case _:
                pass

    def _record(self, command: ev.ClientCommand) -> None:
        self._sent.append(_Sent(command, self._transaction))
        match command:
            case ev.Ehlo() | ev.Helo() | ev.Lhlo() | ev.Rset():
                self._in_transaction = False  # RFC 5321 §4.1.4: EHLO resets, as RSET does
                self._content_mode = None
            case ev.MailFrom():
                self._transaction += 1
                self._sent[-1].transaction = self._transaction
                self._in_transaction = True
                self._smtputf8 = "SMTPUTF8" in {key.upper() for key in command.params}
                self._rcpts_sent = 0
                self._content_mode = None
            case ev.RcptTo():
                self._rcpts_sent += 1
            case ev.Data():
                self._content_mode = ev.Data
            case ev.Bdat():
                self._content_mode = ev.Bdat
                self._chunk_remaining = command.size
                if command.last:
                    self._in_transaction = False
            case ev.AuthResponse():
                self._sasl_continues = False
            case ev.Quit():
                self._quit_sent = True
            case _:
                pass


def _ends_message(command: ev.ClientCommand) -> bool:
    return isinstance(command, ev.EndOfData) or (isinstance(command, ev.Bdat) and command.last)


def _strip_status(text: str, status: str) -> str:
    if text == status:
        return ""
    if text.startswith(status + " "):
        return text[len(status) + 1 :]
    return text
