"""Table tests of the server engine: (state set-up, input bytes) → replies.

Covers every command of RFC 5321 (EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY
EXPN HELP), STARTTLS (RFC 3207), BDAT with LAST and BINARYMIME (RFC 3030), the
sequence errors (503), syntax errors (501 with 5.1.7 for senders and 5.1.3 for
recipients), unknown commands and parameters (500, 555), SIZE (RFC 1870), the
recipient limit (452 4.5.3), the 512-octet command line and 1000-octet text
line limits, pipelining order (RFC 2920), address forms (Postmaster, quoted
local parts, address literals, source routes, SMTPUTF8), dot-unstuffing, and
the engine's refusal of illegal replies (``LocalProtocolError``).

Each row runs through :class:`helpers.engine_pair.Dialogue` with its
permissive session: the set-up bytes bring the engine into a state, then the
input's replies are compared as "code enhanced" strings. What the *session*
would decide (VRFY 252, EXPN 502) is the helper's policy; everything else in
these tables is decided by the engine itself.
"""

from __future__ import annotations

import pytest

from helpers.engine_pair import EHLO, ENVELOPE, MAIL, RCPT, Dialogue, Policy, run
from postguard.protocol import (
    NEED_DATA,
    PAUSED,
    LocalProtocolError,
    RemoteProtocolError,
    ServerConnection,
    ServerOptions,
    State,
    grammar,
    replies,
)
from postguard.protocol import commands as c

# ------------------------------------------------------------------ set-ups

FRESH = b""  # greeted, EHLO required
HELO = b"HELO client.example.org\r\n"
READY = EHLO
IN_MAIL = EHLO + MAIL
IN_RCPT = ENVELOPE
IN_BDAT = ENVELOPE + b"BDAT 3\r\nabc"  # one chunk accepted: BDAT_WAIT
BINARY = EHLO + b"MAIL FROM:<a@example.org> BODY=BINARYMIME\r\n" + RCPT
UTF8_MAIL = EHLO + "MAIL FROM:<ü@example.org> SMTPUTF8\r\n".encode()

SMALL = ServerOptions(max_message_size=100, max_recipients=2)
UNLIMITED = ServerOptions(max_message_size=None)
NO_BINARY = ServerOptions(binarymime=False)
AUTH = ServerOptions(auth=True)
NO_DSN = ServerOptions(dsn=False)
NO_EXTRAS = ServerOptions(chunking=False, smtputf8=False, starttls=False)
IMPLICIT_TLS = ServerOptions(implicit_tls=True)


def mail(params: str) -> bytes:
    """A MAIL command with ESMTP parameters."""
    return f"MAIL FROM:<a@example.org> {params}\r\n".encode()


def replies_to(
    setup: bytes, data: bytes, options: ServerOptions | None = None
) -> tuple[list[str], Dialogue]:
    """Feed ``setup`` (which must succeed), then ``data``; return the replies to ``data``."""
    dlg = Dialogue(options)
    dlg.feed(setup)
    assert not dlg.transcript.errors, f"set-up failed: {dlg.transcript.codes}"
    before = len(dlg.transcript.replies)
    dlg.feed(data)
    return dlg.transcript.codes[before:], dlg


def row(
    setup: bytes,
    data: bytes | str,
    expect: list[str],
    *,
    id: str,
    options: ServerOptions | None = None,
    state: State | None = None,
) -> object:
    raw = data.encode() if isinstance(data, str) else data
    return pytest.param(setup, raw, expect, options, state, id=id)


def check(
    setup: bytes,
    data: bytes,
    expect: list[str],
    options: ServerOptions | None,
    state: State | None,
) -> None:
    got, dlg = replies_to(setup, data, options)
    assert got == expect
    if state is not None:
        assert dlg.conn.state is state


# ------------------------------------------------------- every RFC 5321 command

COMMANDS = [
    row(FRESH, "EHLO client.example.org\r\n", ["250"], id="ehlo", state=State.READY),
    row(FRESH, "EHLO [192.0.2.1]\r\n", ["250"], id="ehlo-ipv4-literal"),
    row(FRESH, "EHLO [IPv6:2001:db8::1]\r\n", ["250"], id="ehlo-ipv6-literal"),
    row(FRESH, "ehlo client.example.org\r\n", ["250"], id="ehlo-lowercase-verb"),
    row(READY, "EHLO client.example.org\r\n", ["250"], id="ehlo-again", state=State.READY),
    row(FRESH, "HELO client.example.org\r\n", ["250"], id="helo", state=State.READY),
    row(READY, MAIL, ["250 2.1.0"], id="mail", state=State.MAIL),
    row(HELO, MAIL, ["250 2.1.0"], id="mail-after-helo", state=State.MAIL),
    row(READY, "MAIL FROM:<>\r\n", ["250 2.1.0"], id="mail-null-reverse-path"),
    row(READY, "mail from:<a@example.org>\r\n", ["250 2.1.0"], id="mail-lowercase"),
    row(READY, "MAIL FROM: <a@example.org>\r\n", ["250 2.1.0"], id="mail-space-after-colon"),
    row(IN_MAIL, RCPT, ["250 2.1.5"], id="rcpt", state=State.RCPT),
    row(IN_RCPT, "RCPT TO:<second@example.net>\r\n", ["250 2.1.5"], id="rcpt-second"),
    row(IN_RCPT, "DATA\r\n", ["354"], id="data", state=State.DATA),
    row(IN_RCPT, "DATA\r\nhi\r\n.\r\n", ["354", "250 2.0.0"], id="data-message", state=State.READY),
    row(FRESH, "RSET\r\n", ["250 2.0.0"], id="rset-before-ehlo", state=State.NEED_EHLO),
    row(READY, "RSET\r\n", ["250 2.0.0"], id="rset-ready", state=State.READY),
    row(IN_MAIL, "RSET\r\n", ["250 2.0.0"], id="rset-in-mail", state=State.READY),
    row(IN_RCPT, "RSET\r\n", ["250 2.0.0"], id="rset-in-rcpt", state=State.READY),
    row(IN_BDAT, "RSET\r\n", ["250 2.0.0"], id="rset-between-chunks", state=State.READY),
    row(FRESH, "NOOP\r\n", ["250 2.0.0"], id="noop-before-ehlo"),
    row(IN_RCPT, "NOOP\r\n", ["250 2.0.0"], id="noop-in-transaction", state=State.RCPT),
    row(READY, "NOOP ignored text\r\n", ["250 2.0.0"], id="noop-with-string"),
    row(READY, "QUIT\r\n", ["221 2.0.0"], id="quit", state=State.CLOSED),
    row(IN_RCPT, "QUIT\r\n", ["221 2.0.0"], id="quit-in-transaction", state=State.CLOSED),
    row(READY, "QUIT\r\nNOOP\r\n", ["221 2.0.0"], id="nothing-after-quit"),
    row(READY, "VRFY postmaster\r\n", ["252 2.0.0"], id="vrfy-discloses-nothing"),
    row(FRESH, "VRFY someone\r\n", ["252 2.0.0"], id="vrfy-before-ehlo"),
    row(READY, "EXPN staff\r\n", ["502 5.5.1"], id="expn-refused-by-session"),
    row(READY, "HELP\r\n", ["214 2.0.0"], id="help"),
    row(READY, "HELP MAIL\r\n", ["214 2.0.0"], id="help-topic"),
    row(READY, "STARTTLS\r\n", ["220 2.0.0"], id="starttls", state=State.NEED_EHLO),
    row(FRESH, "STARTTLS\r\n", ["220 2.0.0"], id="starttls-before-ehlo"),
    row(READY, "AUTH PLAIN\r\n", ["235 2.7.0"], id="auth", options=AUTH),
]


