"""Table tests of the incremental receivers: CommandLineReceiver, DataReceiver, BdatReceiver.

Every row is fed three ways: in one write, split into two writes at every
possible position, and one octet per write. All three must give the same
result (framing must not depend on how the peer's bytes reached us), and the
memory a receiver keeps between calls must stay bounded. Results are compared
as small tuples: lines as their text or their reply, content with its
verdict, size and the bytes left for the next phase.

Content handed out before a violation may differ with the split (an earlier
read may already have released clean lines); it must always be a prefix of
what came before the offending line, and the session discards it anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from postguard.protocol import replies
from postguard.protocol.receivers import (
    MAX_TEXT_LINE_OCTETS,
    BadLine,
    BdatReceiver,
    CommandLineReceiver,
    DataReceiver,
    Line,
)
from postguard.protocol.replies import Reply

BARE = "500 5.5.2"
LONG = "500 5.5.0"
R550 = replies.R550_BARE_NEWLINE_IN_DATA
R500 = replies.R500_TEXT_LINE_TOO_LONG
R552 = replies.R552_TOO_BIG
# A DATA receiver carries at most CRLF + 999 octets (a stuffed 998-octet line) + a CR.
MAX_DATA_CARRY = 2 + MAX_TEXT_LINE_OCTETS - 1 + 1


def feeds(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Every way this module feeds ``data``: whole, each two-way split, byte by byte."""
    yield "whole", [data]
    for i in range(1, len(data)):
        yield f"split-{i}", [data[:i], data[i:]]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]


def code_of(reply: Reply | None) -> str | None:
    return None if reply is None else f"{reply.code} {reply.enhanced}"


# ------------------------------------------------------------ command lines


def feed_lines(writes: Iterable[bytes], limit: int) -> tuple[list[bytes | str], bytes, int]:
    """Returns (each line's text or its reply, bytes left over, largest buffer kept)."""
    receiver = CommandLineReceiver(limit)
    buf = bytearray()
    items: list[bytes | str] = []
    kept = 0
    for write in writes:
        buf += write
        while (item := receiver.receive(buf)) is not None:
            if isinstance(item, Line):
                items.append(item.text)
            else:
                assert isinstance(item, BadLine)
                items.append(f"{item.reply.code} {item.reply.enhanced}")
        kept = max(kept, len(buf))
    return items, bytes(buf), kept


LINES = [
    pytest.param(b"NOOP\r\n", [b"NOOP"], b"", id="one-line"),
    pytest.param(b"NOOP\r\nQUIT\r\n", [b"NOOP", b"QUIT"], b"", id="two-lines"),
    pytest.param(b"NOOP", [], b"NOOP", id="unfinished"),
    pytest.param(b"NOOP\r", [], b"NOOP\r", id="unfinished-cr"),
    pytest.param(b"\r\n", [b""], b"", id="empty-line"),
    pytest.param(b"MAIL FROM:<a@b>\r\n\r\n", [b"MAIL FROM:<a@b>", b""], b"", id="then-empty"),
    pytest.param(b"NOOP\n", [BARE], b"", id="bare-lf"),
    pytest.param(b"\n", [BARE], b"", id="lone-lf"),
    pytest.param(b"NOOP\nQUIT\r\n", [BARE, BARE], b"", id="rest-after-bare-lf-refused"),
    pytest.param(b"NOOP\nQUIT\r\nRSET\r\n", [BARE, BARE, b"RSET"], b"", id="next-crlf-line-ok"),
    pytest.param(b"NOOP\n\nQUIT\r\n", [BARE, BARE, BARE], b"", id="lf-only-lines"),
    pytest.param(b"EHLO x\nMAIL x\n", [BARE, BARE], b"", id="lf-only-client-answered"),
    pytest.param(b"NO\rOP\r\n", [BARE], b"", id="bare-cr"),
    pytest.param(b"NOOP\r\r\n", [BARE], b"", id="cr-before-crlf"),
    pytest.param(b"\rNOOP\r\nQUIT\r\n", [BARE, b"QUIT"], b"", id="leading-cr"),
    pytest.param(b"NOOP\rQUIT\r\nRSET\r\n", [BARE, b"RSET"], b"", id="bare-cr-hides-nothing"),
]


@pytest.mark.parametrize(("data", "items", "left"), LINES)
def test_command_lines_frame_the_same_however_split(
    data: bytes, items: list[bytes | str], left: bytes
) -> None:
    for how, writes in feeds(data):
        got, rest, _ = feed_lines(writes, 2048)
        assert (got, rest) == (items, left), how


LIMIT = 16  # a small limit keeps the rows short; the logic does not depend on it

