"""Dialogue tests that read like a transcript (Stalwart's TestSession, maddy's ExpectPattern).

dlg = await Dialogue.connect(port)
await dlg.expect("220")
await dlg.cmd("EHLO client.test", expect="250")
await dlg.cmd("MAIL FROM:<a@example.org>", expect="530 5.7.0")
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

REPLY_TIMEOUT_SECONDS = 15.0


class Dialogue:
    """A raw SMTP client over asyncio streams that checks each reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        port: int,
        host: str = "127.0.0.1",
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Dialogue:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=server_hostname if tls else None
        )
        return cls(reader, writer)

    async def read_reply(self) -> list[str]:
        """Read one (possibly multi-line) reply; returns its lines without CRLF."""
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT_SECONDS)
            if not raw:
                raise ConnectionError(f"connection closed; got so far: {lines}")
            line = raw.decode("utf-8").rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    async def expect(self, prefix: str) -> list[str]:
        """Read a reply and assert its last line starts with ``prefix``."""
        lines = await self.read_reply()
        assert lines[-1].startswith(prefix), f"expected {prefix!r}, got {lines!r}"
        return lines

    async def cmd(self, line: str, *, expect: str) -> list[str]:
        """Send a command line (CRLF added) and check the reply."""
        self.send_raw(line.encode("utf-8") + b"\r\n")
        return await self.expect(expect)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def starttls(self, context: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        """STARTTLS with a 220 reply, then the handshake."""
        await self.cmd("STARTTLS", expect="220")
        await self.writer.start_tls(context, server_hostname=server_hostname)

    async def send_message(
        self, body: bytes, *, mail_from: str = "sender@example.org", rcpt: str = "test@localhost"
    ) -> list[str]:
        """MAIL, RCPT, DATA and the dot-stuffed body; returns the final reply."""
        await self.cmd(f"MAIL FROM:<{mail_from}>", expect="250")
        await self.cmd(f"RCPT TO:<{rcpt}>", expect="250")
        await self.cmd("DATA", expect="354")
        stuffed = b"\r\n".join(
            b"." + line if line.startswith(b".") else line for line in body.split(b"\r\n")
        )
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        self.send_raw(stuffed + b".\r\n")
        return await self.read_reply()

    async def is_closed(self) -> bool:
        """True once the server has closed the connection (reads EOF)."""
        data = await asyncio.wait_for(self.reader.read(1), REPLY_TIMEOUT_SECONDS)
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()