@pytest.mark.parametrize(("setup", "data", "expect", "options", "state"), COMMANDS)
def test_each_command_gets_its_reply(
    setup: bytes, data: bytes, expect: list[str], options: ServerOptions | None, state: State | None
) -> None:
    check(setup, data, expect, options, state)


# ------------------------------------------------------------ sequence errors

SEQUENCE_ERRORS = [
    row(FRESH, MAIL, ["503 5.5.1"], id="mail-before-ehlo", state=State.NEED_EHLO),
    row(FRESH, RCPT, ["503 5.5.1"], id="rcpt-before-ehlo"),
    row(FRESH, "DATA\r\n", ["503 5.5.1"], id="data-before-ehlo"),
    row(FRESH, "BDAT 3 LAST\r\nabc", ["503 5.5.1"], id="bdat-before-ehlo", state=State.NEED_EHLO),
    row(READY, RCPT, ["503 5.5.1"], id="rcpt-before-mail"),
    row(READY, "DATA\r\n", ["503 5.5.1"], id="data-before-mail"),
    row(READY, "BDAT 3 LAST\r\nabc", ["503 5.5.1"], id="bdat-before-mail", state=State.READY),
    row(READY, "BDAT 3\r\nabc", ["503 5.5.1"], id="bdat-chunk-before-mail", state=State.READY),
    row(IN_MAIL, MAIL, ["503 5.5.1"], id="nested-mail-after-mail", state=State.MAIL),
    row(IN_RCPT, MAIL, ["503 5.5.1"], id="nested-mail-after-rcpt", state=State.RCPT),
    row(IN_BDAT, MAIL, ["503 5.5.1"], id="mail-between-chunks", state=State.BDAT_WAIT),
    row(IN_BDAT, "DATA\r\n", ["503 5.5.1"], id="data-after-bdat", state=State.BDAT_WAIT),
    row(BINARY, "DATA\r\n", ["503 5.5.1"], id="data-with-binarymime"),
    row(IN_MAIL, "STARTTLS\r\n", ["503 5.5.1"], id="starttls-in-mail", state=State.MAIL),
    row(IN_RCPT, "STARTTLS\r\n", ["503 5.5.1"], id="starttls-in-rcpt"),
    row(IN_BDAT, "STARTTLS\r\n", ["503 5.5.1"], id="starttls-between-chunks"),
    row(READY, "STARTTLS\r\n", ["503 5.5.1"], id="starttls-under-tls", options=IMPLICIT_TLS),
    row(FRESH, "AUTH PLAIN\r\n", ["503 5.5.1"], id="auth-before-ehlo", options=AUTH),
    row(IN_MAIL, "AUTH PLAIN\r\n", ["503 5.5.1"], id="auth-in-transaction", options=AUTH),
    row(IN_RCPT, "RSET\r\n" + RCPT.decode(), ["250 2.0.0", "503 5.5.1"], id="rcpt-after-rset"),
    row(IN_RCPT, "RSET\r\nDATA\r\n", ["250 2.0.0", "503 5.5.1"], id="data-after-rset"),
    row(IN_RCPT, EHLO + b"DATA\r\n", ["250", "503 5.5.1"], id="ehlo-resets-transaction"),
    row(IN_RCPT, HELO + b"DATA\r\n", ["250", "503 5.5.1"], id="helo-resets-transaction"),
    row(IN_MAIL, EHLO + MAIL, ["250", "250 2.1.0"], id="mail-allowed-after-ehlo-reset"),
    # RFC 5321 §3.3: DATA with no valid recipient may be 503 or 554; we say 554.
    row(IN_MAIL, "DATA\r\n", ["554 5.5.1"], id="data-without-recipient", state=State.MAIL),
    row(IN_MAIL, "BDAT 3 LAST\r\nabc", ["554 5.5.1"], id="bdat-without-recipient"),
]


@pytest.mark.parametrize(("setup", "data", "expect", "options", "state"), SEQUENCE_ERRORS)
def test_out_of_sequence_command_is_503(
    setup: bytes, data: bytes, expect: list[str], options: ServerOptions | None, state: State | None
) -> None:
    check(setup, data, expect, options, state)


def test_data_rejected_554_when_session_refused_every_recipient() -> None:
    refuse: Policy = {c.RcptTo: replies.R550_NO_SUCH_USER}
    t = run(EHLO + MAIL + RCPT + b"DATA\r\n", policy=refuse)
    assert t.codes[-2:] == ["550 5.1.1", "554 5.5.1"]
    assert not t.of_type(c.StartData)


# ------------------------------------------------------------ syntax errors

