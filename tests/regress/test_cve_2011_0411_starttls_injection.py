"""CVE-2011-0411 (STARTTLS command injection), at the engine level.

The bug (Postfix, Exim, qmail and others, 2011): a client sends
"STARTTLS\\r\\nMAIL FROM:<evil@x>\\r\\n" in one TCP write. The server answers
220, starts TLS, and then executes the MAIL it had already buffered in
plaintext as if it had arrived under TLS, so a man in the middle can inject
commands into the protected session.

The engine must discard every byte buffered when it sends the 220 (and any
that arrive before ``tls_established()``), count them in
``discarded_after_starttls``, and then require a fresh EHLO (RFC 3207 §4.2).
These tests cover the one-write case, STARTTLS pipelined after EHLO, the
injection fed byte by byte, a partial line that must not join a line sent
after the handshake, and the contrast case where STARTTLS is refused.

The same attack over a real TLS socket is tested separately in
``test_cve_2011_0411_starttls_injection_live.py``.
"""

from __future__ import annotations

import pytest

from helpers.engine_pair import EHLO, Dialogue
from postguard.protocol import NEED_DATA, PAUSED, ServerConnection, State, replies
from postguard.protocol import commands as c

INJECTIONS = [
    pytest.param(b"MAIL FROM:<evil@x>\r\n", id="mail"),
    pytest.param(b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n", id="whole-envelope"),
    pytest.param(b"RSET\r\n", id="rset"),
    pytest.param(b"EHLO evil.example\r\n", id="ehlo"),
    pytest.param(b"MAIL FROM:<ev", id="partial-line"),
]


def tls_cut(setup: bytes, data: bytes) -> Dialogue:
    """Feed ``setup``, then ``data`` in one write, stopping at the TLS cut."""
    dlg = Dialogue(complete_tls=False)
    dlg.feed(setup)
    dlg.feed(data)
    return dlg


@pytest.mark.parametrize("injected", INJECTIONS)
def test_commands_sent_with_starttls_are_discarded(injected: bytes) -> None:
    dlg = tls_cut(EHLO, b"STARTTLS\r\n" + injected)
    t = dlg.transcript
    assert t.codes == ["250", "220 2.0.0"]  # only the 220 answers this write
    assert [type(e) for e in t.events] == [c.Ehlo, c.StartTls]
    assert dlg.conn.state is State.TLS_PENDING
    assert dlg.conn.discarded_after_starttls == len(injected)


@pytest.mark.parametrize("injected", INJECTIONS)
def test_after_handshake_ehlo_is_required(injected: bytes) -> None:
    dlg = tls_cut(EHLO, b"STARTTLS\r\n" + injected)
    dlg.establish_tls()
    assert dlg.conn.state is State.NEED_EHLO
    assert dlg.conn.tls_active
    assert dlg.conn.ehlo_domain is None
    before = len(dlg.transcript.replies)
    dlg.feed(b"MAIL FROM:<a@example.org>\r\n")
    assert dlg.transcript.codes[before:] == ["503 5.5.1"]
    dlg.feed(EHLO + b"MAIL FROM:<a@example.org>\r\n")
    assert dlg.transcript.codes[before + 1 :] == ["250", "250 2.1.0"]
    assert "STARTTLS" not in dlg.transcript.replies[-2].lines


def test_starttls_pipelined_after_ehlo_in_one_write() -> None:
    injected = b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\n"
    dlg = tls_cut(b"", EHLO + b"STARTTLS\r\n" + injected)
    assert dlg.transcript.codes == ["250", "220 2.0.0"]
    assert dlg.conn.discarded_after_starttls == len(injected)
    dlg.establish_tls()
    dlg.feed(b"RCPT TO:<victim@y>\r\n")
    assert dlg.transcript.codes[-1] == "503 5.5.1"
    assert not dlg.transcript.of_type(c.MailFrom)
    assert not dlg.transcript.of_type(c.RcptTo)


def test_starttls_and_rset_fed_byte_by_byte_before_the_handshake() -> None:
    # The I/O layer keeps reading while the handshake is pending: the bytes reach
    # the engine in TLS_PENDING and must be dropped by tls_established().
    conn = ServerConnection()
    conn.send(replies.greeting("mx.example.test"))
    conn.receive_data(EHLO)
    assert isinstance(conn.next_event(), c.Ehlo)
    conn.send(replies.R250_OK)
    assert conn.next_event() is NEED_DATA
    sent: list[bytes] = []
    for octet in b"STARTTLS\r\nRSET\r\n":
        conn.receive_data(bytes([octet]))
        event = conn.next_event()
        if isinstance(event, c.StartTls):
            sent.append(conn.send(replies.R220_READY_TO_START_TLS))
            event = conn.next_event()
        assert event in (NEED_DATA, PAUSED)
    assert sent == [replies.R220_READY_TO_START_TLS.render()]
    assert conn.state is State.TLS_PENDING
    conn.tls_established()
    assert conn.discarded_after_starttls == len(b"RSET\r\n")
    assert conn.state is State.NEED_EHLO
    assert conn.next_event() is NEED_DATA  # the RSET is gone, not waiting to run


def test_injection_arriving_while_handshake_is_pending_is_discarded() -> None:
    conn = ServerConnection()
    conn.send(replies.greeting("mx.example.test"))
    conn.receive_data(EHLO + b"STARTTLS\r\n")
    assert isinstance(conn.next_event(), c.Ehlo)
    conn.send(replies.R250_OK)
    assert isinstance(conn.next_event(), c.StartTls)
    conn.send(replies.R220_READY_TO_START_TLS)
    conn.receive_data(b"MAIL FROM:<evil@x>\r\n")
    assert conn.next_event() is PAUSED
    conn.tls_established()
    assert conn.discarded_after_starttls == len(b"MAIL FROM:<evil@x>\r\n")
    assert conn.next_event() is NEED_DATA


def test_partial_line_before_the_cut_does_not_join_a_line_after_it() -> None:
    dlg = tls_cut(EHLO, b"STARTTLS\r\nMAIL FROM:<ev")
    dlg.establish_tls()
    dlg.feed(b"il@x>\r\n")
    assert dlg.transcript.codes[-1] == "500 5.5.2"
    assert not dlg.transcript.of_type(c.MailFrom)


def test_refused_starttls_keeps_the_plaintext_session() -> None:
    dlg = Dialogue(policy={c.StartTls: replies.R454_TLS_UNAVAILABLE})
    dlg.feed(EHLO + b"STARTTLS\r\nMAIL FROM:<a@example.org>\r\n")
    assert dlg.transcript.codes == ["250", "454 4.7.0", "250 2.1.0"]
    assert dlg.conn.discarded_after_starttls == 0
    assert not dlg.conn.tls_active
