"""The I/O pump of one connection: socket ⇄ ServerConnection ⇄ Session.

A loop, nothing more (STYLE.md §2): read → ``receive_data`` → events →
session → ``send`` → write. Replies of a pipelined batch are written together
when the engine needs more data (RFC 2920 §3.2 lets the server batch them).

Timeouts (RFC 5321 §4.5.3.2): ``idle_timeout`` between transactions,
``command_timeout`` inside one, ``data_timeout`` while content arrives. On
timeout the client gets 421 4.4.2 and the connection closes.

An unexpected exception is logged with its traceback and session id; the peer
gets 451 4.3.0 and the connection closes. No traceback goes on the wire.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ..net.errors import Interrupted, NetError, PeerClosed, ReadTimeout, TlsHandshakeFailed
from ..net.streams import SmtpStream
from ..observability.events import SmtpEvent, TlsEvent
from ..observability.logging import log_event
from ..protocol import commands as c
from ..protocol import replies
from ..protocol.errors import RemoteProtocolError
from ..protocol.server import NEED_DATA, PAUSED, ServerConnection
from ..protocol.state import TRANSACTION_STATES, State
from .envelope import TlsInfo
from .session import Session

MAX_ERRORS_PER_SESSION = 20  # like Postfix smtpd_hard_error_limit; then 421


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-phase read timeouts in seconds."""

    idle: float
    command: float
    data: float


def tls_info(ssl_object: ssl.SSLObject | None, server_name: str | None) -> TlsInfo | None:
    """The negotiated version and cipher, for logs and the Received header."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    if cipher is None:
        return None
    name, version, bits = cipher
    return TlsInfo(
        version=ssl_object.version() or version, cipher=name, bits=bits, server_name=server_name
    )


class Connection:
    """Drives one client connection to completion."""

    def __init__(
        self,
        stream: SmtpStream,
        engine: ServerConnection,
        session: Session,
        *,
        timeouts: Timeouts,
        tls_context: ssl.SSLContext | None,
        server_name_of: Callable[[ssl.SSLObject], str | None] | None = None,
    ) -> None:
        self.stream = stream
        self.engine = engine
        self.session = session
        self.timeouts = timeouts
        self.tls_context = tls_context
        self._server_name_of = server_name_of
        self._out: list[bytes] = []
        self._errors = 0
        self.shutting_down = False

    @property
    def in_transaction(self) -> bool:
        return self.engine.state in TRANSACTION_STATES

    def request_shutdown(self) -> None:
        """Graceful shutdown: idle sessions get 421 now, others after their transaction."""
        self.shutting_down = True
        if not self.in_transaction:
            self.stream.interrupt()

    async def run(self) -> None:
        """Serve the connection until QUIT, EOF, an error or shutdown."""
        sid = self.session.session_id
        try:
            if self.engine.options.implicit_tls:
                self._note_tls()  # the listener completed the handshake before we started
            self._write(self.engine.send(replies.greeting(self.session.ctx.hostname)))
            await self._loop()
        except Interrupted:
            self._write(self.engine.send(replies.R421_SHUTTING_DOWN))
        except ReadTimeout:
            log_event(SmtpEvent.TIMEOUT, logging.INFO, session=sid, state=self.engine.state.name)
            self._write(self.engine.send(replies.R421_TIMEOUT))
        except TlsHandshakeFailed as exc:
            log_event(TlsEvent.HANDSHAKE_FAILED, logging.INFO, session=sid, error=str(exc))
        except (PeerClosed, NetError):
            pass
        except Exception:
            log_event(SmtpEvent.SESSION_CRASHED, logging.ERROR, exc_info=True, session=sid)
            self._write(replies.R451_LOCAL_ERROR.render())
        finally:
            self.session.close()
            self._flush()
            self.stream.close()
            log_event(
                SmtpEvent.DISCONNECTED,
                session=sid,
                messages=self.session.messages_accepted,
            )

    async def _loop(self) -> None:
        engine = self.engine
        while True:
            try:
                event = engine.next_event()
            except RemoteProtocolError as exc:
                await self._protocol_error(exc)
                if exc.fatal or engine.state is State.CLOSED:
                    return
                continue
            if event is NEED_DATA:
                if self.shutting_down and not self.in_transaction:
                    raise Interrupted("shutdown")
                self._flush()
                await self.stream.drain()
                data = await self.stream.read(self._timeout())
                engine.receive_data(data)
                continue
            if event is PAUSED:
                if engine.state is State.TLS_PENDING:
                    await self._start_tls()
                    continue
                return  # CLOSED or ERROR
            if isinstance(event, c.ConnectionClosed):
                return
            if isinstance(event, c.MessageData):
                self.session.receive_content(event.data)
                continue
            assert isinstance(event, c.Command)
            reply = await self.session.handle(event)
            self._write(engine.send(reply))
            if engine.state is State.CLOSED:
                return
            if self.shutting_down and not self.in_transaction:
                raise Interrupted("shutdown after transaction")

    async def _protocol_error(self, exc: RemoteProtocolError) -> None:
        self._errors += 1
        log_event(
            SmtpEvent.PROTOCOL_ERROR,
            logging.INFO,
            session=self.session.session_id,
            reply=exc.reply_hint.code,
            detail=exc.detail,
        )
        if self._errors > MAX_ERRORS_PER_SESSION:
            log_event(SmtpEvent.TOO_MANY_ERRORS, logging.WARNING, session=self.session.session_id)
            self._write(self.engine.send(replies.R421_TOO_MANY_ERRORS))
            return
        self._write(self.engine.send(exc.reply_hint))

    async def _start_tls(self) -> None:
        assert self.tls_context is not None
        self._flush()
        # SECURITY: CVE-2011-0411: plaintext pipelined after STARTTLS is dropped
        # (the engine dropped what it had buffered; this drops what the stream held).
        dropped = self.stream.discard_buffered() + self.engine.discarded_after_starttls
        if dropped:
            log_event(
                SmtpEvent.STARTTLS_INJECTION,
                logging.WARNING,
                session=self.session.session_id,
                discarded_octets=dropped,
            )
        await self.stream.start_tls(self.tls_context)
        self.engine.tls_established()
        self.session.tls_established()
        self._note_tls()

    def _note_tls(self) -> None:
        ssl_object = self.stream.get_extra_info("ssl_object")
        lookup = self._server_name_of
        sni = lookup(ssl_object) if lookup is not None and ssl_object is not None else None
        self.session.tls = tls_info(ssl_object, sni)
        if self.session.tls is not None:
            t = self.session.tls
            log_event(
                TlsEvent.HANDSHAKE_DONE,
                session=self.session.session_id,
                tls_version=t.version,
                cipher=t.cipher,
                sni=t.server_name,
            )

    def _timeout(self) -> float:
        state = self.engine.state
        if state in (State.DATA, State.BDAT):
            return self.timeouts.data
        if state in TRANSACTION_STATES:
            return self.timeouts.command
        return self.timeouts.idle

    def _write(self, data: bytes) -> None:
        self._out.append(data)

    def _flush(self) -> None:
        if self._out:
            self.stream.write(b"".join(self._out))
            self._out.clear()