SYNTAX_ERRORS = [
    row(READY, "FOO\r\n", ["500 5.5.2"], id="unknown-command"),
    row(READY, "\r\n", ["500 5.5.2"], id="empty-line"),
    row(READY, " NOOP\r\n", ["500 5.5.2"], id="leading-space"),
    row(READY, b"NOOP \xff\xfe\r\n", ["500 5.5.2"], id="command-not-utf8"),
    row(READY, "QU\u0131T\r\n", ["500 5.5.2"], id="non-ascii-verb-is-not-folded-to-quit"),
    row(READY, "\ufb06ARTTLS\r\n", ["500 5.5.2"], id="ligature-is-not-folded-to-starttls"),
    row(READY, "TURN\r\n", ["502 5.5.1"], id="turn-not-implemented"),
    row(READY, "ETRN example.org\r\n", ["502 5.5.1"], id="etrn-not-implemented"),
    row(FRESH, "EHLO\r\n", ["501 5.5.4"], id="ehlo-without-domain"),
    row(FRESH, "EHLO a b\r\n", ["501 5.5.4"], id="ehlo-two-words"),
    row(FRESH, "HELO\r\n", ["501 5.5.4"], id="helo-without-domain"),
    row(READY, "MAIL <a@example.org>\r\n", ["501 5.5.2"], id="mail-without-from"),
    row(READY, "MAIL FROM:a@example.org\r\n", ["501 5.1.7"], id="mail-without-brackets"),
    row(READY, "MAIL FROM:<a@example.org\r\n", ["501 5.1.7"], id="mail-unclosed-path"),
    row(READY, "MAIL FROM:<a>\r\n", ["501 5.1.7"], id="mail-without-domain"),
    row(READY, "MAIL FROM:<a@>\r\n", ["501 5.1.7"], id="mail-empty-domain"),
    row(READY, "MAIL FROM:<@example.org>\r\n", ["501 5.1.7"], id="mail-empty-local-part"),
    row(READY, "MAIL FROM:<a..b@example.org>\r\n", ["501 5.1.7"], id="mail-double-dot"),
    row(READY, "MAIL FROM:<a@-x-.org>\r\n", ["501 5.1.7"], id="mail-bad-label"),
    row(READY, "MAIL FROM:<a@example.org.>\r\n", ["501 5.1.7"], id="mail-trailing-dot"),
    row(READY, "MAIL FROM:<a@example.org>SIZE=1\r\n", ["501 5.1.7"], id="mail-param-no-space"),
    row(READY, "MAIL FROM:<a@example.org> SIZE=1 size=2\r\n", ["501 5.1.7"], id="mail-dup-param"),
    row(IN_MAIL, "RCPT <b@example.net>\r\n", ["501 5.5.2"], id="rcpt-without-to"),
    row(IN_MAIL, "RCPT TO:<>\r\n", ["501 5.1.3"], id="rcpt-null-path"),
    row(IN_MAIL, "RCPT TO:b@example.net\r\n", ["501 5.1.3"], id="rcpt-without-brackets"),
    row(IN_MAIL, "RCPT TO:<b@>\r\n", ["501 5.1.3"], id="rcpt-empty-domain"),
    row(IN_MAIL, "RCPT TO:<b c@example.net>\r\n", ["501 5.1.3"], id="rcpt-space-in-local"),
    row(IN_RCPT, "DATA now\r\n", ["501 5.5.4"], id="data-with-argument"),
    row(READY, "RSET all\r\n", ["501 5.5.4"], id="rset-with-argument"),
    row(READY, "VRFY\r\n", ["501 5.5.2"], id="vrfy-without-argument"),
    row(READY, "STARTTLS now\r\n", ["501 5.5.4"], id="starttls-with-parameter"),
    row(READY, "AUTH\r\n", ["501 5.5.2"], id="auth-without-mechanism", options=AUTH),
    row(READY, "AUTH pla\u0131n\r\n", ["501 5.5.2"], id="auth-non-ascii-mechanism", options=AUTH),
]


@pytest.mark.parametrize(("setup", "data", "expect", "options", "state"), SYNTAX_ERRORS)
def test_malformed_command_is_rejected(
    setup: bytes, data: bytes, expect: list[str], options: ServerOptions | None, state: State | None
) -> None:
    check(setup, data, expect, options, state)


# ------------------------------------------------------- ESMTP parameters

