"""Atheris harness for the sans-IO server engine (STYLE.md §2, "fuzzable by construction").

Run (see fuzz/README.md):

    python fuzz/fuzz_server.py -max_total_time=60

Input mapping (smtp-proto's trick): random bytes are poor SMTP, so the fuzzer's
bytes are read as *choices*. The first two pick the engine options and how the
stream is fed; every following choice appends one token from an RFC 5321
alphabet (whole commands, command pieces, CR, LF, ".", NUL, brackets, long
runs), a few raw bytes, or a write boundary. The stream then goes through the
"accept everything" session of ``tests/helpers/engine_pair.py``.

Invariant checked on every input (as in h11's fuzz harness):

* only events, ``NEED_DATA``/``PAUSED`` or ``RemoteProtocolError`` come out;
  any other exception (``LocalProtocolError`` included) is a crash;
* each command and each protocol error gets exactly one reply;
* after each drained ``next_event`` loop, ``len(conn._buf) <
  options.max_command_line`` and the DATA receiver carries ≤ 1002 octets;
* no message releases more content than ``max_message_size``;
* feeding the stream whole, in the chosen writes, and byte by byte gives the
  same replies, delivered messages and non-content events (up to the
  STARTTLS cut; see ``Transcript.normalized``);
* a run that completes every STARTTLS handshake keeps the same invariants.

Must not: be imported by the test suite (it needs atheris); the equivalent
Hypothesis properties live in tests/protocol/test_fuzz_properties.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

with atheris.instrument_imports():
    from postguard.protocol import ServerOptions
    from postguard.protocol.receivers import MAX_TEXT_LINE_OCTETS

from helpers.engine_pair import Dialogue, Transcript

MAX_DATA_CARRY = 2 + (MAX_TEXT_LINE_OCTETS - 1) + 1
MAX_CHOICES = 200

OPTIONS = [
    ServerOptions(),
    ServerOptions(max_message_size=64, max_recipients=2, max_command_line=600, auth=True),
    ServerOptions(chunking=False, binarymime=False, smtputf8=False, starttls=False),
    ServerOptions(implicit_tls=True, max_message_size=None),
]

TOKENS = [
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
    b"EHLO ",
    b"MAIL FROM:<",
    b"RCPT TO:<",
    b"BDAT ",
    b" LAST",
    b" SIZE=",
    b" BODY=8BITMIME",
    b" AUTH=",
    b"[IPv6:::1]",
    b"[192.0.2.1]",
    b'"q x"',
    b"@r.example:",
    b"\r\n",
    b"\r",
    b"\n",
    b".",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r.\r\n",
    b"\r\n..",
    b"\x00",
    b" ",
    b"<",
    b">",
    b"@",
    b":",
    b"=",
    b"+",
    b"x",
    b"7",
    b"\xc3\xbc",
    b"\xc4\xb1",  # dotless i: must not fold into ASCII "I"
    b"\xff",
    b"y" * 700,
    b"z" * 1001,
]
RAW = len(TOKENS)  # choice: a few raw bytes
BREAK = RAW + 1  # choice: end the current write


def build(fdp: atheris.FuzzedDataProvider) -> list[bytes]:
    """Turn the fuzzer's choices into a list of writes."""
    writes: list[bytes] = []
    current = bytearray()
    for _ in range(fdp.ConsumeIntInRange(0, MAX_CHOICES)):
        if fdp.remaining_bytes() == 0:
            break
        choice = fdp.ConsumeIntInRange(0, BREAK)
        if choice == BREAK:
            writes.append(bytes(current))
            current.clear()
        elif choice == RAW:
            current += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 4))
        else:
            current += TOKENS[choice]
    writes.append(bytes(current))
    return [w for w in writes if w]


def drive(options: ServerOptions, writes: list[bytes], *, eof: bool, tls: bool) -> Transcript:
    dlg = Dialogue(options, complete_tls=tls)
    dlg.feed_all(writes)
    if eof:
        dlg.close()
    t = dlg.transcript
    assert len(t.replies) == len(t.commands) + len(t.errors)
    assert all(err.reply_hint.code >= 400 for err in t.errors)
    assert t.max_buffered < options.max_command_line, t.max_buffered
    assert t.max_carried <= MAX_DATA_CARRY, t.max_carried
    if options.max_message_size is not None:
        assert t.max_message_octets <= options.max_message_size
    return t


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    options = OPTIONS[fdp.ConsumeIntInRange(0, len(OPTIONS) - 1)]
    eof = fdp.ConsumeBool()
    writes = build(fdp)
    stream = b"".join(writes)
    whole = drive(options, [stream], eof=eof, tls=False).normalized()
    split = drive(options, writes, eof=eof, tls=False).normalized()
    assert split == whole, "split feeding changed the result"
    if len(stream) <= 2000:
        bytewise = [stream[i : i + 1] for i in range(len(stream))]
        assert drive(options, bytewise, eof=eof, tls=False).normalized() == whole
    drive(options, writes, eof=eof, tls=True)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