LONG_LINES = [
    pytest.param(b"A" * 14 + b"\r\n", [b"A" * 14], b"", id="at-limit"),
    pytest.param(b"A" * 15 + b"\r\n", [LONG], b"", id="one-over-limit"),
    pytest.param(b"A" * 40 + b"\r\nNOOP\r\n", [LONG, b"NOOP"], b"", id="next-line-kept"),
    pytest.param(b"A" * 40 + b"\r\nB\r\nC\r\n", [LONG, b"B", b"C"], b"", id="all-next-lines-kept"),
    pytest.param(b"A" * 40 + b"\r\n" + b"B" * 40 + b"\r\n", [LONG, LONG], b"", id="two-long"),
    pytest.param(b"A" * 40 + b"\r\n" + b"B" * 40, [LONG], b"", id="long-then-unfinished-long"),
    pytest.param(b"A" * 40 + b"\r", [], b"\r", id="cr-kept-while-skipping"),
    pytest.param(b"A" * 40 + b"\nNOOP\r\n", [LONG, BARE], b"", id="long-ended-by-bare-lf"),
    pytest.param(b"A" * 40 + b"\r\r\nNOOP\r\n", [LONG, b"NOOP"], b"", id="long-with-bare-cr"),
]


@pytest.mark.parametrize(("data", "items", "left"), LONG_LINES)
def test_overlong_command_line_is_skipped_to_its_end(
    data: bytes, items: list[bytes | str], left: bytes
) -> None:
    for how, writes in feeds(data):
        got, rest, kept = feed_lines(writes, LIMIT)
        assert (got, rest) == (items, left), how
        if how == "bytewise":
            assert kept < LIMIT


def test_command_line_buffer_is_bounded_whatever_the_write_size() -> None:
    data = (b"X" * 5000 + b"\r\n") * 3 + b"Y" * 5000
    for how, writes in [
        ("whole", [data]),
        ("chunks", [data[i : i + 700] for i in range(0, 20000, 700)]),
    ]:
        got, rest, _ = feed_lines(writes, 2048)
        assert got == [LONG] * 3, how
        assert len(rest) <= 1, how  # the unfinished overlong line was dropped, not kept


# --------------------------------------------------------------------- DATA


def feed_data(
    writes: Iterable[bytes], max_size: int | None = None
) -> tuple[bytes, bool, Reply | None, int, bytes, int]:
    """Returns (content, done, violation, size, bytes left over, largest carry)."""
    receiver = DataReceiver(max_size)
    buf = bytearray()
    content: list[bytes] = []
    done = False
    left = b""
    carried = 0
    for write in writes:
        if done:
            left += write
            continue
        buf += write
        out, done = receiver.receive(buf)
        content.append(out)
        carried = max(carried, len(receiver._carry))
        if done:
            left = bytes(buf)
    if not done:
        assert not buf  # the DATA receiver always takes everything
    return b"".join(content), done, receiver.violation, receiver.size, left, carried


DATA = [
    # content, max size → message, done, violation, size, left over
    pytest.param(b".\r\n", None, b"", True, None, 0, b"", id="empty"),
    pytest.param(b"hello\r\n.\r\n", None, b"hello\r\n", True, None, 7, b"", id="one-line"),
    pytest.param(b"\r\n.\r\n", None, b"\r\n", True, None, 2, b"", id="empty-line"),
    pytest.param(b"a\r\n.\r\nQUIT\r\n", None, b"a\r\n", True, None, 3, b"QUIT\r\n", id="pipelined"),
    pytest.param(b"..a\r\n.\r\n", None, b".a\r\n", True, None, 4, b"", id="stuffed"),
    pytest.param(b"..\r\n.\r\n", None, b".\r\n", True, None, 3, b"", id="stuffed-lone-dot"),
    pytest.param(b"a\r\n.x\r\n.\r\n", None, b"a\r\nx\r\n", True, None, 6, b"", id="dot-dropped"),
    pytest.param(b"a.\r\n.\r\n", None, b"a.\r\n", True, None, 4, b"", id="dot-at-end"),
    pytest.param(b"hello\r\n", None, b"hello\r\n", False, None, 7, b"", id="no-end-yet"),
    pytest.param(b"hello", None, b"", False, None, 0, b"", id="partial-line"),
    pytest.param(b"a\r\n.\r", None, b"a\r\n", False, None, 3, b"", id="end-not-complete"),
    pytest.param(
        b"x" * 998 + b"\r\n.\r\n", None, b"x" * 998 + b"\r\n", True, None, 1000, b"", id="998"
    ),
    pytest.param(
        b"." * 999 + b"\r\n.\r\n", None, b"." * 998 + b"\r\n", True, None, 1000, b"", id="dots"
    ),
    pytest.param(b"hello\r\n.\r\n", 7, b"hello\r\n", True, None, 7, b"", id="at-size-limit"),
]


