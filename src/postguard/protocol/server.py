"""ServerConnection: the sans-IO server side of SMTP.

Theory of operation
-------------------
The I/O layer feeds bytes with :meth:`ServerConnection.receive_data` (``b""``
means EOF) and pulls events with :meth:`ServerConnection.next_event`. Each
command event must be answered with exactly one :meth:`ServerConnection.send`
before the next event comes out; until then ``next_event`` returns
:data:`PAUSED`. This keeps the replies of a pipelined batch in order
(RFC 2920 §3) without the engine ever deciding policy: the session chooses the
reply, the engine checks it is legal now and moves the state (``state.py``).

What the engine decides by itself, because it is grammar, not policy: syntax
(501), order (503), unknown commands (500), unsupported parameters (555),
line limits (500), bare CR/LF (500/550), SIZE (552), the recipient limit
(452 4.5.3), and the STARTTLS cut. It reports those as
:class:`RemoteProtocolError` carrying ``reply_hint``; the session sends the
hint with ``send`` (the engine then expects exactly that error reply) and
decides whether to close.

Bytes are only read from the peer when ``next_event`` says :data:`NEED_DATA`,
so the buffer never holds more than one read plus a partial line.

Size: one ``_cmd_<verb>`` per command keeps each verb's grammar next to its
order checks; parameters (``parameters.py``), line framing (``receivers.py``)
and transitions (``state.py``) live elsewhere. What remains is about 600 lines
of one purpose, and splitting the verbs apart would hide the pairing of each
command with its reply check.

Must not: do I/O, read clocks, log, or know listener policy.
"""

from __future__ import annotations

import binascii
from enum import Enum

from . import commands as c
from . import grammar, replies
from .errors import LocalProtocolError, RemoteProtocolError
from .options import ServerOptions
from .parameters import ParameterError, mail_parameters, rcpt_parameters
from .receivers import (
    MAX_AUTH_LINE_OCTETS,
    MAX_COMMAND_LINE_OCTETS,
    MAX_EXTENDED_COMMAND_LINE_OCTETS,
    BadLine,
    BdatReceiver,
    CommandLineReceiver,
    DataReceiver,
    Line,
)
from .replies import Reply
from .state import EXPECTED_POSITIVE, State, is_allowed, next_state

_MAX_BDAT_SIZE_DIGITS = 20  # 2**64 has 20 digits; anything longer is nonsense
_UNIMPLEMENTED_VERBS = frozenset({"TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML"})
_ALLOWED_BEFORE_TLS = frozenset({"EHLO", "HELO", "NOOP", "RSET", "QUIT", "STARTTLS"})


def _line_limit(verb: str) -> int:
    """Octets a command line may have, CRLF included (RFC 5321 §4.5.3.1.4, RFC 4954 §4)."""
    if verb == "AUTH":
        return MAX_AUTH_LINE_OCTETS
    if verb in ("MAIL", "RCPT"):
        return MAX_EXTENDED_COMMAND_LINE_OCTETS
    return MAX_COMMAND_LINE_OCTETS


class Sentinel(Enum):
    """Values of ``next_event`` that are not events."""

    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED


class _EngineError:
    """Marker for 'the engine raised RemoteProtocolError; an error reply is owed'."""


_ENGINE_ERROR = _EngineError()