PARAMETERS = [
    row(READY, mail("SIZE=99"), ["250 2.1.0"], id="size-under-limit", options=SMALL),
    row(READY, mail("SIZE=100"), ["250 2.1.0"], id="size-at-limit", options=SMALL),
    row(READY, mail("SIZE=101"), ["552 5.3.4"], id="size-over-limit", options=SMALL),
    row(READY, mail("SIZE=" + "9" * 20), ["250 2.1.0"], id="size-unlimited", options=UNLIMITED),
    row(READY, mail("SIZE=abc"), ["501 5.5.4"], id="size-not-a-number"),
    row(READY, mail("SIZE"), ["501 5.5.4"], id="size-without-value"),
    row(READY, mail("SIZE=" + "1" * 21), ["501 5.5.4"], id="size-21-digits"),
    row(READY, mail("SIZE=\u00b2"), ["501 5.5.4"], id="size-superscript-digit"),
    row(READY, mail("SIZE=\u0663"), ["501 5.5.4"], id="size-arabic-indic-digit"),
    row(READY, mail("BODY=7BIT"), ["250 2.1.0"], id="body-7bit"),
    row(READY, mail("BODY=8BITMIME"), ["250 2.1.0"], id="body-8bitmime"),
    row(READY, mail("body=8bitmime"), ["250 2.1.0"], id="body-lowercase"),
    row(READY, mail("BODY=BINARYMIME"), ["250 2.1.0"], id="body-binarymime"),
    row(READY, mail("BODY=BINARYMIME"), ["504 5.5.4"], id="binarymime-off", options=NO_BINARY),
    row(READY, mail("BODY=BINARYMIME"), ["504 5.5.4"], id="chunking-off", options=NO_EXTRAS),
    row(READY, mail("BODY=QUOTED"), ["504 5.5.4"], id="body-unknown"),
    row(READY, mail("BODY=8b\u0131tmime"), ["504 5.5.4"], id="body-non-ascii-not-folded"),
    row(READY, mail("SMTPUTF8"), ["250 2.1.0"], id="smtputf8"),
    row(READY, mail("SMTPUTF8=yes"), ["501 5.5.4"], id="smtputf8-with-value"),
    row(READY, mail("SMTPUTF8"), ["555 5.5.4"], id="smtputf8-not-offered", options=NO_EXTRAS),
    row(READY, mail("AUTH=<>"), ["250 2.1.0"], id="auth-param", options=AUTH),
    row(READY, mail("AUTH=a+40example.org"), ["250 2.1.0"], id="auth-xtext", options=AUTH),
    row(READY, mail("AUTH=a+4"), ["501 5.5.4"], id="auth-bad-xtext", options=AUTH),
    row(READY, mail("AUTH=<>"), ["555 5.5.4"], id="auth-param-not-offered"),
    row(READY, mail("X-FOO=bar"), ["555 5.5.4"], id="mail-unknown-param"),
    row(READY, mail("REQUIRETLS"), ["555 5.5.4"], id="requiretls-not-offered"),
    row(
        IN_MAIL,
        RCPT[:-2] + b" NOTIFY=NEVER\r\n",
        ["555 5.5.4"],
        id="rcpt-dsn-not-offered",
        options=NO_DSN,
    ),
    row(IN_MAIL, RCPT[:-2] + b" NOTIFY=NEVER\r\n", ["250 2.1.5"], id="rcpt-notify-never"),
    row(
        IN_MAIL,
        RCPT[:-2] + b" NOTIFY=SUCCESS,FAILURE,DELAY\r\n",
        ["250 2.1.5"],
        id="rcpt-notify-list",
    ),
    row(
        IN_MAIL,
        RCPT[:-2] + b" NOTIFY=NEVER,SUCCESS\r\n",
        ["501 5.5.4"],
        id="rcpt-notify-never-mixed",
    ),
    row(IN_MAIL, RCPT[:-2] + b" NOTIFY=SOMETIMES\r\n", ["501 5.5.4"], id="rcpt-notify-unknown"),
    row(
        IN_MAIL, RCPT[:-2] + b" ORCPT=rfc822;bob+40example.org\r\n", ["250 2.1.5"], id="rcpt-orcpt"
    ),
    row(IN_MAIL, RCPT[:-2] + b" ORCPT=bob@example.org\r\n", ["501 5.5.4"], id="rcpt-orcpt-no-type"),
    row(
        READY,
        b"MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ+2B1\r\n",
        ["250 2.1.0"],
        id="mail-ret-envid",
    ),
    row(READY, b"MAIL FROM:<a@example.org> RET=BODY\r\n", ["501 5.5.4"], id="mail-ret-bad"),
    row(
        READY,
        b"MAIL FROM:<a@example.org> ENVID=" + b"x" * 101 + b"\r\n",
        ["501 5.5.4"],
        id="mail-envid-too-long",
    ),
    row(IN_MAIL, RCPT[:-2] + b" X-FOO\r\n", ["555 5.5.4"], id="rcpt-unknown-param"),
    row(IN_RCPT, "BDAT 3 LAST\r\nabc", ["500 5.5.2"], id="bdat-no-chunking", options=NO_EXTRAS),
]


@pytest.mark.parametrize(("setup", "data", "expect", "options", "state"), PARAMETERS)
def test_esmtp_parameter_handling(
    setup: bytes, data: bytes, expect: list[str], options: ServerOptions | None, state: State | None
) -> None:
    check(setup, data, expect, options, state)


def test_mail_event_carries_decoded_parameters() -> None:
    t = run(EHLO + b"MAIL FROM:<a@example.org> SIZE=42 BODY=8BITMIME SMTPUTF8\r\n")
    [mail] = t.of_type(c.MailFrom)
    assert mail == c.MailFrom(
        grammar.Address("a", "example.org"),
        size=42,
        body=c.BodyType.EIGHT_BIT_MIME,
        smtputf8=True,
        esmtp_params={"SIZE": "42", "BODY": "8BITMIME", "SMTPUTF8": None},
    )


def test_auth_parameter_is_xtext_decoded() -> None:
    t = run(EHLO + b"MAIL FROM:<a@example.org> AUTH=user+2Bx@example.org\r\n", options=AUTH)
    [mail] = t.of_type(c.MailFrom)
    assert mail.auth == "user+x@example.org"


# ----------------------------------------------------------------- EHLO


def test_ehlo_reply_lists_the_offered_extensions() -> None:
    t = run(EHLO)
    assert t.last.lines[1:] == (
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
        "CHUNKING",
        "BINARYMIME",
        "DSN",
        "STARTTLS",
    )


def test_dsn_parameters_reach_the_session_decoded() -> None:
    t = run(
        EHLO
        + b"MAIL FROM:<a@example.org> RET=FULL ENVID=id+2B1\r\n"
        + b"RCPT TO:<b@example.org> NOTIFY=failure,delay ORCPT=rfc822;b+40example.org\r\n"
    )
    [mail] = t.of_type(c.MailFrom)
    [rcpt] = t.of_type(c.RcptTo)
    assert (mail.ret, mail.envid) == ("FULL", "id+1")
    assert (rcpt.notify, rcpt.orcpt) == (("FAILURE", "DELAY"), "rfc822;b@example.org")


def test_ehlo_under_tls_no_longer_offers_starttls() -> None:
    t = run(EHLO + b"STARTTLS\r\n" + EHLO, bytewise=True)
    assert "STARTTLS" not in t.last.lines


def test_ehlo_with_name_outside_the_grammar_is_accepted_and_flagged() -> None:
    t = run(b"EHLO my_host\r\n")
    assert t.codes == ["250"]
    assert t.events == [c.Ehlo("my_host", domain_valid=False)]


def test_helo_turns_esmtp_off() -> None:
    dlg = Dialogue()
    dlg.feed(HELO)
    assert dlg.conn.esmtp is False
    assert dlg.conn.ehlo_domain == "client.example.org"


# ----------------------------------------------------------------- limits

LONG_AUTH = mail("AUTH=" + "x" * 600)  # over 512 octets, under the extended limit
TOO_LONG_AUTH = mail("AUTH=" + "x" * 3000)
THREE_RCPTS = RCPT + b"RCPT TO:<c@example.net>\r\nRCPT TO:<d@example.net>\r\n"

