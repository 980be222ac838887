"""SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764 Postfix, CVE-2023-51765
sendmail, CVE-2023-51766 Exim), at the engine level.

The attack hides a second message inside the first: the DATA content carries
a fake end of data (``\\n.\\n`` and friends) followed by "MAIL FROM... DATA...".
A server that accepts the fake ending reads the rest as new commands and
delivers a message the outbound server never saw as one (spoofed sender,
passing SPF for the outbound domain).

The engine honours only CRLF "." CRLF (RFC 5321 §4.1.1.4). For every variant
below, embedded in DATA and followed by a smuggled envelope and message, there
must be exactly one ``EndOfMessage``, the smuggled MAIL must never appear as
an event, and content with a bare CR or LF is rejected with 550 5.6.0. Each
case is fed in one write, split in two at every position, and byte by byte.
The command phase gets the same treatment: a bare CR or LF in a command line
is answered 500 5.5.2 and nothing on the rest of that CRLF line executes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.engine_pair import EHLO, ENVELOPE, Transcript, run, two_way_splits
from postguard.protocol import commands as c
from postguard.protocol import replies

SMUGGLED = b"MAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsmuggled"
REAL_END = b"\r\n.\r\n"  # with SMUGGLED: "...DATA\r\nsmuggled\r\n.\r\n"
HEADER = b"Subject: test\r\n\r\nhello"

BARE_VARIANTS = [
    pytest.param(b"\n.\n", id="lf-dot-lf"),
    pytest.param(b"\n.\r\n", id="lf-dot-crlf"),
    pytest.param(b"\r.\n", id="cr-dot-lf"),
    pytest.param(b"\r.\r\n", id="cr-dot-crlf"),
    pytest.param(b"\r\n.\r", id="crlf-dot-cr"),
    pytest.param(b"\r\n.\n", id="crlf-dot-lf"),
]


def writes_of(data: bytes) -> Iterator[tuple[str, list[bytes] | bytes, bool]]:
    """(label, writes, bytewise): one write, every two-way split, byte by byte."""
    yield "whole", data, False
    for i, writes in two_way_splits(data):
        yield f"split-{i}", writes, False
    yield "bytewise", data, True


def smuggling_attempt(variant: bytes) -> bytes:
    return ENVELOPE + b"DATA\r\n" + HEADER + variant + SMUGGLED + REAL_END + b"QUIT\r\n"


def assert_one_message_and_no_smuggled_command(
    t: Transcript, *, data_commands: int = 1
) -> c.EndOfMessage:
    [end] = t.of_type(c.EndOfMessage)
    assert len(t.of_type(c.MailFrom)) == 1  # the real envelope's only
    assert len(t.of_type(c.RcptTo)) == 1
    assert len(t.of_type(c.StartData)) == data_commands
    assert t.codes[-1] == "221 2.0.0"  # back in step: the QUIT after the real end
    return end


@pytest.mark.parametrize("variant", BARE_VARIANTS)
def test_fake_end_of_data_with_bare_cr_or_lf_is_rejected(variant: bytes) -> None:
    data = smuggling_attempt(variant)
    for label, writes, bytewise in writes_of(data):
        t = run(writes, bytewise=bytewise)
        end = assert_one_message_and_no_smuggled_command(t)
        assert end.violation == replies.R550_BARE_NEWLINE_IN_DATA, label
        assert t.codes[-2:] == ["550 5.6.0", "221 2.0.0"], label
        assert t.messages == [], label


def test_nul_before_dot_is_not_an_end_of_data() -> None:
    # "\r\n\x00.\r\n" has no bare CR or LF: it is ordinary content. The message is
    # accepted whole, with the would-be smuggled commands as its text.
    data = smuggling_attempt(b"\r\n\x00.\r\n")
    expected = HEADER + b"\r\n\x00.\r\n" + SMUGGLED + b"\r\n"
    for label, writes, bytewise in writes_of(data):
        t = run(writes, bytewise=bytewise)
        end = assert_one_message_and_no_smuggled_command(t)
        assert end.violation is None, label
        assert t.messages == [expected], label
        assert t.codes[-2:] == ["250 2.0.0", "221 2.0.0"], label


@pytest.mark.parametrize("variant", BARE_VARIANTS)
def test_fake_end_inside_a_bdat_chunk_is_content_and_rejected(variant: bytes) -> None:
    chunk = HEADER + variant + SMUGGLED + REAL_END
    data = ENVELOPE + b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"QUIT\r\n"
    for label, writes, bytewise in writes_of(data):
        t = run(writes, bytewise=bytewise)
        assert_one_message_and_no_smuggled_command(t, data_commands=0)
        assert t.codes[-2:] == ["550 5.6.0", "221 2.0.0"], label


COMMAND_LINES = [
    # input after EHLO → replies; nothing after a bare CR/LF on that CRLF line runs
    pytest.param(b"NOOP\nMAIL FROM:<x@y>\r\n", ["500 5.5.2", "500 5.5.2"], id="bare-lf"),
    pytest.param(b"NOOP\rMAIL FROM:<x@y>\r\n", ["500 5.5.2"], id="bare-cr"),
    pytest.param(b"\nMAIL FROM:<x@y>\r\n", ["500 5.5.2", "500 5.5.2"], id="leading-lf"),
    pytest.param(b"MAIL FROM:<x@y>\n\r\n", ["500 5.5.2", "500 5.5.2"], id="lf-before-crlf"),
    pytest.param(b"MAIL FROM:<x@y>\r\r\n", ["500 5.5.2"], id="cr-before-crlf"),
    pytest.param(
        b"NOOP\nMAIL FROM:<x@y>\r\nNOOP\r\n",
        ["500 5.5.2", "500 5.5.2", "250 2.0.0"],
        id="next-crlf-line-runs",
    ),
]


@pytest.mark.parametrize(("line", "expect"), COMMAND_LINES)
def test_bare_cr_or_lf_in_command_line_runs_nothing(line: bytes, expect: list[str]) -> None:
    for label, writes, bytewise in writes_of(line):
        t = run([EHLO, *([writes] if isinstance(writes, bytes) else writes)], bytewise=bytewise)
        assert t.codes[1:] == expect, label
        assert not t.of_type(c.MailFrom), label


def test_bare_lf_inside_a_transaction_does_not_add_a_recipient() -> None:
    data = EHLO + b"MAIL FROM:<a@example.org>\r\nRSET\nRCPT TO:<victim@y>\r\nDATA\r\n"
    for label, writes, bytewise in writes_of(data):
        t = run(writes, bytewise=bytewise)
        assert t.codes == ["250", "250 2.1.0", "500 5.5.2", "500 5.5.2", "554 5.5.1"], label
        assert not t.of_type(c.RcptTo), label
        assert not t.of_type(c.Rset), label


def test_bare_lf_data_command_does_not_start_data() -> None:
    t = run(ENVELOPE + b"DATA\nhidden\r\n.\r\n")
    assert not t.of_type(c.StartData)
    assert t.messages == []
