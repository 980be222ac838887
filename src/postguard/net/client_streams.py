"""Blocking client connections for agents that run in worker threads (LMTP delivery).

The queue manager calls ``DeliveryAgent.deliver`` through ``run_in_executor``,
so an agent owns its thread and may block; a blocking socket there is simpler
than an event loop per thread. Every operation takes an absolute *deadline*
(``time.monotonic()`` seconds) rather than a per-call timeout, so a peer that
drips one octet just before each timeout cannot hold the thread for ever.

Errors leave this module only as :mod:`postguard.net.errors` types
(``map_exceptions``): :class:`ReadTimeout`, :class:`PeerClosed`,
:class:`TlsHandshakeFailed`.

Must not: parse SMTP/LMTP (that is ``protocol/``) or decide anything.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from .errors import NetError, ReadTimeout, TlsHandshakeFailed, map_exceptions

__all__ = ["READ_CHUNK_OCTETS", "BlockingStream", "deadline_after"]

READ_CHUNK_OCTETS = 64 * 1024  # one read; the protocol engine bounds what it keeps


def deadline_after(seconds: float) -> float:
    """The ``time.monotonic()`` value ``seconds`` from now."""
    return time.monotonic() + seconds


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ReadTimeout("deadline passed")
    return left


class BlockingStream:
    """One connected socket (plain, or TLS after :meth:`start_tls`)."""

    def __init__(self, sock: socket.socket, *, peer: str) -> None:
        self._sock: socket.socket = sock
        self.peer = peer
        self.is_unix = sock.family == socket.AF_UNIX

    @classmethod
    def connect_tcp(cls, host: str, port: int, *, deadline: float) -> BlockingStream:
        """Connect to ``host``:``port`` (name, IPv4 or IPv6 literal).

        Raises:
            NetError: refused, unreachable, or not connected by ``deadline``.
        """
        with map_exceptions():
            sock = socket.create_connection((host, port), timeout=_remaining(deadline))
        return cls(sock, peer=f"{host}:{port}")

    @classmethod
    def connect_unix(cls, path: Path | str, *, deadline: float) -> BlockingStream:
        """Connect to the Unix stream socket at ``path``.

        Raises:
            NetError: missing, refused, or not connected by ``deadline``.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with map_exceptions():
                sock.settimeout(_remaining(deadline))
                sock.connect(str(path))
        except NetError:
            sock.close()
            raise
        return cls(sock, peer=str(path))

    @property
    def is_tls(self) -> bool:
        """Whether the connection is under TLS."""
        return isinstance(self._sock, ssl.SSLSocket)

    def read(self, *, deadline: float) -> bytes:
        """Return what arrives next (up to 64 KiB); ``b""`` at EOF.

        Raises:
            ReadTimeout: nothing arrived by ``deadline``.
            NetError: the connection failed.
        """
        with map_exceptions():
            self._sock.settimeout(_remaining(deadline))
            return self._sock.recv(READ_CHUNK_OCTETS)

    def write(self, data: bytes, *, deadline: float) -> None:
        """Send all of ``data`` by ``deadline``.

        Raises:
            NetError: the connection failed or the deadline passed.
        """
        with map_exceptions():
            # Since Python 3.5 the timeout bounds the whole sendall, not each send.
            self._sock.settimeout(_remaining(deadline))
            self._sock.sendall(data)

    def start_tls(
        self, context: ssl.SSLContext, *, server_hostname: str | None, deadline: float
    ) -> None:
        """Upgrade the connection (client side) after a 220 to STARTTLS.

        Certificate and host name checks are the context's (``tls/contexts.py``).

        Raises:
            TlsHandshakeFailed: the handshake failed, was refused, or timed out.
        """
        try:
            with map_exceptions():
                self._sock.settimeout(_remaining(deadline))
                # Handshake after the assignment, so close() reaches the socket if it fails.
                self._sock = context.wrap_socket(
                    self._sock, server_hostname=server_hostname, do_handshake_on_connect=False
                )
                self._sock.do_handshake()
        except TlsHandshakeFailed:
            raise
        except NetError as exc:
            raise TlsHandshakeFailed(str(exc)) from exc

    def close(self) -> None:
        """Close the socket (no TLS close_notify wait)."""
        self._sock.close()
