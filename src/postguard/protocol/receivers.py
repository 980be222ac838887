"""Incremental receivers, one per phase of the conversation (after smtp-proto).

Theory of operation
-------------------
The engine owns one byte buffer and hands it to the receiver of the current
phase. Each receiver consumes what it can and returns what it found; what it
does not consume stays in the buffer for the next phase (pipelining, RFC 2920).

* :class:`CommandLineReceiver` frames command lines. Only CRLF ends a line.
  A bare LF also ends a line (so a client using LF alone gets an answer rather
  than a hang) but that line is rejected whole, and so is every further
  LF-terminated piece up to and including the next CRLF: nothing after a bare
  LF on the same CRLF line is ever executed. A bare CR anywhere rejects the
  line. Lines over the limit are skipped up to their end and rejected.
* :class:`DataReceiver` reads DATA content up to the one end marker CRLF.CRLF,
  undoes dot-stuffing, counts size, and audits line endings and line lengths.
* :class:`BdatReceiver` reads exactly the announced number of octets.

Memory is bounded: a receiver keeps at most one partial line (≤ its line
limit plus a few octets) between calls; content is handed out as it arrives.
After a violation (too big, bare CR/LF, overlong line) content is no longer
handed out but still consumed up to the end marker, so the body is never held
in memory.

Verdicts do not depend on how the peer's bytes were split across reads: when
content breaks more than one rule, the violation that comes first in the
stream decides the reply, and ``size`` counts the content before it. DATA
judges line by line (a bare CR/LF within a line's first 999 octets, else the
line's length, else the running size); BDAT judges octet by octet.

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
# RFC 4954 §4: AUTH command lines and SASL responses may be up to 12288 octets.
MAX_AUTH_LINE_OCTETS = 12288
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

    __slots__ = ("_after_bare_lf", "_limit", "_skip_reply", "_skipping")

    def __init__(self, limit: int = MAX_EXTENDED_COMMAND_LINE_OCTETS) -> None:
        self._limit = limit
        self._skipping = False
        self._skip_reply = replies.R500_LINE_TOO_LONG
        self._after_bare_lf = False

    def receive(self, buf: bytearray) -> Line | BadLine | None:
        """Take one line from the front of ``buf``, or None if none is complete."""
        if not self._skipping and len(buf) >= self._limit and buf.find(b"\n", 0, self._limit) < 0:
            self._skipping = True
            # RFC 4954 §4: an over-long AUTH line gets 500 5.5.6.
            auth = bytes(buf[:5]).upper() == b"AUTH "
            self._skip_reply = (
                replies.R500_AUTH_LINE_TOO_LONG if auth else replies.R500_LINE_TOO_LONG
            )
        # When skipping, the end of the overlong line may lie anywhere in ``buf``;
        # the lines after it are pipelined commands and must stay in ``buf``.
        lf = buf.find(b"\n")
        if lf < 0:
            if self._skipping:
                # SECURITY: bounded memory; drop the overlong line's head and skip to its end.
                keep_cr = buf.endswith(b"\r")
                del buf[:]
                if keep_cr:
                    buf += b"\r"
            return None
        crlf = lf > 0 and buf[lf - 1] == 0x0D
        text = bytes(buf[: lf - 1]) if crlf and not self._skipping else b""
        del buf[: lf + 1]
        # SECURITY: SMTP smuggling / command injection: the rest of a CRLF line that
        # contained a bare LF is not a new command (RFC 5321 §2.3.8: only CRLF ends a line).
        continued, self._after_bare_lf = self._after_bare_lf, not crlf
        if self._skipping:
            self._skipping = False
            return BadLine(self._skip_reply, "command line too long")
        if not crlf:
            return BadLine(replies.R500_BARE_NEWLINE, "bare LF in command line")
        if continued:
            return BadLine(replies.R500_BARE_NEWLINE, "rest of a line with a bare LF")
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
        out = b""
        if self.violation is None:
            last = work.rfind(b"\r\n")
            if last > 0:
                out = self._take(work, last + 2)
                del work[:last]  # keep the CRLF: it is the next line's prefix
        if self.violation is None:
            # Judge the unfinished line as soon as its verdict is certain, so at most
            # CRLF + 999 octets + a CR (1002) are carried. A trailing CR may be the
            # start of its CRLF, so it is not judged yet.
            partial = bytes(work[2:])
            violation = _line_violation(partial[:-1] if partial.endswith(b"\r") else partial)
            if violation is not None:
                self._fail(violation)
        if self.violation is not None:
            # Skipping: keep only what could be the start of the end marker.
            del work[: max(0, len(work) - 4)]
        return out, False

    def _take(self, work: bytearray, stop: int) -> bytes:
        """Audit and unstuff work[:stop] (which starts and ends with CRLF)."""
        if self.violation is not None:
            return b""
        segment = bytes(work[:stop])
        out = segment.replace(b"\r\n.", b"\r\n")[2:]
        crlf = segment.count(b"\r\n")
        # SECURITY: SMTP smuggling (CVE-2023-51764): a bare CR or LF must never act
        # as, or hide, a line ending; RFC 5321 §2.3.8 forbids them outside CRLF.
        if (
            segment.count(b"\n") == crlf
            and segment.count(b"\r") == crlf
            and not (len(segment) > MAX_TEXT_LINE_OCTETS and self._has_long_line(segment))
            and (self._max_size is None or self.size + len(out) <= self._max_size)
        ):
            self.size += len(out)
            return out
        self._fail(self._first_violation(segment))
        return b""

    def _first_violation(self, segment: bytes) -> Reply:
        """Walk the lines of a segment that broke a rule; the first offender decides.

        The lines before it are counted in ``size``, as they would have been had
        they arrived in an earlier read.
        """
        lines = segment[2:-2].split(b"\r\n") if len(segment) > 2 else []
        for line in lines:
            violation = _line_violation(line)
            if violation is not None:
                return violation
            self.size += len(line) - (1 if line.startswith(b".") else 0) + 2
            if self._max_size is not None and self.size > self._max_size:
                return replies.R552_TOO_BIG
        return replies.R550_BARE_NEWLINE_IN_DATA  # not reached: the segment broke a rule

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


def _line_violation(line: bytes) -> Reply | None:
    """The rule a DATA line (without its CRLF, dot-stuffed) breaks, or None so far.

    A bare CR or LF within the first 999 octets (1000 with a stuffed dot) comes
    before the point where the line becomes too long; past it, the length
    decides. Also used on an unfinished line: both verdicts are then final.
    """
    limit = _MAX_TEXT_LINE_CONTENT + (1 if line.startswith(b".") else 0)
    head = line[: limit + 1]
    if b"\r" in head or b"\n" in head:
        return replies.R550_BARE_NEWLINE_IN_DATA
    if len(line) > limit:
        return replies.R500_TEXT_LINE_TOO_LONG
    return None


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
        over = self._max_size is not None and self.size + len(chunk) > self._max_size
        audited = self._audited(chunk) if self._audit else (False, 0)
        if not over and audited is not None:
            self._pending_cr, self._line_len = audited
            self.size += len(chunk)
            return chunk, done
        self.violation = self._first_violation(chunk)
        return b"", done

    def finish(self) -> None:
        """Called after the LAST chunk: a trailing lone CR is a bare CR."""
        if self._audit and self._pending_cr and self.violation is None:
            self.violation = replies.R550_BARE_NEWLINE_IN_DATA

    def _audited(self, chunk: bytes) -> tuple[bool, int] | None:
        """The audit state (pending CR, line length) after a clean ``chunk``, else None."""
        data = b"\r" + chunk if self._pending_cr else chunk
        pending_cr = data.endswith(b"\r")
        body = data[:-1] if pending_cr else data
        crlf = body.count(b"\r\n")
        if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
            return None
        lines = body.split(b"\r\n")
        first = self._line_len + len(lines[0])
        longest = max([first, *map(len, lines[1:])]) if len(lines) > 1 else first
        if longest > _MAX_TEXT_LINE_CONTENT:
            return None
        return pending_cr, len(lines[-1]) if len(lines) > 1 else first

    def _first_violation(self, chunk: bytes) -> Reply:
        """Walk a ``chunk`` that broke a rule octet by octet; the first offence decides.

        ``size`` then counts the octets up to and including the offending one. A
        bare CR offends at the octet after it (only that octet shows it is bare).
        """
        if not self._audit:
            assert self._max_size is not None  # only the size can be broken
            self.size = self._max_size + 1
            return replies.R552_TOO_BIG
        pending_cr, line_len = self._pending_cr, self._line_len
        for octet in chunk:
            self.size += 1
            if pending_cr:
                pending_cr = False
                if octet != 0x0A:
                    return replies.R550_BARE_NEWLINE_IN_DATA
                line_len = 0
            elif octet == 0x0D:
                pending_cr = True
            elif octet == 0x0A:
                return replies.R550_BARE_NEWLINE_IN_DATA
            else:
                line_len += 1
                if line_len > _MAX_TEXT_LINE_CONTENT:
                    return replies.R500_TEXT_LINE_TOO_LONG
            if self._max_size is not None and self.size > self._max_size:
                return replies.R552_TOO_BIG
        return replies.R552_TOO_BIG  # not reached: the chunk broke a rule
