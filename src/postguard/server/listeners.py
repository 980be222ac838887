"""Listeners: bound sockets, each with its TLS mode and rules (mx, submission, submissions).

Sockets are bound first (possibly as root, for ports 25/465/587) and served
later, after privileges are dropped (``server/privileges.py``). Each accepted
connection gets a session id, passes the connection limiter (421 4.7.0 when
over), and runs as its own task.

Implicit TLS (``submissions``, RFC 8314): our own accept loop takes the TCP
connection, counts it against the limits, and only then hands the socket to
the event loop's TLS layer (``connect_accepted_socket``), so a connection still
in its handshake holds a slot; a plaintext client never completes the
handshake and never sees a greeting. (Pausing reads in ``connection_made`` and
calling ``start_tls`` later does not work: uvloop delivers the ClientHello
to the protocol anyway.)

With several processes (``[server] workers``), every listener accepts in its own loop,
one connection per readiness of the socket (so that the processes take turns) and none
while the accept balance says wait (``balance.py``), so that long sessions spread evenly
over the processes. With one process, plain listeners use the event loop's own accept
loop, which is cheaper per connection (about 10 % of the CPU of a one-message
connection, measured 18:05).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ..net.streams import DEFAULT_HANDSHAKE_TIMEOUT, SmtpStream
from ..observability.events import SmtpEvent, TlsEvent
from ..observability.logging import log_event
from ..protocol import replies
from ..protocol.server import ServerConnection
from .balance import AcceptBalance
from .connection import Connection, Timeouts
from .limits import ConnectionLimiter
from .session import Session, SessionContext

LISTEN_BACKLOG = 512


@dataclass(frozen=True, slots=True)
class BoundAddress:
    """One socket a listener serves, as actually bound (port 0 resolved)."""

    host: str
    port: int

    def url(self, implicit_tls: bool) -> str:
        scheme = "smtps" if implicit_tls else "smtp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def bind_socket(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on ``host:port``; "*" means every IPv4 and IPv6 address.

    Raises:
        OSError: the address cannot be bound (in use, not ours, no permission).
    """
    hosts = ["0.0.0.0", "::"] if host == "*" else [host]
    sockets: list[socket.socket] = []
    try:
        for h in hosts:
            family = socket.AF_INET6 if ":" in h else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((h, port))
            if port == 0 and len(hosts) > 1:
                port = sock.getsockname()[1]  # "*" with port 0: same port on both
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except OSError:
        for s in sockets:
            s.close()
        raise
    return sockets


