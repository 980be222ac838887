"""Run real SMTP clients from async tests, and check what they left in the Maildir.

Theory of operation: every interop test uses the in-process ``mail_server``
fixture, which serves from the test's own event loop. A client must therefore
never block that loop:

* external programs (swaks, openssl, curl, msmtp) run through
  ``asyncio.create_subprocess_exec`` (:func:`run_tool`, :class:`LineTool`), so the
  loop keeps serving while we wait for the program to exit;
* blocking Python clients (``smtplib``) run in a worker thread
  (``asyncio.to_thread``);
* async clients (``aiosmtplib``) simply run in the same loop.

The in-process server was chosen over ``subprocess_factory`` because it starts
in milliseconds, shows its tracebacks in the pytest report, and the real
``postguard serve`` process already has its own tests in ``tests/integration``.

Every wait is bounded: programs by :data:`TOOL_TIMEOUT_SECONDS` (killed and
reported on expiry), replies by :data:`REPLY_TIMEOUT_SECONDS`, deliveries by the
fixture's ``wait_for_messages``. Nothing sleeps.

Owns: :class:`MarkedMessage` (a message carrying a unique marker), the
assertions on delivered bytes (:func:`assert_delivered`) and on refusals
(:func:`assert_nothing_accepted`). Must not: start servers, or know any one
client's options.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from helpers.servers import ServerInfo

# Generous for a loaded CI machine: each client finishes in well under a second locally.
TOOL_TIMEOUT_SECONDS = 30.0
REPLY_TIMEOUT_SECONDS = 15.0
SMTP_REPLY_LINE = re.compile(r"^\d{3}(?:[ -]|$)")

# Clients print translated messages under other locales (msmtp has NLS); pin C.
TOOL_ENV = dict(os.environ, LC_ALL="C", LANG="C")


@dataclass(frozen=True)
class ToolResult:
    """What a finished client program produced."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def transcript(self) -> str:
        """stdout then stderr; where a client prints its SMTP dialogue varies."""
        return self.stdout + self.stderr

    def describe(self) -> str:
        """A readable account for assertion messages."""
        return (
            f"$ {' '.join(self.argv)}\n-> exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


async def run_tool(
    *argv: str, stdin: bytes | None = None, timeout: float = TOOL_TIMEOUT_SECONDS
) -> ToolResult:
    """Run a program to completion without blocking the event loop.

    Args:
        argv: The program and its arguments.
        stdin: Bytes fed to its standard input (closed afterwards); ``None``
            connects standard input to ``/dev/null``.
        timeout: Seconds before the program is killed.

    Returns:
        Its exit status and decoded output.

    Raises:
        AssertionError: the program did not exit within ``timeout``.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=TOOL_ENV,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{' '.join(argv)} did not exit within {timeout}s") from None
    assert proc.returncode is not None
    return ToolResult(
        tuple(argv),
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


@dataclass
class LineTool:
    """An interactive program driven line by line, e.g. ``openssl s_client``.

    Lines on its stdout that are not SMTP replies (s_client's own report when
    not ``-quiet``) are kept in :attr:`stdout_lines` and skipped by
    :meth:`read_reply`.
    """

    argv: tuple[str, ...]
    proc: asyncio.subprocess.Process
    stdout_lines: list[str] = field(default_factory=list)
    _stderr: asyncio.Task[bytes] | None = None

    @classmethod
    async def start(cls, *argv: str) -> LineTool:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=TOOL_ENV,
        )
        tool = cls(tuple(argv), proc)
        # Drained concurrently so a chatty stderr can never fill its pipe and stall the child.
        assert proc.stderr is not None
        tool._stderr = asyncio.ensure_future(proc.stderr.read())
        return tool

    def send_line(self, line: str) -> None:
        """Write one line; the program adds CR itself (``-crlf``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("utf-8") + b"\n")

    async def read_reply(self) -> list[str]:
        """Read the next complete SMTP reply (all its lines) from the program's stdout."""
        assert self.proc.stdout is not None
        reply: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), REPLY_TIMEOUT_SECONDS)
            if not raw:
                raise AssertionError(
                    f"{self.argv[0]} closed stdout mid-dialogue; reply so far {reply!r}, "
                    f"output:\n" + "\n".join(self.stdout_lines)
                )
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stdout_lines.append(line)
            if SMTP_REPLY_LINE.match(line):
                reply.append(line)
                if len(line) == 3 or line[3] == " ":
                    return reply

    async def cmd(self, line: str, *, expect: str) -> list[str]:
        """Send a command and assert the reply's last line starts with ``expect``."""
        self.send_line(line)
        assert self.proc.stdin is not None
        await self.proc.stdin.drain()
        reply = await self.read_reply()
        assert reply[-1].startswith(expect), f"{line!r}: expected {expect!r}, got {reply!r}"
        return reply

    async def finish(self, timeout: float = TOOL_TIMEOUT_SECONDS) -> ToolResult:
        """Close stdin, collect the remaining output and wait for the exit status."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        assert self._stderr is not None
        self.proc.stdin.close()
        try:
            rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
            err = await asyncio.wait_for(self._stderr, timeout)
            returncode = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.argv[0]} did not exit within {timeout}s") from None
        self.stdout_lines.extend(rest.decode("utf-8", "replace").splitlines())
        return ToolResult(
            self.argv, returncode, "\n".join(self.stdout_lines), err.decode("utf-8", "replace")
        )


@dataclass(frozen=True)
class MarkedMessage:
    """A small RFC 5322 message whose body carries a marker unique to one test run."""

    client: str
    marker: str
    mail_from: str = "sender@example.org"
    rcpt_to: str = "test@localhost"

    @classmethod
    def new(cls, client: str) -> MarkedMessage:
        return cls(client=client, marker=f"interop-{client}-{uuid.uuid4().hex}")

    @property
    def subject(self) -> str:
        return f"interop test from {self.client}"

    @property
    def body_text(self) -> str:
        """The body alone, LF line ends (for clients that take a body argument)."""
        return f"Hello from {self.client}.\n{self.marker}\n"

    def as_bytes(self, newline: bytes = b"\r\n") -> bytes:
        """Headers and body with ``newline`` line ends (clients differ in what they want)."""
        lines = [
            f"From: <{self.mail_from}>",
            f"To: <{self.rcpt_to}>",
            f"Subject: {self.subject}",
            "",
            *self.body_text.splitlines(),
        ]
        return newline.join(line.encode("utf-8") for line in lines) + newline

    def write(self, path: Path, newline: bytes = b"\r\n") -> Path:
        path.write_bytes(self.as_bytes(newline))
        return path


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """Header section and body of a stored message (which uses CRLF line ends)."""
    header, sep, body = message.partition(b"\r\n\r\n")
    assert sep, f"no header/body separator in {message[:400]!r}"
    return header + b"\r\n", body


def received_header(message: bytes) -> str:
    """Our Received header, unfolded (RFC 5322 §2.2.3).

    The delivered copy starts with the Return-Path that final delivery records
    (RFC 5321 §4.4), then the Received that we prepended on acceptance.
    """
    header, _ = split_message(message)
    assert header.startswith(b"Return-Path: <"), f"no Return-Path first: {header[:200]!r}"
    header = header.partition(b"\r\n")[2]
    assert header.startswith(b"Received: "), (
        f"Received is not the first header (RFC 5321 §4.4 prepends it): {header[:400]!r}"
    )
    lines = header.decode("utf-8").split("\r\n")
    field_lines = [lines[0]]
    for line in lines[1:]:
        if not line.startswith((" ", "\t")):
            break
        field_lines.append(line)
    return " ".join(line.strip() for line in field_lines)


def assert_delivered(messages: list[bytes], sent: MarkedMessage, *, tls: str | None) -> bytes:
    """Assert exactly ``sent`` reached the mailbox, and how it travelled.

    Args:
        messages: The mailbox's contents (from ``wait_for_messages``).
        sent: The message the client was given.
        tls: The TLS version the Received header must name (``"TLSv1.3"``), or
            ``None`` for a plaintext session.

    Returns:
        The stored message.
    """
    assert len(messages) == 1, f"expected 1 message in the Maildir, found {len(messages)}"
    [message] = messages
    _, body = split_message(message)
    assert sent.marker.encode() in body, f"marker {sent.marker} not in body {body[:400]!r}"
    received = received_header(message)
    assert f"for <{sent.rcpt_to}>;" in received, received
    if tls is None:
        # RFC 3848: "ESMTP" alone; "ESMTPS" would claim a protection the session did not have.
        assert re.search(r" with ESMTP id ", received), received
        assert "(using " not in received, received
    else:
        assert re.search(r" with ESMTPS id ", received), received
        assert f"(using {tls} with cipher " in received, received
    return message


def assert_nothing_accepted(server: ServerInfo) -> None:
    """Assert no message was delivered and none is queued.

    Called after the client has exited: a refusal at MAIL means no transaction
    ever began, so there is nothing in flight that could still arrive and no
    waiting is needed.
    """
    assert server.messages() == [], "a refused client's message reached the Maildir"
    queued = server.spooled()
    assert queued == [], f"a refused client's message was queued: {queued}"
