"""A minimal LMTP server (RFC 2033) for tests: it accepts every recipient and keeps what
it was given, and can hold each connection before its greeting until told to go on.
"""

from __future__ import annotations

import re
import socket
import threading

MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.IGNORECASE | re.MULTILINE)
HOLD_TIMEOUT_SECONDS = 60.0


class LmtpSink:
    """Accepts everything; records each message's content and Message-ID.

    With ``held=True`` every connection waits before its greeting until :attr:`release`
    is set, so deliveries to it stay in flight (their recipients leased) as long as the
    test wants. ``listening`` may be a socket bound already (and not yet listening):
    a port that refused connections until now starts accepting them.
    """

    def __init__(self, *, held: bool = False, listening: socket.socket | None = None) -> None:
        self.release = threading.Event()
        if not held:
            self.release.set()
        self.stored: list[str] = []  # Message-IDs, in order of arrival
        self.contents: list[bytes] = []  # what came after DATA, dot-unstuffed
        self.connections = 0
        if listening is None:
            listening = socket.create_server(("127.0.0.1", 0))
        else:
            listening.listen()
        self._sock = listening
        self.port = self._sock.getsockname()[1]
        self._closed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rfile:
            self.release.wait(HOLD_TIMEOUT_SECONDS)
            send = conn.sendall
            try:
                send(b"220 sink LMTP\r\n")
                rcpts = 0
                while line := rfile.readline():
                    verb = line[:4].upper()
                    if verb == b"LHLO":
                        send(b"250-sink.test\r\n250 PIPELINING\r\n")
                    elif verb == b"MAIL":
                        rcpts = 0
                        send(b"250 OK\r\n")
                    elif verb == b"RCPT":
                        rcpts += 1
                        send(b"250 OK\r\n")
                    elif verb == b"DATA":
                        send(b"354 go\r\n")
                        lines: list[bytes] = []
                        while (chunk := rfile.readline()) not in (b".\r\n", b""):
                            lines.append(chunk[1:] if chunk.startswith(b".") else chunk)
                        content = b"".join(lines)
                        found = MESSAGE_ID.search(content)
                        with self._lock:
                            self.contents.append(content)
                            if found:
                                self.stored.append(found.group(1).decode())
                        send(b"250 stored\r\n" * rcpts)
                    elif verb == b"QUIT":
                        send(b"221 bye\r\n")
                        return
                    else:
                        send(b"250 OK\r\n")
            except OSError:
                return

    def close(self) -> None:
        self._closed = True
        self.release.set()
        self._sock.close()
