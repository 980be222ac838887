"""The byte pipe under one SMTP connection: bounded reads, timeouts, flow control, STARTTLS.

Why a Protocol and not asyncio streams (STYLE.md prefers
``StreamWriter.start_tls()``; this is the documented exception): after
STARTTLS, any plaintext the client pipelined must be dropped (CVE-2011-0411).
``StreamReader`` can hold such bytes in its private buffer with no public way
to see or flush them, and ``start_tls`` keeps that buffer, so they would be
read back as if they came under TLS. Owning the buffer here makes the cut
exact: :meth:`SmtpStream.discard_buffered` empties it, and the public
``loop.start_tls()`` does the handshake on the same protocol object.

Reads are bounded: at most :data:`MAX_BUFFERED_OCTETS` are kept before the
transport is paused, so a fast peer cannot grow our memory.

Must not: parse SMTP (that is ``protocol/``) or decide anything.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, cast

from .errors import Interrupted, PeerClosed, ReadTimeout, TlsHandshakeFailed, map_exceptions

MAX_BUFFERED_OCTETS = 256 * 1024  # pause reading past this; resume when drained
DEFAULT_HANDSHAKE_TIMEOUT = 30.0  # seconds; a TLS handshake needs a few round trips


class SmtpStream(asyncio.Protocol):
    """A connected socket (plain or TLS) with an owned receive buffer."""

    def __init__(self, on_connected: Callable[[SmtpStream], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_connected = on_connected
        self.transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()

    # asyncio.Protocol callbacks -------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.connected.set()
        if self._on_connected is not None:
            callback, self._on_connected = self._on_connected, None
            callback(self)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > MAX_BUFFERED_OCTETS and not self._paused_reading:
            self._paused_reading = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._exc = exc
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self.closed.set()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # API used by server/connection.py --------------------------------------

    async def read(self, timeout: float | None) -> bytes:
        """Return the buffered bytes, waiting up to ``timeout`` for some; b"" at EOF.

        Raises:
            ReadTimeout: nothing arrived in time.
            Interrupted: :meth:`interrupt` was called while waiting.
        """
        if not self._chunks and not self._eof:
            waiter = self._waiter = self._loop.create_future()
            # One timer handle per wait (cheaper than asyncio.timeout's cancellation
            # machinery, and this runs for every command of every session).
            timer = None
            if timeout is not None:
                timer = self._loop.call_later(timeout, _expire, waiter, timeout)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        if not self._chunks:
            return b""
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    def interrupt(self) -> None:
        """Make a pending :meth:`read` raise :class:`Interrupted` (used for shutdown)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(Interrupted("interrupted"))

    def discard_buffered(self) -> int:
        """Drop everything received but not yet read; return how many octets."""
        dropped = self._buffered
        self._chunks.clear()
        self._buffered = 0
        return dropped

    def write(self, data: bytes) -> None:
        """Queue bytes for sending (no-op once closing)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self._write_paused and not self.closed.is_set():
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._exc is not None and isinstance(self._exc, OSError):
            raise PeerClosed(str(self._exc))

    async def start_tls(
        self, context: ssl.SSLContext, *, timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    ) -> None:
        """Upgrade the connection in place (server side) after a 220 to STARTTLS.

        Raises:
            TlsHandshakeFailed: the handshake failed or timed out.
        """
        assert self.transport is not None
        try:
            with map_exceptions():
                new = await self._loop.start_tls(
                    self.transport,
                    self,
                    context,
                    server_side=True,
                    ssl_handshake_timeout=timeout,
                )
        except (ReadTimeout, PeerClosed, ConnectionError) as exc:
            raise TlsHandshakeFailed(str(exc)) from exc
        if new is None:
            raise TlsHandshakeFailed("connection closed during handshake")
        self.transport = new

    def get_extra_info(self, name: str) -> Any:
        """A transport extra (``peername``, ``sockname``, ``ssl_object``...)."""
        return None if self.transport is None else self.transport.get_extra_info(name)

    def close(self) -> None:
        """Close after flushing what was written."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Close immediately, dropping unsent data."""
        if self.transport is not None:
            self.transport.abort()


__all__ = ["Interrupted", "PeerClosed", "ReadTimeout", "SmtpStream", "TlsHandshakeFailed"]


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(ReadTimeout(f"no data for {timeout} s"))