class ServerConnection:
    """The server's side of one SMTP connection, without I/O.

    Attributes:
        state: the current :class:`State`.
        tls_active: whether the connection is under TLS.
        ehlo_domain: the argument of the last successful EHLO/HELO.
        esmtp: True after EHLO (False after HELO).
        mail_from: the accepted MAIL command of the open transaction.
        rcpt_count: recipients accepted in the open transaction.
        discarded_after_starttls: octets the peer sent after STARTTLS and
            before the handshake, which were discarded (log them).
    """

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.state = State.GREETING
        self.tls_active = self.options.implicit_tls
        self.ehlo_domain: str | None = None
        self.esmtp = False
        self.mail_from: c.MailFrom | None = None
        self.authenticated = False
        self.rcpt_count = 0
        self.discarded_after_starttls = 0
        self._buf = bytearray()
        self._eof = False
        self._lines = CommandLineReceiver(self.options.max_command_line)
        self._data: DataReceiver | None = None
        self._bdat: BdatReceiver | None = None
        self._bdat_last = False
        self._bdat_chunk_octets = 0
        self._bdat_resume_state: State | None = None
        self._pending_end: c.Command | None = None
        self._awaiting: c.Command | _EngineError | None = None

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the peer; ``b""`` signals EOF.

        Raises:
            LocalProtocolError: if data arrives after EOF was signalled.
        """
        if self._eof:
            raise LocalProtocolError("data received after EOF")
        if not data:
            self._eof = True
        else:
            self._buf += data

    @property
    def they_are_waiting_for_reply(self) -> bool:
        """True while a command awaits our reply."""
        return self._awaiting is not None

    def next_event(self) -> c.Event | Sentinel:
        """Return the next event, :data:`NEED_DATA` or :data:`PAUSED`.

        Raises:
            RemoteProtocolError: the peer broke the protocol; send its
                ``reply_hint``. If ``fatal``, close the connection afterwards.
        """
        if self._awaiting is not None or self.state in (
            State.GREETING,
            State.TLS_PENDING,
            State.CLOSED,
            State.ERROR,
        ):
            return PAUSED
        if self._pending_end is not None:
            event, self._pending_end = self._pending_end, None
            return self._expect_reply(event)
        if self.state is State.DATA:
            return self._next_data_event()
        if self.state is State.BDAT:
            return self._next_bdat_event()
        return self._next_command()

    # ----------------------------------------------------------------- output

    def send(self, reply: Reply) -> bytes:
        """Render ``reply`` for the wire and advance the state.

        Raises:
            LocalProtocolError: if the reply is not legal now (no command is
                waiting, or the code does not fit the command).
        """
        if reply.code == 421:
            # RFC 5321 §3.8: 421 may be sent at any time and closes the channel.
            self._awaiting = None
            self.state = State.CLOSED
            return reply.render()
        if self.state is State.GREETING:
            if reply.code not in (220, 554):
                raise LocalProtocolError(f"greeting must be 220 or 554, not {reply.code}")
            self.state = State.NEED_EHLO if reply.code == 220 else State.CLOSED
            return reply.render()
        awaiting = self._awaiting
        if awaiting is None:
            raise LocalProtocolError("no command is waiting for a reply")
        if isinstance(awaiting, _EngineError):
            if reply.code < 400:
                raise LocalProtocolError("a protocol error must be answered with an error")
            self._awaiting = None
            return reply.render()
        self._check_reply(awaiting, reply)
        self._awaiting = None
        self._apply(awaiting, reply)
        return reply.render()

    def tls_established(self) -> None:
        """Tell the engine the TLS handshake after STARTTLS completed.

        RFC 3207 §4.2: the server discards all knowledge obtained from the
        client before TLS, and the client must send EHLO again.

        Raises:
            LocalProtocolError: if no STARTTLS is pending.
        """
        if self.state is not State.TLS_PENDING:
            raise LocalProtocolError("tls_established() without a pending STARTTLS")
        # SECURITY: CVE-2011-0411: nothing received before the handshake may be
        # executed inside TLS.
        self.discarded_after_starttls += len(self._buf)
        self._buf.clear()
        self.tls_active = True
        self.state = State.NEED_EHLO
        self.ehlo_domain = None
        self.esmtp = False
        self.authenticated = False  # RFC 3207 §4.2: forget everything from before TLS
        self._reset_transaction()

    # -------------------------------------------------------- command parsing

    def _next_command(self) -> c.Event | Sentinel:
        item = self._lines.receive(self._buf)
        if item is None:
            if self._eof:
                self.state = State.CLOSED
                return c.ConnectionClosed()
            return NEED_DATA
        if self.state is State.AUTH:
            return self._sasl_response(item)
        if isinstance(item, BadLine):
            raise self._violation(item.reply, item.detail)
        try:
            text = item.text.decode("utf-8")
        except UnicodeDecodeError:
            raise self._violation(replies.R500_UNRECOGNIZED, "command is not UTF-8") from None
        verb, _, arg = text.partition(" ")
        if not verb.isascii():
            # SECURITY: str.upper() folds some non-ASCII letters into ASCII (U+0131
            # dotless i → "I", U+FB06 "st" ligature → "ST", so "STARTTLS" can be spelt
            # without ASCII S or T); a verb is ASCII (RFC 5321 §2.4), and a filter in
            # front of us and we must agree on which command this is.
            raise self._violation(replies.R500_UNRECOGNIZED, "non-ASCII command verb")
        verb = verb.upper()
        if len(item.text) + 2 > _line_limit(verb):
            raise self._violation(replies.R500_LINE_TOO_LONG, f"{verb} line too long")
        handler = _VERBS.get(verb)
        if (
            self.options.require_tls
            and not self.tls_active
            and handler is not None
            and verb not in _ALLOWED_BEFORE_TLS
        ):
            # RFC 3207 §4: a server that requires TLS answers 530 to anything else,
            # before judging order or syntax (which would leak nothing, but confuse).
            raise self._violation(replies.R530_STARTTLS_FIRST, f"{verb} before STARTTLS")
        if handler is None:
            if verb in _UNIMPLEMENTED_VERBS:
                raise self._violation(replies.R502_NOT_IMPLEMENTED, f"{verb} not implemented")
            raise self._violation(replies.R500_UNRECOGNIZED, "unrecognized command")
        return handler(self, arg)

    def _violation(self, reply: Reply, detail: str, *, fatal: bool = False) -> RemoteProtocolError:
        self._awaiting = _ENGINE_ERROR
        if fatal:
            self.state = State.ERROR
        return RemoteProtocolError(reply, detail=detail, fatal=fatal)

    def _expect_reply(self, event: c.Command) -> c.Command:
        self._awaiting = event
        return event

    def _allowed(self, command: type[c.Command], otherwise: Reply) -> None:
        if not is_allowed(command, self.state):
            raise self._violation(otherwise, f"{command.__name__} in state {self.state.name}")

    def _no_argument(self, arg: str, verb: str) -> None:
        if arg.strip():
            raise self._violation(replies.R501_NO_PARAMETERS, f"{verb} takes no parameters")

    def _cmd_ehlo(self, arg: str) -> c.Command:
        domain, valid = self._ehlo_argument(arg)
        self._allowed(c.Ehlo, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.Ehlo(domain, valid))

    def _cmd_helo(self, arg: str) -> c.Command:
        domain, valid = self._ehlo_argument(arg)
        self._allowed(c.Helo, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.Helo(domain, valid))

    def _ehlo_argument(self, arg: str) -> tuple[str, bool]:
        try:
            return grammar.parse_ehlo_argument(arg.strip(" "))
        except grammar.GrammarError as exc:
            raise self._violation(replies.R501_BAD_EHLO, str(exc)) from None

    def _cmd_mail(self, arg: str) -> c.Command:
        if self.state is State.NEED_EHLO:
            raise self._violation(replies.R503_EHLO_FIRST, "MAIL before EHLO")
        if self.state in (State.MAIL, State.RCPT, State.BDAT_WAIT):
            raise self._violation(replies.R503_NESTED_MAIL, "nested MAIL")
        self._allowed(c.MailFrom, replies.R503_BAD_SEQUENCE)
        if arg[:5].upper() != "FROM:":
            raise self._violation(replies.R501_SYNTAX, "MAIL without FROM:")
        try:
            path, param_text = grammar.split_path_and_params(arg[5:])
            params = grammar.parse_esmtp_params(param_text, utf8=self.options.smtputf8)
        except grammar.GrammarError as exc:
            raise self._violation(replies.R501_BAD_SENDER, str(exc)) from None
        smtputf8 = "SMTPUTF8" in params and self.options.smtputf8
        try:
            reverse_path = grammar.parse_path(path, utf8=smtputf8, allow_null=True)
        except grammar.GrammarError as exc:
            if not path.isascii() and not smtputf8:
                raise self._violation(replies.R553_NON_ASCII_ADDRESS, str(exc)) from None
            raise self._violation(replies.R501_BAD_SENDER, str(exc)) from None
        return self._expect_reply(self._mail_event(reverse_path, params))

    def _mail_event(
        self, reverse_path: grammar.Address | None, params: dict[str, str | None]
    ) -> c.MailFrom:
        try:
            p = mail_parameters(params, self.options)
        except ParameterError as exc:
            raise self._violation(exc.reply, exc.detail) from None
        return c.MailFrom(
            reverse_path, p.size, p.body, p.smtputf8, p.auth, params, ret=p.ret, envid=p.envid
        )

    def _cmd_rcpt(self, arg: str) -> c.Command:
        if self.state is State.NEED_EHLO:
            raise self._violation(replies.R503_EHLO_FIRST, "RCPT before EHLO")
        self._allowed(c.RcptTo, replies.R503_NEED_MAIL)
        if arg[:3].upper() != "TO:":
            raise self._violation(replies.R501_SYNTAX, "RCPT without TO:")
        smtputf8 = self.mail_from is not None and self.mail_from.smtputf8
        try:
            path, param_text = grammar.split_path_and_params(arg[3:])
            params = grammar.parse_esmtp_params(param_text, utf8=smtputf8)
        except grammar.GrammarError as exc:
            raise self._violation(replies.R501_BAD_RECIPIENT, str(exc)) from None
        try:
            notify, orcpt = rcpt_parameters(params, self.options)
        except ParameterError as exc:
            raise self._violation(exc.reply, exc.detail) from None
        if path[1:-1].lower() == "postmaster":
            # RFC 5321 §4.1.1.3: "<Postmaster>" without a domain must be accepted;
            # the session resolves it to the postmaster of its primary domain.
            forward_path = grammar.Address("postmaster", "")
        else:
            try:
                parsed = grammar.parse_path(path, utf8=smtputf8)
            except grammar.GrammarError as exc:
                if not path.isascii() and not smtputf8:
                    raise self._violation(replies.R553_NON_ASCII_ADDRESS, str(exc)) from None
                raise self._violation(replies.R501_BAD_RECIPIENT, str(exc)) from None
            assert parsed is not None
            forward_path = parsed
        if self.rcpt_count >= self.options.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452 "too many recipients"; the client retries the rest.
            raise self._violation(replies.R452_TOO_MANY_RECIPIENTS, "recipient limit reached")
        return self._expect_reply(c.RcptTo(forward_path, params, notify=notify, orcpt=orcpt))

    def _cmd_data(self, arg: str) -> c.Command:
        self._no_argument(arg, "DATA")
        if self.state is State.BDAT_WAIT:
            raise self._violation(replies.R503_MIXED_DATA_AND_BDAT, "DATA after BDAT")
        if self.state is State.MAIL:
            raise self._violation(replies.R554_NO_VALID_RECIPIENTS, "DATA without recipients")
        if self.state in (State.READY, State.NEED_EHLO):
            raise self._violation(replies.R503_NEED_MAIL, "DATA without MAIL")
        if self.mail_from is not None and self.mail_from.body is c.BodyType.BINARY_MIME:
            raise self._violation(replies.R503_BINARYMIME_NEEDS_BDAT, "DATA with BINARYMIME")
        self._allowed(c.StartData, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.StartData())

    def _cmd_bdat(self, arg: str) -> c.Event | Sentinel:
        if not self.options.chunking:
            raise self._violation(replies.R500_UNRECOGNIZED, "BDAT without CHUNKING")
        # RFC 3030 §2: "BDAT" SP chunk-size [ SP end-marker ], all ASCII. str.split()
        # would also split on VT/FS/NBSP, and isdigit()/upper() accept non-ASCII.
        parts = [part for part in arg.split(" ") if part]
        if (
            not 1 <= len(parts) <= 2
            or not (parts[0].isascii() and parts[0].isdigit())
            or len(parts[0]) > _MAX_BDAT_SIZE_DIGITS
            or (len(parts) == 2 and not (parts[1].isascii() and parts[1].upper() == "LAST"))
        ):
            # SECURITY: without a valid size we cannot know where the chunk ends; its
            # bytes would be read as commands (an injection). Close, as RFC 3030 §2
            # leaves us no way to resynchronise.
            raise self._violation(replies.R501_SYNTAX, "malformed BDAT", fatal=True)
        octets = int(parts[0])
        self._bdat_last = len(parts) == 2
        self._bdat_chunk_octets = octets
        violation: Reply | None = None
        if self.state is State.MAIL:
            violation = replies.R554_NO_VALID_RECIPIENTS
        elif self.state not in (State.RCPT, State.BDAT_WAIT):
            violation = (
                replies.R503_NEED_MAIL
                if self.state is not State.NEED_EHLO
                else replies.R503_EHLO_FIRST
            )
        if self.state is State.BDAT_WAIT and self._bdat is not None:
            self._bdat.continue_chunk(octets)
        else:
            body = self.mail_from.body if self.mail_from is not None else c.BodyType.SEVEN_BIT
            self._bdat = BdatReceiver(
                octets,
                size_so_far=0,
                max_size=self.options.max_message_size,
                audit=body is not c.BodyType.BINARY_MIME,
            )
        if violation is not None:
            self._bdat.violation = violation
            # A refused BDAT outside a transaction must not move us past EHLO.
            self._bdat_resume_state = (
                self.state if self.state in (State.NEED_EHLO, State.READY) else None
            )
        self.state = State.BDAT
        return self._next_bdat_event()

    def _next_bdat_event(self) -> c.Event | Sentinel:
        receiver = self._bdat
        assert receiver is not None
        content, done = receiver.receive(self._buf)
        if done:
            if self._bdat_last:
                receiver.finish()
                end: c.Command = c.EndOfMessage(receiver.size, receiver.violation)
            else:
                # The receiver's size is the message's so far; the event reports this chunk.
                end = c.EndOfChunk(self._bdat_chunk_octets, receiver.violation)
            if content:
                self._pending_end = end
                return c.MessageData(content)
            return self._expect_reply(end)
        if content:
            return c.MessageData(content)
        if self._eof:
            self.state = State.CLOSED
            return c.ConnectionClosed()
        return NEED_DATA

    def _next_data_event(self) -> c.Event | Sentinel:
        receiver = self._data
        assert receiver is not None
        content, done = receiver.receive(self._buf)
        if done:
            end = c.EndOfMessage(receiver.size, receiver.violation)
            if content:
                self._pending_end = end
                return c.MessageData(content)
            return self._expect_reply(end)
        if content:
            return c.MessageData(content)
        if self._eof:
            self.state = State.CLOSED
            return c.ConnectionClosed()
        return NEED_DATA

    def _cmd_rset(self, arg: str) -> c.Command:
        self._no_argument(arg, "RSET")
        self._allowed(c.Rset, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.Rset())

    def _cmd_noop(self, arg: str) -> c.Command:
        self._allowed(c.Noop, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.Noop())

    def _cmd_quit(self, arg: str) -> c.Command:
        self._allowed(c.Quit, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.Quit())

    def _cmd_vrfy(self, arg: str) -> c.Command:
        if not arg.strip():
            raise self._violation(replies.R501_SYNTAX, "VRFY without argument")
        self._allowed(c.Vrfy, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.Vrfy(arg.strip()))

    def _cmd_expn(self, arg: str) -> c.Command:
        self._allowed(c.Expn, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.Expn(arg.strip()))

    def _cmd_help(self, arg: str) -> c.Command:
        self._allowed(c.Help, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.Help(arg.strip()))

    def _cmd_starttls(self, arg: str) -> c.Command:
        # RFC 3207 §4: "STARTTLS" takes no parameters: 501.
        self._no_argument(arg, "STARTTLS")
        if self.tls_active:
            raise self._violation(replies.R503_TLS_ALREADY_ACTIVE, "STARTTLS under TLS")
        if not self.options.starttls:
            raise self._violation(replies.R502_NOT_IMPLEMENTED, "STARTTLS not offered")
        self._allowed(c.StartTls, replies.R503_BAD_SEQUENCE)
        return self._expect_reply(c.StartTls())

    def _cmd_auth(self, arg: str) -> c.Command:
        mechanism, _, initial = arg.strip(" ").partition(" ")
        if not mechanism or not mechanism.isascii():  # RFC 4422 §3.1: ASCII names
            raise self._violation(replies.R501_SYNTAX, "AUTH without a valid mechanism")
        if self.authenticated:
            # RFC 4954 §4: after a successful AUTH, no more AUTH commands.
            raise self._violation(replies.R503_ALREADY_AUTHENTICATED, "second AUTH")
        self._allowed(c.Auth, replies.R503_BAD_SEQUENCE)
        response: bytes | None = None
        if initial:
            response = self._decode_sasl(initial.strip(" "))
        return self._expect_reply(c.Auth(mechanism.upper(), response))

    def _sasl_response(self, item: Line | BadLine) -> c.Command:
        """A line inside an AUTH exchange (RFC 4954 §4): base64, or "*" to cancel."""
        if isinstance(item, BadLine):
            self.state = State.READY
            reply = replies.R500_AUTH_LINE_TOO_LONG
            if item.reply is not replies.R500_LINE_TOO_LONG:
                reply = item.reply
            raise self._violation(reply, f"SASL response: {item.detail}")
        if item.text == b"*":
            self.state = State.READY
            raise self._violation(replies.R501_AUTH_CANCELLED, "client cancelled AUTH")
        try:
            text = item.text.decode("ascii")
        except UnicodeDecodeError:
            self.state = State.READY
            raise self._violation(replies.R501_BAD_BASE64, "SASL response not ASCII") from None
        return self._expect_reply(c.AuthResponse(self._decode_sasl(text)))

    def _decode_sasl(self, text: str) -> bytes:
        """Decode a base64 SASL payload; "=" is the empty response (RFC 4954 §4)."""
        if text == "=":
            return b""
        try:
            return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            self.state = State.READY
            raise self._violation(replies.R501_BAD_BASE64, "invalid base64") from None

    # ---------------------------------------------------------------- replies

    def _check_reply(self, event: c.Command, reply: Reply) -> None:
        code = reply.code
        if code >= 400:
            return
        expected = EXPECTED_POSITIVE.get(type(event))
        ok = code in expected if expected is not None else 200 <= code < 300
        if isinstance(event, c.EndOfMessage | c.EndOfChunk) and event.violation is not None:
            ok = False  # content that broke the engine's rules can never be accepted
        if not ok:
            raise LocalProtocolError(f"{code} is not a valid reply to {type(event).__name__}")

    def _apply(self, event: c.Command, reply: Reply) -> None:
        greeted = self.ehlo_domain is not None
        self.state = next_state(self.state, type(event), reply.code, greeted=greeted)
        positive = reply.code < 400
        match event:
            case c.Ehlo() | c.Helo() if positive:
                self.ehlo_domain = event.domain
                self.esmtp = isinstance(event, c.Ehlo)
                self._reset_transaction()
            case c.Rset() if positive:
                self._reset_transaction()
            case c.MailFrom() if positive:
                self.mail_from = event
                self.rcpt_count = 0
            case c.RcptTo() if positive:
                self.rcpt_count += 1
            case c.StartData() if reply.code == 354:
                self._data = DataReceiver(self.options.max_message_size)
            case c.EndOfMessage() | c.EndOfChunk():
                if self._bdat_resume_state is not None:
                    self.state, self._bdat_resume_state = self._bdat_resume_state, None
                if self.state is not State.BDAT_WAIT:
                    self._reset_transaction()
            case c.Auth() | c.AuthResponse() if reply.code == 235:
                self.authenticated = True
            case c.StartTls() if reply.code == 220:
                # SECURITY: CVE-2011-0411: whatever the client pipelined after STARTTLS
                # was sent in plaintext and must never be read as if it came under TLS.
                self.discarded_after_starttls += len(self._buf)
                self._buf.clear()
            case _:
                pass

    def _reset_transaction(self) -> None:
        self.mail_from = None
        self.rcpt_count = 0
        self._data = None
        self._bdat = None
        self._bdat_last = False
        self._bdat_resume_state = None


_VERBS = {
    "EHLO": ServerConnection._cmd_ehlo,
    "HELO": ServerConnection._cmd_helo,
    "MAIL": ServerConnection._cmd_mail,
    "RCPT": ServerConnection._cmd_rcpt,
    "DATA": ServerConnection._cmd_data,
    "BDAT": ServerConnection._cmd_bdat,
    "RSET": ServerConnection._cmd_rset,
    "NOOP": ServerConnection._cmd_noop,
    "QUIT": ServerConnection._cmd_quit,
    "VRFY": ServerConnection._cmd_vrfy,
    "EXPN": ServerConnection._cmd_expn,
    "HELP": ServerConnection._cmd_help,
    "STARTTLS": ServerConnection._cmd_starttls,
    "AUTH": ServerConnection._cmd_auth,
}