class Listener:
    """One named listener and its sockets."""

    def __init__(
        self,
        ctx: SessionContext,
        *,
        sockets: list[socket.socket],
        limiter: ConnectionLimiter,
        timeouts: Timeouts,
        tls_context: ssl.SSLContext | None,
        server_name_of: Callable[[ssl.SSLObject], str | None] | None = None,
        balance: AcceptBalance | None = None,
    ) -> None:
        self.ctx = ctx
        self.balance = balance
        self.name = ctx.rules.name
        self.sockets = sockets
        self.limiter = limiter
        self.timeouts = timeouts
        self.tls_context = tls_context
        self.server_name_of = server_name_of
        self.connections: set[Connection] = set()
        self._servers: list[asyncio.Server] = []
        self._accept_tasks: list[asyncio.Task[None]] = []
        self._handshakes: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def addresses(self) -> list[BoundAddress]:
        out = []
        for sock in self.sockets:
            host, port = sock.getsockname()[:2]
            out.append(BoundAddress(host, port))
        return out

    async def start(self) -> None:
        """Start accepting connections on the bound sockets."""
        loop = asyncio.get_running_loop()
        balanced = self.balance is not None and self.balance.enabled
        for sock in self.sockets:
            if self.ctx.rules.implicit_tls:
                self._accept_tasks.append(loop.create_task(self._accept_tls(sock)))
                continue
            if balanced:
                self._accept_tasks.append(loop.create_task(self._accept_plain(sock)))
                continue
            server = await loop.create_server(
                lambda: SmtpStream(self._accepted), sock=sock, backlog=LISTEN_BACKLOG
            )
            self._servers.append(server)

    async def _accept_one(self, sock: socket.socket) -> tuple[socket.socket, str] | None:
        """Accept the next connection, after the balance's delay; None on an accept
        error (logged; after a short back-off, so EMFILE does not spin)."""
        if self.balance is not None and (delay := self.balance.defer_seconds()):
            await asyncio.sleep(delay)
        try:
            conn, addr = await asyncio.get_running_loop().sock_accept(sock)
        except OSError as exc:  # EMFILE and friends: back off briefly, keep serving
            log_event(SmtpEvent.ACCEPT_FAILED, logging.ERROR, listener=self.name, error=str(exc))
            await asyncio.sleep(0.1)
            return None
        return conn, str(addr[0])

    async def _accept_plain(self, sock: socket.socket) -> None:
        """Accept with a persistent reader: one connection per readiness (so that the
        processes take turns), none while the balance says wait."""
        loop = asyncio.get_running_loop()
        fd = sock.fileno()
        done: asyncio.Future[None] = loop.create_future()

        def resume() -> None:
            if not done.done():
                loop.add_reader(fd, acceptable)

        def acceptable() -> None:
            if self.balance is not None and (delay := self.balance.defer_seconds()):
                loop.remove_reader(fd)
                loop.call_later(delay, resume)
                return
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # a sibling took it
            except OSError as exc:  # EMFILE and friends: back off briefly
                log_event(
                    SmtpEvent.ACCEPT_FAILED, logging.ERROR, listener=self.name, error=str(exc)
                )
                loop.remove_reader(fd)
                loop.call_later(0.1, resume)
                return
            conn.setblocking(False)
            ip = str(addr[0])
            admitted = self._admit(ip)  # counted now: the next readiness sees it
            task = loop.create_task(self._connect(conn, ip, admitted))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

        loop.add_reader(fd, acceptable)
        try:
            await done
        finally:
            done.cancel()
            with contextlib.suppress(Exception):  # stop_accepting may have closed it
                loop.remove_reader(fd)

    async def _connect(self, conn: socket.socket, ip: str, admitted: bool) -> None:
        def protocol() -> SmtpStream:
            if admitted:
                return SmtpStream(lambda stream: self._start_session(stream, ip))
            return SmtpStream(_refuse)

        try:
            await asyncio.get_running_loop().connect_accepted_socket(protocol, conn)
        except OSError:  # the client left already
            if admitted:
                self.limiter.release(ip)
            conn.close()

    async def _accept_tls(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            accepted = await self._accept_one(sock)
            if accepted is None:
                continue
            conn, ip = accepted
            if not self._admit(ip):
                conn.close()  # no plaintext 421 possible before the TLS handshake
                continue
            task = loop.create_task(self._handshake(conn, ip))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: socket.socket, ip: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: SmtpStream(lambda s: self._start_session(s, ip)),
                conn,
                ssl=self.tls_context,
                ssl_handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.limiter.release(ip)
            conn.close()
            log_event(
                TlsEvent.HANDSHAKE_FAILED,
                logging.INFO,
                listener=self.name,
                client=ip,
                error=type(exc).__name__,
            )

    def stop_accepting(self) -> None:
        """Close the listening sockets; live connections continue."""
        for server in self._servers:
            server.close()
        for task in self._accept_tasks + list(self._handshakes):
            task.cancel()
        if self._accept_tasks:
            loop = asyncio.get_running_loop()
            for sock in self.sockets:
                with contextlib.suppress(Exception):  # not every socket has a reader
                    loop.remove_reader(sock.fileno())
                sock.close()

    def request_shutdown(self) -> None:
        """Ask every connection to finish (421 when idle or after its transaction)."""
        for conn in list(self.connections):
            conn.request_shutdown()

    async def wait_closed(self, timeout: float) -> None:
        """Wait for connections to end; after ``timeout``, 421 and abort the rest."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for conn in list(self.connections):
                conn.stream.write(replies.R421_SHUTTING_DOWN.render())
                conn.stream.close()
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    def _admit(self, ip: str) -> bool:
        if self.limiter.try_acquire(ip):
            return True
        log_event(
            SmtpEvent.REJECTED_CONNECTION_LIMIT, logging.WARNING, listener=self.name, client=ip
        )
        return False

    def _accepted(self, stream: SmtpStream) -> None:
        """A connection from the event loop's own accept loop (one process)."""
        peer = stream.get_extra_info("peername") or ("?", 0)
        ip = str(peer[0])
        if not self._admit(ip):
            stream.write(replies.R421_TOO_MANY_CONNECTIONS.render())
            stream.close()
            return
        self._start_session(stream, ip)

    def _start_session(self, stream: SmtpStream, ip: str) -> None:
        """Run a session on an admitted connection (its limiter slot is taken)."""
        peer = stream.get_extra_info("peername") or (ip, 0)
        port = int(peer[1])
        session_id = secrets.token_hex(6)
        log_event(SmtpEvent.CONNECTED, session=session_id, listener=self.name, client=ip, port=port)
        engine = ServerConnection(self.ctx.options)
        session = Session(self.ctx, engine, session_id=session_id, client_ip=ip, client_port=port)
        conn = Connection(
            stream,
            engine,
            session,
            timeouts=self.timeouts,
            tls_context=self.tls_context,
            server_name_of=self.server_name_of,
        )
        self.connections.add(conn)
        task = asyncio.get_running_loop().create_task(conn.run())
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self.connections.discard(conn)
            self.limiter.release(ip)

        task.add_done_callback(done)


def _refuse(stream: SmtpStream) -> None:
    """A connection over the limits (not counted): 421 and close."""
    stream.write(replies.R421_TOO_MANY_CONNECTIONS.render())
    stream.close()
