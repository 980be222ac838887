"""Property tests of the server engine's fuzz invariant (STYLE.md §2, after h11's fuzz harness).

For any bytes, and for bytes drawn from an SMTP-ish alphabet (command words,
CR, LF, ".", NUL, spaces, "<", ">", "@", ":", long runs), fed whole, in
random splits or byte by byte, through :class:`helpers.engine_pair.Dialogue`:

* ``next_event`` only returns events, ``NEED_DATA`` or ``PAUSED``, or raises
  ``RemoteProtocolError`` — never another exception (the driver lets anything
  else propagate, including ``LocalProtocolError`` for a reply the engine
  refuses although it asked for it);
* every command event and every protocol error gets exactly one reply;
* memory stays bounded. After each ``next_event`` loop that ends in
  ``NEED_DATA``: ``len(conn._buf) < options.max_command_line`` (in the command
  phase at most one unfinished line below the framing limit, or a kept CR while
  an overlong line is skipped; DATA and BDAT consume the buffer), and the DATA
  receiver carries at most 1002 octets (CRLF + a stuffed 998-octet line + CR);
* no message releases more content than ``max_message_size``;
* the replies, the delivered messages and the events other than
  ``MessageData`` (including each ``EndOfMessage`` with its size and verdict)
  do not depend on how the bytes were split. How content is cut into
  ``MessageData`` may differ, and so may the clean prefix a rejected message
  released before its violation was seen; the session discards that.

Input stops at the STARTTLS cut (``complete_tls=False``): bytes after it would
be TLS records, so split and whole feeds are compared up to that point.

Profiles: ``dev`` (default) and ``ci``, chosen with ``HYPOTHESIS_PROFILE``
(see ``tests/protocol/conftest.py``).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.engine_pair import Dialogue, Transcript
from postguard.protocol import ServerOptions
from postguard.protocol.receivers import MAX_TEXT_LINE_OCTETS

MAX_DATA_CARRY = 2 + (MAX_TEXT_LINE_OCTETS - 1) + 1

OPTIONS = [
    pytest.param(ServerOptions(), id="defaults"),
    pytest.param(
        ServerOptions(max_message_size=64, max_recipients=2, max_command_line=600, auth=True),
        id="small-limits",
    ),
    pytest.param(
        ServerOptions(chunking=False, binarymime=False, smtputf8=False, starttls=False),
        id="no-extensions",
    ),
    pytest.param(ServerOptions(implicit_tls=True, max_message_size=None), id="implicit-tls"),
]

TOKENS = [
    # whole commands, so the engine reaches every state
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<> BODY=BINARYMIME\r\n",
    b"MAIL FROM:<\xc3\xbc@b.example> SMTPUTF8 SIZE=10\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RCPT TO:<Postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 3\r\n",
    b"BDAT 5 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"EXPN x\r\n",
    b"HELP\r\n",
    b"AUTH PLAIN\r\n",
    b"STARTTLS\r\n",
    b"QUIT\r\n",
    # pieces of commands
    b"EHLO ",
    b"MAIL FROM:<",
    b"RCPT TO:<",
    b"BDAT ",
    b" LAST",
    b" SIZE=",
    b" BODY=8BITMIME",
    b"[IPv6:::1]",
    b'"q"',
    # framing characters
    b"\r\n",
    b"\r",
    b"\n",
    b".",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r\n..",
    b"\x00",
    b" ",
    b"<",
    b">",
    b"@",
    b":",
    b"x",
    b"7",
    b"\xc3\xbc",
    b"\xff",
    # runs that cross the line limits
    b"y" * 700,
    b"z" * 1001,
]

SMTP_BYTES = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=3)), max_size=60).map(
    b"".join
)
ANY_BYTES = st.binary(max_size=600)
INPUTS = st.one_of(SMTP_BYTES, ANY_BYTES)


def check_invariants(dlg: Dialogue) -> None:
    """The invariants that hold after any feed (see the module docstring)."""
    t = dlg.transcript
    options = dlg.conn.options
    assert len(t.replies) == len(t.commands) + len(t.errors)
    assert t.max_buffered < options.max_command_line
    assert t.max_carried <= MAX_DATA_CARRY
    if options.max_message_size is not None:
        assert t.max_message_octets <= options.max_message_size
    assert all(err.reply_hint.code >= 400 for err in t.errors)


def feed(data: bytes, options: ServerOptions, writes: list[bytes], *, eof: bool) -> Transcript:
    dlg = Dialogue(options, complete_tls=False)
    dlg.feed_all(writes)
    if eof:
        dlg.close()
    check_invariants(dlg)
    return dlg.transcript


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(positions)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("options", OPTIONS)
@given(data=INPUTS, eof=st.booleans())
def test_any_bytes_fed_whole_give_only_events_or_remote_errors(
    options: ServerOptions, data: bytes, eof: bool
) -> None:
    feed(data, options, [data], eof=eof)


@pytest.mark.parametrize("options", OPTIONS)
@given(data=INPUTS, eof=st.booleans())
def test_byte_by_byte_feeding_matches_whole(options: ServerOptions, data: bytes, eof: bool) -> None:
    whole = feed(data, options, [data], eof=eof)
    bytewise = feed(data, options, [data[i : i + 1] for i in range(len(data))], eof=eof)
    assert bytewise.normalized() == whole.normalized()


@pytest.mark.parametrize("options", OPTIONS)
@given(data=INPUTS, eof=st.booleans(), draw=st.data())
def test_random_splits_match_whole(
    options: ServerOptions, data: bytes, eof: bool, draw: st.DataObject
) -> None:
    positions = (
        draw.draw(st.lists(st.integers(1, len(data) - 1), max_size=12), label="cuts")
        if len(data) > 1
        else []
    )
    whole = feed(data, options, [data], eof=eof)
    split = feed(data, options, cut(data, positions), eof=eof)
    assert split.normalized() == whole.normalized()


@pytest.mark.parametrize("options", OPTIONS)
@given(writes=st.lists(INPUTS, max_size=4))
def test_tls_handshakes_and_further_writes_keep_the_invariant(
    options: ServerOptions, writes: list[bytes]
) -> None:
    dlg = Dialogue(options, complete_tls=True)
    dlg.feed_all(writes)
    dlg.close()
    check_invariants(dlg)