@pytest.mark.parametrize(("data", "max_size", "message", "done", "violation", "size", "left"), DATA)
def test_data_content_is_the_same_however_split(
    data: bytes,
    max_size: int | None,
    message: bytes,
    done: bool,
    violation: Reply | None,
    size: int,
    left: bytes,
) -> None:
    for how, writes in feeds(data):
        got = feed_data(writes, max_size)
        assert got[:5] == (message, done, violation, size, left), how
        assert got[5] <= MAX_DATA_CARRY, how


BIG = b"x" * 1200
DATA_VIOLATIONS = [
    # content, max size → violation, size, left over, the clean content before the offender
    pytest.param(b"a\nb\r\n.\r\n", None, R550, 0, b"", b"", id="bare-lf"),
    pytest.param(b"a\rb\r\n.\r\n", None, R550, 0, b"", b"", id="bare-cr"),
    pytest.param(b"ok\r\na\r\r\n.\r\n", None, R550, 4, b"", b"ok\r\n", id="cr-before-crlf"),
    pytest.param(
        b"ok\r\n\nb\r\n.\r\nNOOP\r\n", None, R550, 4, b"NOOP\r\n", b"ok\r\n", id="lf-line"
    ),
    pytest.param(b"x" * 999 + b"\r\n.\r\n", None, R500, 0, b"", b"", id="999"),
    pytest.param(b"." + b"x" * 999 + b"\r\n.\r\n", None, R500, 0, b"", b"", id="stuffed-999"),
    pytest.param(BIG + b"\r\n.\r\nQUIT\r\n", None, R500, 0, b"QUIT\r\n", b"", id="1200"),
    # When content breaks several rules, the first offender in the stream decides.
    pytest.param(BIG + b"\r\na\nb\r\n.\r\n", None, R500, 0, b"", b"", id="long-then-bare"),
    pytest.param(b"a\nb\r\n" + BIG + b"\r\n.\r\n", None, R550, 0, b"", b"", id="bare-then-long"),
    pytest.param(
        b"x" * 10 + b"\n" + BIG + b"\r\n.\r\n", None, R550, 0, b"", b"", id="bare-in-long"
    ),
    pytest.param(b"x" * 1000 + b"\nx\r\n.\r\n", None, R500, 0, b"", b"", id="bare-after-999"),
    pytest.param(b"hello\r\n.\r\n", 6, R552, 7, b"", b"", id="over-size"),
    pytest.param(b"0123456789\r\na\nb\r\n.\r\n", 10, R552, 12, b"", b"", id="size-then-bare"),
    pytest.param(
        b"ab\r\na\nb" + b"x" * 20 + b"\r\n.\r\n", 10, R550, 4, b"", b"ab\r\n", id="bare-first"
    ),
    pytest.param(
        b"ab\r\n" + BIG + b"\r\n.\r\n", 10, R500, 4, b"", b"ab\r\n", id="long-before-size"
    ),
    # SMTP smuggling: a fake end of data never ends the message.
    pytest.param(b"a\n.\nMAIL\r\n.\r\nX", None, R550, 0, b"X", b"", id="lf-dot-lf"),
    pytest.param(b"a\r\n.\nMAIL\r\n.\r\nX", None, R550, 3, b"X", b"a\r\n", id="crlf-dot-lf"),
    pytest.param(b"a\r.\r\nMAIL\r\n.\r\nX", None, R550, 0, b"X", b"", id="cr-dot-crlf"),
    # After a violation the content is skipped up to the real end marker.
    pytest.param(
        b"a\nb\r\n" + b"junk\r\n" * 50 + b".\r\nNOOP\r\n",
        None,
        R550,
        0,
        b"NOOP\r\n",
        b"",
        id="skip",
    ),
]


@pytest.mark.parametrize(
    ("data", "max_size", "violation", "size", "left", "clean"), DATA_VIOLATIONS
)
def test_data_violation_is_the_same_however_split(
    data: bytes, max_size: int | None, violation: Reply, size: int, left: bytes, clean: bytes
) -> None:
    for how, writes in feeds(data):
        content, done, got, got_size, rest, carried = feed_data(writes, max_size)
        assert (done, got, got_size, rest) == (True, violation, size, left), how
        assert clean.startswith(content), how  # nothing from the offending line was released
        assert carried <= MAX_DATA_CARRY, how


def test_data_carry_is_bounded_for_any_write_size() -> None:
    body = b"short\r\n" + b"y" * 5000 + b"\r\n" + b"z" * 4000
    for size in (1, 7, 999, 1000, 1001, 4096, len(body)):
        writes = [body[i : i + size] for i in range(0, len(body), size)]
        *_, carried = feed_data(writes)
        assert carried <= MAX_DATA_CARRY, size