LIMITS = [
    # RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
    row(READY, b"NOOP " + b"x" * 505 + b"\r\n", ["250 2.0.0"], id="512-octet-line-accepted"),
    row(READY, b"NOOP " + b"x" * 506 + b"\r\n", ["500 5.5.0"], id="513-octet-line-rejected"),
    row(FRESH, b"EHLO " + b"a" * 600 + b"\r\n", ["500 5.5.0"], id="long-ehlo-rejected"),
    row(
        READY, b"NOOP " + b"x" * 3000 + b"\r\nNOOP\r\n", ["500 5.5.0", "250 2.0.0"], id="skip-3000"
    ),
    row(READY, b"NOOP " + b"x" * 9000 + b"\r\n" + MAIL, ["500 5.5.0", "250 2.1.0"], id="skip-9000"),
    # MAIL and RCPT may grow by the offered extensions' parameters (RFC 5321 §4.5.3.1.4).
    row(READY, LONG_AUTH, ["250 2.1.0"], id="mail-over-512-with-parameters", options=AUTH),
    row(READY, TOO_LONG_AUTH, ["500 5.5.0"], id="mail-over-extended-limit", options=AUTH),
    row(
        IN_MAIL,
        THREE_RCPTS,
        ["250 2.1.5", "250 2.1.5", "452 4.5.3"],
        id="rcpt-limit",
        options=SMALL,
    ),
    row(
        IN_MAIL,
        RCPT * 2 + b"RSET\r\n" + MAIL + RCPT,
        ["250 2.1.5", "250 2.1.5", "250 2.0.0", "250 2.1.0", "250 2.1.5"],
        id="rcpt-limit-per-transaction",
        options=SMALL,
    ),
]


@pytest.mark.parametrize(("setup", "data", "expect", "options", "state"), LIMITS)
def test_limits_are_enforced(
    setup: bytes, data: bytes, expect: list[str], options: ServerOptions | None, state: State | None
) -> None:
    check(setup, data, expect, options, state)


def test_recipient_limit_leaves_accepted_recipients_usable() -> None:
    data = RCPT * 3 + b"DATA\r\nhi\r\n.\r\n"
    got, dlg = replies_to(IN_MAIL, data, SMALL)
    assert got == ["250 2.1.5", "250 2.1.5", "452 4.5.3", "354", "250 2.0.0"]
    assert dlg.transcript.messages == [b"hi\r\n"]


# ------------------------------------------------------------ DATA content

DATA_CONTENT = [
    pytest.param(b".\r\n", b"", id="empty-message"),
    pytest.param(b"\r\n.\r\n", b"\r\n", id="one-empty-line"),
    pytest.param(b"hello\r\n.\r\n", b"hello\r\n", id="one-line"),
    pytest.param(b"..\r\n.\r\n", b".\r\n", id="stuffed-lone-dot"),
    pytest.param(b"..hidden\r\n.\r\n", b".hidden\r\n", id="stuffed-leading-dot"),
    pytest.param(b"a\r\n...\r\nb\r\n.\r\n", b"a\r\n..\r\nb\r\n", id="stuffed-double-dot"),
    pytest.param(b"a.b\r\n .\r\n.\r\n", b"a.b\r\n .\r\n", id="dots-not-at-line-start"),
    pytest.param(b"x" * 998 + b"\r\n.\r\n", b"x" * 998 + b"\r\n", id="998-octet-line"),
    pytest.param(
        b"." + b"x" * 998 + b"\r\n.\r\n", b"x" * 998 + b"\r\n", id="stuffed-998-octet-line"
    ),
    pytest.param(b"\x00\x01\x7f\xff\r\n.\r\n", b"\x00\x01\x7f\xff\r\n", id="octets-passed-through"),
]


@pytest.mark.parametrize(("content", "message"), DATA_CONTENT)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_data_content_is_dot_unstuffed(content: bytes, message: bytes, bytewise: bool) -> None:
    t = run([IN_RCPT + b"DATA\r\n", content], bytewise=bytewise)
    assert t.codes[-2:] == ["354", "250 2.0.0"]
    assert t.messages == [message]
    [end] = t.of_type(c.EndOfMessage)
    assert end == c.EndOfMessage(len(message), None)


DATA_VIOLATIONS = [
    # RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
    pytest.param(b"x" * 999 + b"\r\n.\r\n", "500 5.5.0", id="999-octet-line"),
    pytest.param(b"." + b"x" * 999 + b"\r\n.\r\n", "500 5.5.0", id="stuffed-999-octet-line"),
    pytest.param(b"x" * 5000 + b"\r\n.\r\n", "500 5.5.0", id="5000-octet-line"),
    # RFC 5321 §2.3.8: bare CR and bare LF are not line endings.
    pytest.param(b"a\nb\r\n.\r\n", "550 5.6.0", id="bare-lf"),
    pytest.param(b"a\rb\r\n.\r\n", "550 5.6.0", id="bare-cr"),
    pytest.param(b"a\r\r\n.\r\n", "550 5.6.0", id="cr-before-crlf"),
    pytest.param(b"a\r\n\nb\r\n.\r\n", "550 5.6.0", id="lf-after-crlf"),
]


@pytest.mark.parametrize(("content", "reply"), DATA_VIOLATIONS)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_data_violation_rejects_the_message(content: bytes, reply: str, bytewise: bool) -> None:
    t = run([IN_RCPT + b"DATA\r\n", content + b"NOOP\r\n"], bytewise=bytewise)
    assert t.codes[-3:] == ["354", reply, "250 2.0.0"]
    assert t.messages == []
    assert len(t.of_type(c.EndOfMessage)) == 1


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_message_over_size_limit_is_552_and_content_is_bounded(bytewise: bool) -> None:
    body = b"".join(b"line %03d of a message that is too big\r\n" % i for i in range(200))
    t = run([IN_RCPT + b"DATA\r\n", body + b".\r\n"], options=SMALL, bytewise=bytewise)
    assert t.codes[-2:] == ["354", "552 5.3.4"]
    assert t.messages == []
    assert t.content_octets <= 100  # nothing past the limit was handed out


