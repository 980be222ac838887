"""LMTP delivery (RFC 2033) to a local message store such as Dovecot or Cyrus.

One call of :meth:`LmtpAgent.deliver` is one LMTP session: connect (TCP or a
Unix socket), read the greeting, LHLO, STARTTLS when the policy says so, MAIL,
one RCPT per mailbox, DATA, and then one reply per accepted recipient
(RFC 2033 §4.2), each mapped to that recipient's outcome. The protocol is the
sans-IO :class:`~postguard.protocol.client.ClientConnection`; the socket is a
blocking :class:`~postguard.net.client_streams.BlockingStream`, because the
queue manager runs agents in worker threads (``run_in_executor``).

Outcomes, per recipient:

* 2xx to the recipient's final reply → :class:`Delivered` (the store said
  "saved"; LMTP servers answer only after the message is stored).
* 4xx → :class:`TemporaryFailure`, 5xx → :class:`PermanentFailure`, from the
  RCPT reply, the final reply, or for everyone from MAIL or DATA.
* A failure to connect, a timeout, a lost connection, a TLS failure or a
  protocol error → :class:`TemporaryFailure` for every recipient not decided
  yet. So is a refused greeting or LHLO: a misconfigured local store must
  defer mail, not bounce it.

TLS (``tls``): ``"required"`` refuses to send anything but LHLO in plaintext;
``"opportunistic"`` uses STARTTLS when offered and goes on in plaintext when
it is not (or is answered with an error); ``"none"`` never starts TLS. A TLS
handshake that fails is a temporary failure in every mode: falling back to
plaintext after a failed handshake is what a downgrade attacker wants. On a
Unix socket TLS is never used, and ``"required"`` there is a configuration
error.

Redelivery can duplicate: LMTP (and Dovecot) has no idempotency key, so when the
queue delivers a recipient again after a crash between the store's "saved" and
the outcome being recorded, the store keeps a second copy. There is no
``deliver_batch`` here, so :class:`~postguard.delivery.base.DeliveryItem`'s
``key`` is never seen.

Must not: read or change the queue; it only returns outcomes.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from ..net.client_streams import BlockingStream, deadline_after
from ..net.errors import NetError, ReadTimeout, TlsHandshakeFailed
from ..protocol import client_events as ev
from ..protocol import replies
from ..protocol.client import NEED_DATA, ClientConnection
from ..protocol.client_events import render_command
from ..protocol.errors import LocalProtocolError, RemoteProtocolError
from ..protocol.extensions import EIGHTBITMIME, PIPELINING, SIZE, SMTPUTF8, STARTTLS
from ..protocol.replies import Reply
from ..tls.contexts import client_context
from .base import Delivered, Outcome, PermanentFailure, TemporaryFailure

TlsMode = Literal["required", "opportunistic", "none"]
TLS_MODES: tuple[TlsMode, ...] = ("required", "opportunistic", "none")

SECONDS = 1.0
MINUTES = 60 * SECONDS
DEFAULT_LMTP_PORT = 24  # IANA "lmtp"; Dovecot and Cyrus listen elsewhere by configuration
DEFAULT_CONNECT_TIMEOUT = 30 * SECONDS
# RFC 5321 §4.5.3.2: 5 minutes for the greeting, MAIL and RCPT replies, 2 for the 354,
# 3 per block of data, 10 for the reply after the end of data (the store is writing).
DEFAULT_COMMAND_TIMEOUT = 5 * MINUTES
DEFAULT_DATA_TIMEOUT = 10 * MINUTES
_QUIT_TIMEOUT = 5 * SECONDS  # a courtesy; the outcomes are already known

_R451_UNREACHABLE = Reply.of(451, "4.4.1", "LMTP server not reachable")
_R451_CONNECTION_LOST = Reply.of(451, "4.4.2", "Connection to LMTP server lost")
_R451_TIMEOUT = Reply.of(451, "4.4.2", "LMTP server did not answer in time")
_R451_NOT_READY = Reply.of(451, "4.3.0", "LMTP server not ready")
_R451_TLS_FAILED = Reply.of(451, "4.7.0", "TLS negotiation with LMTP server failed")
_R451_TLS_UNAVAILABLE = Reply.of(451, "4.7.0", "TLS required but not available")


class _Abort(Exception):
    """Internal: stop the session; every undecided recipient gets ``outcome``."""

    def __init__(self, outcome: TemporaryFailure | PermanentFailure) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


class LmtpAgent:
    """Delivers to an LMTP server over TCP or a Unix socket."""

    name = "lmtp"

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int = DEFAULT_LMTP_PORT,
        path: Path | str | None = None,
        tls: TlsMode = "opportunistic",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        lhlo_domain: str = "localhost",
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        data_timeout: float = DEFAULT_DATA_TIMEOUT,
    ) -> None:
        """Configure the target; nothing connects until :meth:`deliver`.

        Args:
            host: TCP host name or address (exclusive with ``path``).
            port: TCP port.
            path: Unix socket path (exclusive with ``host``).
            tls: ``"required"``, ``"opportunistic"`` or ``"none"`` (TCP only).
            ssl_context: the client context for STARTTLS; by default
                ``tls.contexts.client_context()`` (system trust store, host
                name verified).
            server_hostname: the name to verify in the server's certificate;
                defaults to ``host``.
            lhlo_domain: our name in LHLO.
            connect_timeout: seconds to connect and to complete TLS.
            command_timeout: seconds for each reply before the content.
            data_timeout: seconds to send the content and get every final reply.

        Raises:
            ValueError: not exactly one of ``host``/``path``, an unknown
                ``tls`` mode, or ``tls="required"`` on a Unix socket.
        """
        if (host is None) == (path is None):
            raise ValueError("LmtpAgent needs exactly one of host or path")
        if tls not in TLS_MODES:
            raise ValueError(f"unknown tls mode {tls!r} (expected: {', '.join(TLS_MODES)})")
        if path is not None and tls == "required":
            raise ValueError("tls = required is not possible on a Unix socket")
        try:
            render_command(ev.Lhlo(lhlo_domain))
        except LocalProtocolError as exc:
            raise ValueError(f"bad lhlo_domain {lhlo_domain!r}: {exc}") from None
        self.host = host
        self.port = port
        self.path = Path(path) if path is not None else None
        self.tls: TlsMode = "none" if path is not None else tls
        self._ssl_context = ssl_context
        self.server_hostname = server_hostname if server_hostname is not None else host
        self.lhlo_domain = lhlo_domain
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.data_timeout = data_timeout

    def __repr__(self) -> str:
        target = str(self.path) if self.path is not None else f"{self.host}:{self.port}"
        return f"LmtpAgent({target}, tls={self.tls})"

    def deliver(
        self, content: bytes, mailboxes: list[str], *, reverse_path: str = ""
    ) -> dict[str, Outcome]:
        """Deliver ``content`` to each mailbox in one LMTP session.

        See :class:`~postguard.delivery.base.DeliveryAgent`. Duplicate
        mailboxes are delivered once.

        Args:
            content: the message (headers and body), CRLF line endings; a bare
                CR or LF is turned into CRLF rather than sent.
            mailboxes: the recipients ("local@domain").
            reverse_path: the envelope sender; "" is the null sender ``<>``.

        Returns:
            An outcome for every mailbox given.
        """
        unique = list(dict.fromkeys(mailboxes))
        outcomes: dict[str, Outcome] = {}
        if not unique:
            return outcomes
        session = _Session(self)
        try:
            session.run(content, unique, reverse_path, outcomes)
        except _Abort as abort:
            for mailbox in unique:
                outcomes.setdefault(mailbox, abort.outcome)
        finally:
            session.close()
        return outcomes

    def ssl_context(self) -> ssl.SSLContext:
        """The STARTTLS context (built on first use when none was given)."""
        if self._ssl_context is None:
            self._ssl_context = client_context()
        return self._ssl_context


class _Session:
    """One LMTP connection: the blocking driver around a ClientConnection."""

    def __init__(self, agent: LmtpAgent) -> None:
        self.agent = agent
        self.conn = ClientConnection(lmtp=True)
        self.stream: BlockingStream | None = None

    # ---------------------------------------------------------- the dialogue

    def run(
        self, content: bytes, mailboxes: list[str], reverse_path: str, out: dict[str, Outcome]
    ) -> None:
        """The whole session; fills ``out`` or raises :class:`_Abort`."""
        self._connect()
        greeting = self._event(self.agent.command_timeout)
        if not isinstance(greeting, ev.Greeting) or greeting.reply.code != 220:
            raise self._temporary(_R451_NOT_READY, f"greeting: {_describe(greeting)}")
        self._hello()
        self._start_tls_if_wanted()
        params = self._mail_params(content, [reverse_path, *mailboxes])
        # Validate every address before anything is sent: render_command is pure.
        mail = ev.MailFrom(reverse_path, params)
        try:
            render_command(mail)
        except LocalProtocolError as exc:
            reply = _syntax_reply(reverse_path, params, replies.R501_BAD_SENDER)
            raise _Abort(PermanentFailure(reply, f"reverse path {reverse_path!r}: {exc}")) from None
        rcpts: list[ev.RcptTo] = []
        for mailbox in mailboxes:
            rcpt = ev.RcptTo(mailbox)
            try:
                render_command(rcpt, smtputf8="SMTPUTF8" in params)
            except LocalProtocolError as exc:
                reply = _syntax_reply(mailbox, params, replies.R501_BAD_RECIPIENT)
                out[mailbox] = PermanentFailure(reply, f"{mailbox!r}: {exc}")
                continue
            rcpts.append(rcpt)
        if rcpts:
            self._transaction(content, mail, rcpts, out)

    def _transaction(
        self, content: bytes, mail: ev.MailFrom, rcpts: list[ev.RcptTo], out: dict[str, Outcome]
    ) -> None:
        """MAIL, RCPTs and DATA (pipelined when offered), the content, the final replies."""
        timeout = self.agent.command_timeout
        send = self.conn.send
        if self.conn.supports_extension(PIPELINING):
            # RFC 2920 §3.1: MAIL, RCPT... and DATA in one group; DATA ends it.
            self._write(send(mail) + b"".join(send(r) for r in rcpts) + send(ev.Data()), timeout)
            mail_reply = self._reply(timeout)
            rcpt_replies = [self._reply(timeout) for _ in rcpts]
            data_reply: ev.ServerReply | None = self._reply(timeout)
        else:
            self._write(send(mail), timeout)
            mail_reply = self._reply(timeout)
            rcpt_replies, data_reply = [], None
            if mail_reply.reply.is_positive:
                for rcpt in rcpts:
                    self._write(send(rcpt), timeout)
                    rcpt_replies.append(self._reply(timeout))
                if any(answer.reply.is_positive for answer in rcpt_replies):
                    self._write(send(ev.Data()), timeout)
                    data_reply = self._reply(timeout)
        if not mail_reply.reply.is_positive:
            raise _Abort(_outcome(mail_reply.reply, "MAIL"))
        accepted: list[str] = []
        for rcpt, answer in zip(rcpts, rcpt_replies, strict=True):
            if answer.reply.is_positive:
                accepted.append(rcpt.forward_path)
            else:
                out[rcpt.forward_path] = _outcome(answer.reply, f"RCPT {rcpt.forward_path}")
        if data_reply is None or not accepted:
            return
        if data_reply.reply.code != 354:
            for mailbox in accepted:
                out[mailbox] = _outcome(data_reply.reply, "DATA")
            return
        self._content(content, out)

    def _content(self, content: bytes, out: dict[str, Outcome]) -> None:
        """Send the content; RFC 2033 §4.2: one reply per accepted recipient follows."""
        self._write(self.conn.send_body(content, normalise_newlines=True), self.agent.data_timeout)
        deadline = deadline_after(self.agent.data_timeout)
        while self.conn.outstanding_commands:
            final = self._reply_by(deadline)
            if final.recipient is None:
                continue  # the server saw no accepted recipient: a single reply
            mailbox = final.recipient.forward_path
            reply = final.reply
            out[mailbox] = Delivered() if reply.is_positive else _outcome(reply, "end of data")

    # ------------------------------------------------------------ the steps

    def _connect(self) -> None:
        agent = self.agent
        deadline = deadline_after(agent.connect_timeout)
        try:
            if agent.path is not None:
                self.stream = BlockingStream.connect_unix(agent.path, deadline=deadline)
            else:
                assert agent.host is not None
                self.stream = BlockingStream.connect_tcp(agent.host, agent.port, deadline=deadline)
        except NetError as exc:
            raise self._temporary(_R451_UNREACHABLE, f"connect {agent!r}: {exc}") from None

    def _hello(self) -> None:
        self._write(self.conn.send(ev.Lhlo(self.agent.lhlo_domain)), self.agent.command_timeout)
        answer = self._reply(self.agent.command_timeout)
        if answer.reply.code != 250:
            raise self._temporary(_R451_NOT_READY, f"LHLO: {answer.reply}")

    def _start_tls_if_wanted(self) -> None:
        mode = self.agent.tls
        if mode == "none":
            return
        if not self.conn.supports_extension(STARTTLS):
            if mode == "required":
                raise self._temporary(_R451_TLS_UNAVAILABLE, "STARTTLS not offered")
            return
        self._write(self.conn.send(ev.StartTls()), self.agent.command_timeout)
        answer = self._reply(self.agent.command_timeout)
        if answer.reply.code != 220:
            if mode == "required":
                raise self._temporary(_R451_TLS_UNAVAILABLE, f"STARTTLS: {answer.reply}")
            return
        assert self.stream is not None
        try:
            self.stream.start_tls(
                self.agent.ssl_context(),
                server_hostname=self.agent.server_hostname,
                deadline=deadline_after(self.agent.connect_timeout),
            )
        except TlsHandshakeFailed as exc:
            raise self._temporary(_R451_TLS_FAILED, f"TLS handshake: {exc}") from None
        self.conn.tls_established()
        self._hello()  # RFC 3207 §4.2: capabilities are learnt again under TLS

    def _mail_params(self, content: bytes, addresses: Iterable[str]) -> ev.EsmtpParams:
        params: ev.EsmtpParams = {}
        limit = self.conn.extensions.get(SIZE, "")
        if limit.isascii() and limit.isdigit() and int(limit) and len(content) > int(limit):
            # RFC 1870 §6.1: the server said in advance it would refuse this message.
            detail = f"{len(content)} octets over the server's SIZE {limit}"
            raise _Abort(PermanentFailure(replies.R552_TOO_BIG, detail))
        if SIZE in self.conn.extensions:
            params["SIZE"] = str(len(content))
        if EIGHTBITMIME in self.conn.extensions and not content.isascii():
            params["BODY"] = "8BITMIME"  # RFC 6152 §3
        if SMTPUTF8 in self.conn.extensions and not all(a.isascii() for a in addresses):
            params["SMTPUTF8"] = None  # RFC 6531 §3.4
        return params

    # ------------------------------------------------------------- plumbing

    def _write(self, data: bytes, timeout: float) -> None:
        assert self.stream is not None
        try:
            self.stream.write(data, deadline=deadline_after(timeout))
        except NetError as exc:
            raise self._net_failure(exc) from None

    def _event(self, timeout: float) -> ev.ClientEvent:
        return self._event_by(deadline_after(timeout))

    def _event_by(self, deadline: float) -> ev.ClientEvent:
        assert self.stream is not None
        while True:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                raise self._temporary(exc.reply_hint, f"protocol error: {exc.detail}") from None
            if event is not NEED_DATA:
                assert isinstance(event, ev.ClientEvent)  # PAUSED only at the TLS cut
                return event
            try:
                self.conn.receive_data(self.stream.read(deadline=deadline))
            except NetError as exc:
                raise self._net_failure(exc) from None

    def _reply(self, timeout: float) -> ev.ServerReply:
        return self._reply_by(deadline_after(timeout))

    def _reply_by(self, deadline: float) -> ev.ServerReply:
        event = self._event_by(deadline)
        if not isinstance(event, ev.ServerReply) or event.command is None:
            raise self._temporary(_R451_CONNECTION_LOST, f"expected a reply: {_describe(event)}")
        if event.reply.code == 421:  # RFC 5321 §3.8: the server is closing
            raise self._temporary(_R451_NOT_READY, f"421: {event.reply}")
        return event

    def _drain(self, timeout: float) -> None:
        deadline = deadline_after(timeout)
        while self.conn.outstanding_commands:
            self._reply_by(deadline)

    def _net_failure(self, exc: NetError) -> _Abort:
        if isinstance(exc, ReadTimeout):
            return self._temporary(_R451_TIMEOUT, f"timeout: {exc}")
        if isinstance(exc, TlsHandshakeFailed):
            return self._temporary(_R451_TLS_FAILED, f"TLS: {exc}")
        return self._temporary(_R451_CONNECTION_LOST, f"connection: {exc}")

    def _temporary(self, reply: Reply, detail: str) -> _Abort:
        return _Abort(TemporaryFailure(reply, f"{self.agent!r}: {detail}"))

    def close(self) -> None:
        """QUIT if the dialogue is in step, then close; never raises."""
        stream, self.stream = self.stream, None
        if stream is None:
            return
        try:
            # send() refuses QUIT when the dialogue is out of step (replies owed,
            # content expected, TLS cut, failed engine): then we just close.
            quit_line = self.conn.send(ev.Quit())
            stream.write(quit_line, deadline=deadline_after(_QUIT_TIMEOUT))
        except (NetError, LocalProtocolError):
            pass
        finally:
            stream.close()


def _outcome(reply: Reply, stage: str) -> TemporaryFailure | PermanentFailure:
    detail = f"{stage}: {reply}"
    if reply.is_permanent:
        return PermanentFailure(reply, detail)
    return TemporaryFailure(reply, detail)


def _syntax_reply(address: str, params: ev.EsmtpParams, otherwise: Reply) -> Reply:
    if not address.isascii() and "SMTPUTF8" not in params:
        return replies.R553_NON_ASCII_ADDRESS
    return otherwise


def _describe(event: object) -> str:
    if isinstance(event, ev.Greeting | ev.ServerReply):
        return str(event.reply)
    return type(event).__name__
