"""Incremental receivers, one per phase of the conversation (after smtp-proto).

Theory of operation
-------------------
The engine owns one byte buffer and hands it to the receiver of the current
phase. Each receiver consumes what it can and returns what it found; what it
does not consume stays in the buffer for the next phase (pipelining, RFC 2920).

* :class:`CommandLineReceiver` frames command lines. Only CRLF ends a line.
  A bare LF also ends a line (so a client using LF alone gets an answer rather
  than a hang) but that line is rejected whole; a bare CR anywhere rejects the
  line. Lines over the limit are skipped up to their end and rejected.
* :class:`DataReceiver` reads DATA content up to the one end marker CRLF.CRLF,
  undoes dot-stuffing, counts size, and audits line endings and line lengths.
* :class:`BdatReceiver` reads exactly the announced number of octets.

Memory is bounded: a receiver keeps at most one partial line (≤ its line
limit plus a few octets) between calls; content is handed out as it arrives.
After a violation (too big, bare CR/LF, overlong line) content is no longer
handed out but still consumed up to the end marker, so the body is never held
in memory.

Must not: do I/O, or decide replies other than the violation it detected.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import replies
from .replies import Reply

MAX_COMMAND_LINE_OCTETS = 512  # RFC 5321 §4.5.3.1.4, including CRLF
# MAIL/RCPT may grow by the parameters of each extension we offer (RFC 5321 §4.5.3.1.4,
# RFC 1869 §4.1.2): SIZE (+26), BODY (+16), SMTPUTF8 (+10), and later AUTH= (+500),
# ORCPT (+500), ENVID (+100), NOTIFY/RET (+40), REQUIRETLS (+11). 512 + 1203 rounds up
# to Postfix's line_length_limit of 2048.
MAX_EXTENDED_COMMAND_LINE_OCTETS = 2048
MAX_TEXT_LINE_OCTETS = 1000  # RFC 5321 §4.5.3.1.6, including CRLF
_MAX_TEXT_LINE_CONTENT = MAX_TEXT_LINE_OCTETS - 2
_END_OF_DATA = b"\r\n.\r\n"  # RFC 5321 §4.1.1.4: the only end of DATA


@dataclass(frozen=True, slots=True)
class Line:
    """A complete command line, without its CRLF."""

    text: bytes


@dataclass(frozen=True, slots=True)
class BadLine:
    """A command line that must be rejected with ``reply`` (it was consumed whole)."""

    reply: Reply
    detail: str


class CommandLineReceiver:
    """Frames command lines (RFC 5321 §2.3.8, §4.5.3.1.4)."""

    __slots__ = ("_limit", "_skipping")

    def __init__(self, limit: int = MAX_EXTENDED_COMMAND_LINE_OCTETS) -> None:
        self._limit = limit
        self._skipping = False

    def receive(self, buf: bytearray) -> Line | BadLine | None:
        """Take one line from the front of ``buf``, or None if none is complete."""
        lf = buf.find(b"\n", 0, self._limit)
        if lf < 0:
            if len(buf) >= self._limit:
                # SECURITY: bounded memory; drop the overlong line's head and skip to its end.
                self._skipping = True
                keep_cr = buf.endswith(b"\r")
                del buf[:]
                if keep_cr:
                    buf += b"\r"
            return None
        raw = bytes(buf[: lf + 1])
        del buf[: lf + 1]
        if self._skipping:
            self._skipping = False
            return BadLine(replies.R500_LINE_TOO_LONG, "command line too long")
        if lf == 0 or raw[-2:] != b"\r\n":
            return BadLine(replies.R500_BARE_NEWLINE, "bare LF in command line")
        text = raw[:-2]
        if b"\r" in text:
            return BadLine(replies.R500_BARE_NEWLINE, "bare CR in command line")
        return Line(text)


class DataReceiver:
    """Receives DATA content up to CRLF.CRLF (RFC 5321 §4.1.1.4, §4.5.2).

    The buffer handed to :meth:`receive` starts right after the DATA command's
    CRLF. Internally we keep that CRLF as a virtual prefix so the end marker is
    always CRLF "." CRLF and a stuffed dot is always CRLF ".".
    """

    __slots__ = ("_carry", "_max_size", "size", "violation")

    def __init__(self, max_size: int | None) -> None:
        self._carry = bytearray(b"\r\n")
        self._max_size = max_size
        self.size = 0
        self.violation: Reply | None = None

    def receive(self, buf: bytearray) -> tuple[bytes, bool]:
        """Consume content from ``buf``.

        Returns:
            (unstuffed content to hand out, True when the end marker was seen).
            After the end marker, ``buf`` holds the bytes that follow it.
        """
        work = self._carry
        work += buf
        del buf[:]
        end = work.find(_END_OF_DATA)
        if end >= 0:
            buf += work[end + 5 :]
            out = self._take(work, end + 2)
            self._carry = bytearray()
            return out, True
        if self.violation is not None:
            # Skipping: keep only what could be the start of the end marker.
            del work[: max(0, len(work) - 4)]
            return b"", False
        last = work.rfind(b"\r\n")
        if last > 0:
            out = self._take(work, last + 2)
            del work[:last]  # keep the CRLF: it is the next line's prefix
            return out, False
        if len(work) - 2 > _MAX_TEXT_LINE_CONTENT + 1:  # +1: a stuffed dot may precede
            self._fail(replies.R500_TEXT_LINE_TOO_LONG)
            del work[: max(0, len(work) - 4)]
        return b"", False

    def _take(self, work: bytearray, stop: int) -> bytes:
        """Audit and unstuff work[:stop] (which starts and ends with CRLF)."""
        if self.violation is not None:
            return b""
        segment = bytes(work[:stop])
        crlf = segment.count(b"\r\n")
        # SECURITY: SMTP smuggling (CVE-2023-51764): a bare CR or LF must never act
        # as, or hide, a line ending; RFC 5321 §2.3.8 forbids them outside CRLF.
        if segment.count(b"\n") != crlf or segment.count(b"\r") != crlf:
            self._fail(replies.R550_BARE_NEWLINE_IN_DATA)
            return b""
        if len(segment) > MAX_TEXT_LINE_OCTETS and self._has_long_line(segment):
            self._fail(replies.R500_TEXT_LINE_TOO_LONG)
            return b""
        out = segment.replace(b"\r\n.", b"\r\n")[2:]
        self.size += len(out)
        if self._max_size is not None and self.size > self._max_size:
            self._fail(replies.R552_TOO_BIG)
            return b""
        return out

    @staticmethod
    def _has_long_line(segment: bytes) -> bool:
        limit = _MAX_TEXT_LINE_CONTENT
        for line in segment.split(b"\r\n"):
            if len(line) > limit and not (len(line) == limit + 1 and line.startswith(b".")):
                return True
        return False

    def _fail(self, reply: Reply) -> None:
        if self.violation is None:
            self.violation = reply


class BdatReceiver:
    """Receives exactly ``octets`` of a BDAT chunk (RFC 3030 §2).

    Unless the body is BINARYMIME, the content is audited like DATA: bare CR
    or LF and lines over 998 octets are violations (the chunk is consumed and
    the transaction fails), so BDAT cannot carry what DATA would refuse.
    """

    __slots__ = (
        "_audit",
        "_line_len",
        "_max_size",
        "_pending_cr",
        "remaining",
        "size",
        "violation",
    )

    def __init__(self, octets: int, *, size_so_far: int, max_size: int | None, audit: bool) -> None:
        self.remaining = octets
        self.size = size_so_far
        self._max_size = max_size
        self._audit = audit
        self._pending_cr = False
        self._line_len = 0
        self.violation: Reply | None = None

    def continue_chunk(self, octets: int) -> None:
        """Start the next chunk of the same message, keeping the audit state."""
        self.remaining = octets

    def receive(self, buf: bytearray) -> tuple[bytes, bool]:
        """Consume up to the rest of the chunk. Returns (content, chunk complete)."""
        n = min(self.remaining, len(buf))
        chunk = bytes(buf[:n])
        del buf[:n]
        self.remaining -= n
        done = self.remaining == 0
        if self.violation is not None or not chunk:
            return b"", done
        self.size += len(chunk)
        if self._max_size is not None and self.size > self._max_size:
            self.violation = replies.R552_TOO_BIG
            return b"", done
        if self._audit and not self._audit_ok(chunk):
            return b"", done
        return chunk, done

    def finish(self) -> None:
        """Called after the LAST chunk: a trailing lone CR is a bare CR."""
        if self._audit and self._pending_cr and self.violation is None:
            self.violation = replies.R550_BARE_NEWLINE_IN_DATA

    def _audit_ok(self, chunk: bytes) -> bool:
        data = b"\r" + chunk if self._pending_cr else chunk
        self._pending_cr = data.endswith(b"\r")
        body = data[:-1] if self._pending_cr else data
        crlf = body.count(b"\r\n")
        if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
            self.violation = replies.R550_BARE_NEWLINE_IN_DATA
            return False
        lines = body.split(b"\r\n")
        first = self._line_len + len(lines[0])
        longest = max([first, *map(len, lines[1:])]) if len(lines) > 1 else first
        self._line_len = len(lines[-1]) if len(lines) > 1 else first
        if longest > _MAX_TEXT_LINE_CONTENT:
            self.violation = replies.R500_TEXT_LINE_TOO_LONG
            return False
        return True