def test_message_at_size_limit_is_accepted() -> None:
    body = b"x" * 98 + b"\r\n"  # 100 octets
    t = run([IN_RCPT + b"DATA\r\n", body + b".\r\n"], options=SMALL)
    assert t.messages == [body]


# ----------------------------------------------------------------- BDAT

BDAT = [
    row(IN_RCPT, "BDAT 5 LAST\r\nhello", ["250 2.0.0"], id="single-chunk", state=State.READY),
    row(IN_RCPT, "bdat 5 last\r\nhello", ["250 2.0.0"], id="lowercase"),
    row(IN_RCPT, "BDAT 3\r\nabc", ["250 2.0.0"], id="first-chunk", state=State.BDAT_WAIT),
    row(IN_BDAT, "BDAT 2 LAST\r\nde", ["250 2.0.0"], id="last-chunk", state=State.READY),
    row(IN_BDAT, "BDAT 0 LAST\r\n", ["250 2.0.0"], id="empty-last-chunk"),
    row(IN_RCPT, "BDAT 0 LAST\r\n", ["250 2.0.0"], id="empty-message"),
    row(IN_BDAT, "NOOP\r\nBDAT 1 LAST\r\nx", ["250 2.0.0", "250 2.0.0"], id="noop-between"),
    row(IN_RCPT, "BDAT 4 LAST\r\na\nbc", ["550 5.6.0"], id="bare-lf"),
    row(IN_RCPT, "BDAT 4 LAST\r\na\rbc", ["550 5.6.0"], id="bare-cr"),
    row(IN_RCPT, "BDAT 3 LAST\r\nab\r", ["550 5.6.0"], id="trailing-cr-in-last-chunk"),
    row(IN_RCPT, "BDAT 3\r\nab\rBDAT 3 LAST\r\n\ncd", ["250 2.0.0"] * 2, id="crlf-across-chunks"),
    row(IN_RCPT, b"BDAT 1001 LAST\r\n" + b"x" * 999 + b"\r\n", ["500 5.5.0"], id="999-octet-line"),
    row(IN_RCPT, b"BDAT 1000 LAST\r\n" + b"x" * 998 + b"\r\n", ["250 2.0.0"], id="998-octet-line"),
    row(IN_RCPT, b"BDAT 101 LAST\r\n" + b"x" * 101, ["552 5.3.4"], id="over-size", options=SMALL),
    row(
        IN_RCPT,
        b"BDAT 60\r\n" + b"x" * 60 + b"BDAT 41 LAST\r\n" + b"y" * 41,
        ["250 2.0.0", "552 5.3.4"],
        id="over-size-across-chunks",
        options=SMALL,
    ),
    row(
        IN_RCPT,
        "BDAT 4\r\na\nbcBDAT 1 LAST\r\nx",
        ["550 5.6.0", "503 5.5.1"],
        id="refused-chunk-ends-transaction",
    ),
    row(BINARY, "BDAT 7 LAST\r\n\x00\r\na\nb\r", ["250 2.0.0"], id="binarymime-not-audited"),
    row(READY, "BDAT 6 LAST\r\nNOOP\r\n", ["503 5.5.1"], id="refused-chunk-not-commands"),
    # A BDAT line without a usable size cannot be skipped: fatal (RFC 3030 §2).
    row(IN_RCPT, "BDAT\r\n", ["501 5.5.2"], id="no-size", state=State.ERROR),
    row(IN_RCPT, "BDAT x LAST\r\n", ["501 5.5.2"], id="size-not-a-number", state=State.ERROR),
    row(IN_RCPT, "BDAT -1\r\n", ["501 5.5.2"], id="negative-size", state=State.ERROR),
    row(IN_RCPT, "BDAT \u00b2\r\n", ["501 5.5.2"], id="superscript-size", state=State.ERROR),
    row(IN_RCPT, "BDAT " + "1" * 21 + "\r\n", ["501 5.5.2"], id="21-digits", state=State.ERROR),
    row(IN_RCPT, "BDAT 5 FIRST\r\nhello", ["501 5.5.2"], id="bad-end-marker", state=State.ERROR),
    row(IN_RCPT, "BDAT 5 LAST x\r\nhello", ["501 5.5.2"], id="extra-argument", state=State.ERROR),
    row(
        IN_RCPT, "BDAT 5 LA\u017fT\r\nhello", ["501 5.5.2"], id="long-s-in-last", state=State.ERROR
    ),
    row(IN_RCPT, "BDAT 5\x0bLAST\r\nhello", ["501 5.5.2"], id="vt-separator", state=State.ERROR),
    row(IN_RCPT, "BDAT 5  LAST\r\nhello", ["250 2.0.0"], id="double-space-tolerated"),
]


@pytest.mark.parametrize(("setup", "data", "expect", "options", "state"), BDAT)
def test_bdat_chunks(
    setup: bytes, data: bytes, expect: list[str], options: ServerOptions | None, state: State | None
) -> None:
    check(setup, data, expect, options, state)


def test_bdat_message_content_is_not_unstuffed() -> None:
    t = run(IN_RCPT + b"BDAT 7\r\n..a\r\n.\rBDAT 6 LAST\r\n\n.\r\n\r\n")
    assert t.messages == [b"..a\r\n.\r\n.\r\n\r\n"]


def test_bdat_events_report_chunk_and_message_sizes() -> None:
    t = run(IN_RCPT + b"BDAT 3\r\nabcBDAT 2\r\ndeBDAT 4 LAST\r\nfghi")
    assert t.of_type(c.EndOfChunk) == [c.EndOfChunk(3), c.EndOfChunk(2)]
    assert t.of_type(c.EndOfMessage) == [c.EndOfMessage(9)]
    assert [r.text for r in t.replies[-3:-1]] == ["3 octets received", "2 octets received"]
    assert t.messages == [b"abcdefghi"]


def test_bdat_malformed_is_fatal() -> None:
    t = run(IN_RCPT + b"BDAT 5 FIRST\r\nhello")
    [err] = t.errors
    assert err.fatal
    assert err.reply_hint == replies.R501_SYNTAX


def test_bdat_over_size_hands_out_no_content_past_the_limit() -> None:
    t = run(IN_RCPT + b"BDAT 5000 LAST\r\n" + b"x" * 5000, options=SMALL, bytewise=True)
    assert t.codes[-1] == "552 5.3.4"
    assert t.content_octets <= 100