def test_data_content_over_size_is_never_released() -> None:
    body = b"".join(b"%05d\r\n" % i for i in range(100)) + b".\r\n"
    for how, writes in feeds(body):
        content, done, violation, *_ = feed_data(writes, 50)
        assert (done, violation) == (True, R552), how
        assert len(content) <= 50, how


# --------------------------------------------------------------------- BDAT


def feed_bdat(
    writes: Iterable[bytes], sizes: list[int], *, audit: bool = True, max_size: int | None = None
) -> tuple[bytes, bool, Reply | None, int, bytes]:
    """Feed the contents of consecutive chunks of one message (the last one LAST).

    Returns (content, all chunks done, violation, size, bytes left over).
    """
    pending = list(sizes)
    receiver = BdatReceiver(pending.pop(0), size_so_far=0, max_size=max_size, audit=audit)
    buf = bytearray()
    content: list[bytes] = []
    finished = False

    def pump() -> None:
        nonlocal finished
        while not finished:
            out, done = receiver.receive(buf)
            content.append(out)
            if not done:
                return
            if pending:
                receiver.continue_chunk(pending.pop(0))
            else:
                receiver.finish()
                finished = True

    pump()
    for write in writes:
        buf += write
        pump()
    return b"".join(content), finished, receiver.violation, receiver.size, bytes(buf)


BDAT = [
    # chunk sizes, stream, audit, max size → content, finished, violation, size, left over
    pytest.param([5], b"hello", True, None, b"hello", True, None, 5, b"", id="one-chunk"),
    pytest.param(
        [5], b"helloNOOP\r\n", True, None, b"hello", True, None, 5, b"NOOP\r\n", id="next"
    ),
    pytest.param([0], b"", True, None, b"", True, None, 0, b"", id="empty"),
    pytest.param([5], b"hel", True, None, b"hel", False, None, 3, b"", id="incomplete"),
    pytest.param([3, 3], b"ab\r\ncd", True, None, b"ab\r\ncd", True, None, 6, b"", id="crlf-split"),
    pytest.param([3, 0], b"ab\r", True, None, b"ab\r", True, R550, 3, b"", id="final-cr"),
    pytest.param([4], b"a\nbc", True, None, b"a", True, R550, 2, b"", id="bare-lf"),
    pytest.param([4], b"a\rbc", True, None, b"a\r", True, R550, 3, b"", id="bare-cr"),
    pytest.param([3, 2], b"ab\rcd", True, None, b"ab\r", True, R550, 4, b"", id="bare-cr-split"),
    pytest.param(
        [1000],
        b"x" * 998 + b"\r\n",
        True,
        None,
        b"x" * 998 + b"\r\n",
        True,
        None,
        1000,
        b"",
        id="998",
    ),
    pytest.param(
        [1001], b"x" * 999 + b"\r\n", True, None, b"x" * 998, True, R500, 999, b"", id="999"
    ),
    pytest.param(
        [500, 501],
        b"x" * 999 + b"\r\n",
        True,
        None,
        b"x" * 998,
        True,
        R500,
        999,
        b"",
        id="999-split",
    ),
    pytest.param([20], b"x" * 20, True, 10, b"x" * 10, True, R552, 11, b"", id="over-size"),
    pytest.param(
        [20], b"a\nb" + b"x" * 17, True, 10, b"a", True, R550, 2, b"", id="bare-before-size"
    ),
    pytest.param(
        [20],
        b"x" * 12 + b"\n" + b"x" * 7,
        True,
        10,
        b"x" * 10,
        True,
        R552,
        11,
        b"",
        id="size-first",
    ),
    pytest.param([5], b"ab\rcd", True, 3, b"ab\r", True, R550, 4, b"", id="tie-audit-first"),
    pytest.param([5], b"a\nb\rc", False, None, b"a\nb\rc", True, None, 5, b"", id="binary"),
    pytest.param([5], b"a\nb\rc", False, 3, b"a\nb", True, R552, 4, b"", id="binary-over-size"),
    pytest.param([2, 2], b"a\nbc", True, None, b"a", True, R550, 2, b"", id="violation-then-chunk"),
]


@pytest.mark.parametrize(
    ("sizes", "data", "audit", "max_size", "content", "finished", "violation", "size", "left"),
    BDAT,
)
def test_bdat_chunks_are_the_same_however_split(
    sizes: list[int],
    data: bytes,
    audit: bool,
    max_size: int | None,
    content: bytes,
    finished: bool,
    violation: Reply | None,
    size: int,
    left: bytes,
) -> None:
    for how, writes in feeds(data):
        got, got_finished, got_violation, got_size, rest = feed_bdat(
            writes, sizes, audit=audit, max_size=max_size
        )
        assert (got_finished, code_of(got_violation), got_size, rest) == (
            finished,
            code_of(violation),
            size,
            left,
        ), how
        if violation is None:
            assert got == content, how
        else:
            assert content.startswith(got), how  # nothing from the offending octet on