# ------------------------------------------------------------- pipelining


def test_pipelined_batch_gets_every_reply_in_order() -> None:
    batch = (
        EHLO
        + MAIL
        + b"RCPT TO:<one@example.net>\r\n"
        + b"RCPT TO:<bad address>\r\n"
        + b"RCPT TO:<two@example.net>\r\n"
        + b"NOOP\r\n"
        + b"DATA\r\n"
    )
    t = run(batch)
    assert t.codes == [
        "250",
        "250 2.1.0",
        "250 2.1.5",
        "501 5.1.3",
        "250 2.1.5",
        "250 2.0.0",
        "354",
    ]
    assert [type(e) for e in t.commands] == [
        c.Ehlo,
        c.MailFrom,
        c.RcptTo,
        c.RcptTo,
        c.Noop,
        c.StartData,
    ]


def test_two_messages_and_quit_in_one_write() -> None:
    one = MAIL + RCPT + b"DATA\r\nfirst\r\n.\r\n"
    two = MAIL + RCPT + b"BDAT 6 LAST\r\nsecond"
    t = run(EHLO + one + two + b"QUIT\r\n")
    first = ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]
    second = ["250 2.1.0", "250 2.1.5", "250 2.0.0"]
    assert t.codes == ["250", *first, *second, "221 2.0.0"]
    assert t.messages == [b"first\r\n", b"second"]


def test_engine_pauses_until_each_command_is_answered() -> None:
    conn = ServerConnection()
    conn.send(replies.greeting("mx.example.test"))
    conn.receive_data(b"NOOP\r\nNOOP\r\n")
    assert conn.next_event() == c.Noop()
    assert conn.they_are_waiting_for_reply
    assert conn.next_event() is PAUSED
    conn.send(replies.R250_OK)
    assert conn.next_event() == c.Noop()
    conn.send(replies.R250_OK)
    assert conn.next_event() is NEED_DATA


# -------------------------------------------------------------- addresses

ADDRESSES = [
    pytest.param("RCPT TO:<Postmaster>", grammar.Address("postmaster", ""), id="postmaster"),
    pytest.param("RCPT TO:<postmaster>", grammar.Address("postmaster", ""), id="postmaster-lower"),
    pytest.param("RCPT TO:<POSTMASTER>", grammar.Address("postmaster", ""), id="postmaster-upper"),
    pytest.param(
        "RCPT TO:<postmaster@example.net>",
        grammar.Address("postmaster", "example.net"),
        id="postmaster-at-domain",
    ),
    pytest.param(
        'RCPT TO:<"john doe"@example.net>',
        grammar.Address("john doe", "example.net"),
        id="quoted-with-space",
    ),
    pytest.param(
        'RCPT TO:<"a\\"b"@example.net>',
        grammar.Address('a"b', "example.net"),
        id="quoted-with-escaped-quote",
    ),
    pytest.param(
        'RCPT TO:<"a>b"@example.net>',
        grammar.Address("a>b", "example.net"),
        id="quoted-with-bracket",
    ),
    pytest.param('RCPT TO:<""@example.net>', grammar.Address("", "example.net"), id="quoted-empty"),
    pytest.param("RCPT TO:<b@[192.0.2.1]>", grammar.Address("b", "[192.0.2.1]"), id="ipv4-literal"),
    pytest.param(
        "RCPT TO:<b@[IPv6:2001:DB8:0:0:0:0:0:1]>",
        grammar.Address("b", "[IPv6:2001:db8::1]"),
        id="ipv6-literal",
    ),
    pytest.param(
        "RCPT TO:<@relay.example:b@example.net>",
        grammar.Address("b", "example.net"),
        id="source-route",
    ),
    pytest.param(
        "RCPT TO:<@a.example,@b.example:b@example.net>",
        grammar.Address("b", "example.net"),
        id="source-route-two-hops",
    ),
    pytest.param(
        "RCPT TO:<B.Name+tag@Example.NET>",
        grammar.Address("B.Name+tag", "Example.NET"),
        id="case-kept",
    ),
]


@pytest.mark.parametrize(("line", "address"), ADDRESSES)
def test_recipient_forms_are_accepted(line: str, address: grammar.Address) -> None:
    got, dlg = replies_to(IN_MAIL, line.encode() + b"\r\n")
    assert got == ["250 2.1.5"]
    [rcpt] = dlg.transcript.of_type(c.RcptTo)
    assert rcpt.forward_path == address


BAD_ADDRESSES = [
    row(IN_MAIL, "RCPT TO:<b@[300.0.0.1]>\r\n", ["501 5.1.3"], id="ipv4-octet-over-255"),
    row(IN_MAIL, "RCPT TO:<b@[192.0.2]>\r\n", ["501 5.1.3"], id="ipv4-three-octets"),
    row(IN_MAIL, "RCPT TO:<b@[IPv6:2001:db8::zz]>\r\n", ["501 5.1.3"], id="ipv6-bad-hex"),
    row(IN_MAIL, "RCPT TO:<b@[IPv6:fe80::1%eth0]>\r\n", ["501 5.1.3"], id="ipv6-zone-id"),
    row(IN_MAIL, "RCPT TO:<b@[192.0.2.1>\r\n", ["501 5.1.3"], id="literal-unclosed"),
    row(IN_MAIL, 'RCPT TO:<"unterminated@example.net>\r\n', ["501 5.1.3"], id="quote-unterminated"),
    row(READY, "MAIL FROM:<a@[IPv6:::1%x]>\r\n", ["501 5.1.7"], id="sender-ipv6-zone-id"),
]


@pytest.mark.parametrize(("setup", "data", "expect", "options", "state"), BAD_ADDRESSES)
def test_malformed_address_is_rejected(
    setup: bytes, data: bytes, expect: list[str], options: ServerOptions | None, state: State | None
) -> None:
    check(setup, data, expect, options, state)


UTF8 = [
    row(READY, "MAIL FROM:<ü@example.org>\r\n", ["553 5.6.7"], id="utf8-sender-without-smtputf8"),
    row(
        READY, "MAIL FROM:<a@bücher.example>\r\n", ["553 5.6.7"], id="utf8-domain-without-smtputf8"
    ),
    row(
        READY,
        "MAIL FROM:<ü@example.org> SMTPUTF8\r\n",
        ["250 2.1.0"],
        id="utf8-sender-with-smtputf8",
    ),
    row(
        READY,
        "MAIL FROM:<ü@example.org> SMTPUTF8\r\n",
        ["553 5.6.7"],
        id="utf8-not-offered",
        options=NO_EXTRAS,
    ),
    row(READY, "MAIL FROM:<a@[IPv6:::1%é]>\r\n", ["553 5.6.7"], id="utf8-hidden-in-zone-id"),
    row(
        IN_MAIL,
        "RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\n",
        ["553 5.6.7"],
        id="utf8-rcpt-without-smtputf8",
    ),
    row(
        UTF8_MAIL,
        "RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\n",
        ["250 2.1.5"],
        id="utf8-rcpt-with-smtputf8",
    ),
    row(UTF8_MAIL, 'RCPT TO:<"ü x"@example.net>\r\n', ["250 2.1.5"], id="utf8-quoted-local-part"),
]


@pytest.mark.parametrize(("setup", "data", "expect", "options", "state"), UTF8)
def test_utf8_addresses_need_smtputf8(
    setup: bytes, data: bytes, expect: list[str], options: ServerOptions | None, state: State | None
) -> None:
    check(setup, data, expect, options, state)


def test_utf8_sender_is_decoded() -> None:
    t = run(UTF8_MAIL)
    [mail] = t.of_type(c.MailFrom)
    assert mail.reverse_path == grammar.Address("ü", "example.org")
    assert mail.smtputf8


# -------------------------------------------------- illegal replies (our bugs)


def _pending(
    setup: bytes, trigger: bytes, options: ServerOptions | None = None
) -> ServerConnection:
    """An engine that has just emitted the event ``trigger`` causes, not yet answered."""
    dlg = Dialogue(options)
    dlg.feed(setup)
    if trigger:
        dlg.conn.receive_data(trigger)
    return dlg.conn


ILLEGAL_REPLIES = [
    pytest.param(READY, b"NOOP\r\n", replies.R354_START_DATA, c.Noop, id="354-to-noop"),
    pytest.param(FRESH, EHLO, replies.R354_START_DATA, c.Ehlo, id="354-to-ehlo"),
    pytest.param(IN_RCPT, b"DATA\r\n", replies.R250_OK, c.StartData, id="250-to-data"),
    pytest.param(READY, b"QUIT\r\n", replies.R250_OK, c.Quit, id="250-to-quit"),
    pytest.param(READY, b"STARTTLS\r\n", replies.R250_OK, c.StartTls, id="250-to-starttls"),
    pytest.param(READY, b"VRFY x\r\n", replies.R354_START_DATA, c.Vrfy, id="354-to-vrfy"),
    pytest.param(READY, b"HELP\r\n", replies.R250_OK, c.Help, id="250-to-help"),
    pytest.param(READY, b"AUTH PLAIN\r\n", replies.R250_OK, c.Auth, id="250-to-auth"),
    pytest.param(
        IN_RCPT, b"BDAT 0 LAST\r\n", replies.R354_START_DATA, c.EndOfMessage, id="354-to-bdat"
    ),
]


@pytest.mark.parametrize(("setup", "trigger", "bad", "kind"), ILLEGAL_REPLIES)
def test_illegal_reply_raises_local_protocol_error(
    setup: bytes, trigger: bytes, bad: replies.Reply, kind: type[c.Command]
) -> None:
    conn = _pending(setup, trigger)
    event = conn.next_event()
    assert isinstance(event, kind)
    state = conn.state
    with pytest.raises(LocalProtocolError):
        conn.send(bad)
    assert conn.state is state  # the refused reply changed nothing
    assert conn.they_are_waiting_for_reply


@pytest.mark.parametrize(
    ("setup", "trigger"),
    [
        pytest.param(IN_RCPT + b"DATA\r\n", b"a\nb\r\n.\r\n", id="data-bare-lf"),
        pytest.param(IN_RCPT, b"BDAT 3 LAST\r\na\nb", id="bdat-bare-lf"),
        pytest.param(IN_RCPT, b"BDAT 3\r\na\nb", id="bdat-chunk-bare-lf"),
        pytest.param(READY, b"BDAT 3 LAST\r\nabc", id="bdat-out-of-sequence"),
    ],
)
def test_positive_reply_to_content_with_violation_is_refused(setup: bytes, trigger: bytes) -> None:
    conn = _pending(setup, trigger)
    event = conn.next_event()
    assert isinstance(event, c.EndOfMessage | c.EndOfChunk)
    assert event.violation is not None
    with pytest.raises(LocalProtocolError):
        conn.send(replies.queued("X"))
    conn.send(event.violation)
    assert conn.state in (State.READY, State.NEED_EHLO)


def test_positive_reply_to_engine_error_is_refused() -> None:
    conn = _pending(READY, b"FOO\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(replies.R250_OK)
    conn.send(info.value.reply_hint)
    assert not conn.they_are_waiting_for_reply


def test_reply_without_pending_command_is_refused() -> None:
    conn = _pending(READY, b"")
    with pytest.raises(LocalProtocolError):
        conn.send(replies.R250_OK)


def test_greeting_must_be_220_or_554() -> None:
    conn = ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send(replies.R250_OK)
    conn.send(replies.Reply.of(554, "5.7.1", "No SMTP service here"))
    assert conn.state is State.CLOSED


def test_tls_established_without_starttls_is_refused() -> None:
    conn = _pending(READY, b"")
    with pytest.raises(LocalProtocolError):
        conn.tls_established()


def test_data_after_eof_is_refused() -> None:
    conn = _pending(READY, b"")
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"NOOP\r\n")


def test_421_closes_at_any_time() -> None:
    conn = _pending(IN_RCPT, b"DATA\r\n")
    assert conn.next_event() == c.StartData()
    conn.send(replies.R421_SHUTTING_DOWN)
    assert conn.state is State.CLOSED


def test_eof_mid_transaction_closes() -> None:
    t = run(IN_RCPT + b"DATA\r\npartial", eof=True)
    assert isinstance(t.events[-1], c.ConnectionClosed)
    assert t.messages == []
