"""Table tests of the server engine's AUTH handling (RFC 4954 §4), without a real session.

Covers what the engine owns in an AUTH exchange: parsing ``AUTH mechanism
[initial-response]`` (base64, ``=`` for the empty response, the mechanism upper-cased and
handed on even when unknown: whether it is offered is the session's call); the 334
challenge loop and the SASL receiver's lines (empty line, ``=``, ``*`` cancel → 501 5.0.0,
bad base64 or non-ASCII → 501 5.5.2, over 12288 octets → 500 5.5.6); order (AUTH before
EHLO, in a transaction, after a successful AUTH → 503 5.5.1; before STARTTLS on a
``require_tls`` engine → 530 5.7.0); the STARTTLS reset of the authenticated flag
(RFC 3207 §4.2); which replies are legal (``LocalProtocolError`` otherwise); that
``Auth``/``AuthResponse`` never show their payload in ``repr``; and MAIL's ``AUTH=``
parameter (RFC 4954 §5), decoded from xtext when ``options.auth``.

The session is :class:`helpers.engine_pair.Dialogue`'s permissive one, with a scripted
:data:`SASL` policy: AUTH with the initial response ``ok`` is 235, with ``bad`` 535, any
other AUTH gets a 334 challenge; a response ``again`` gets another challenge, ``ok`` 235,
anything else 535.
"""

from __future__ import annotations

import base64

import pytest

from helpers.engine_pair import EHLO, MAIL, RCPT, Dialogue, Policy, run
from postguard.protocol import (
    LocalProtocolError,
    ServerOptions,
    State,
    replies,
)
from postguard.protocol import commands as c
from postguard.protocol.receivers import MAX_AUTH_LINE_OCTETS
from postguard.protocol.replies import Reply

AUTH = ServerOptions(auth=True)
AUTH_REQUIRE_TLS = ServerOptions(auth=True, require_tls=True)
CHALLENGE = replies.auth_challenge(b"challenge")
R535 = replies.R535_AUTH_FAILED


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


OK = b64(b"ok")  # b"b2s="
AGAIN = b64(b"again")  # b"YWdhaW4="
BAD = b64(b"bad")


def _answer_auth(event: c.Command, dlg: Dialogue) -> Reply:
    assert isinstance(event, c.Auth)
    if event.initial_response == b"ok":
        return replies.R235_AUTHENTICATED
    if event.initial_response == b"bad":
        return R535
    return CHALLENGE


def _answer_response(event: c.Command, dlg: Dialogue) -> Reply:
    assert isinstance(event, c.AuthResponse)
    if event.data == b"again":
        return CHALLENGE
    if event.data == b"ok":
        return replies.R235_AUTHENTICATED
    return R535


SASL: Policy = {c.Auth: _answer_auth, c.AuthResponse: _answer_response}

# ------------------------------------------------------------------ set-ups

FRESH = b""
READY = EHLO
IN_MAIL = EHLO + MAIL
IN_RCPT = EHLO + MAIL + RCPT
IN_BDAT = EHLO + MAIL + RCPT + b"BDAT 3\r\nabc"
AUTHENTICATED = EHLO + b"AUTH PLAIN " + OK + b"\r\n"
IN_EXCHANGE = EHLO + b"AUTH PLAIN\r\n"  # one 334 sent: the next line is a SASL response
FAILED_ONCE = EHLO + b"AUTH PLAIN " + BAD + b"\r\n"


def line(octets: int, fill: bytes = b"A") -> bytes:
    """A line of exactly ``octets`` octets, CRLF included."""
    return fill * (octets - 2) + b"\r\n"


def dialogue_after(setup: bytes, options: ServerOptions = AUTH) -> Dialogue:
    dlg = Dialogue(options, policy=SASL)
    dlg.feed(setup)
    assert not dlg.transcript.errors, f"set-up failed: {dlg.transcript.codes}"
    return dlg


def row(
    setup: bytes,
    data: bytes | str,
    expect: list[str],
    *,
    id: str,
    state: State = State.READY,
    authenticated: bool | None = None,
    options: ServerOptions = AUTH,
) -> object:
    raw = data.encode() if isinstance(data, str) else data
    return pytest.param(setup, raw, expect, state, authenticated, options, id=id)


PLAIN_OK = b"AUTH PLAIN " + OK + b"\r\n"
PLAIN_BAD = b"AUTH PLAIN " + BAD + b"\r\n"
LONGEST = line(MAX_AUTH_LINE_OCTETS, b"A")[:-4] + b"==\r\n"  # 12288 octets of valid base64
TOO_LONG = line(MAX_AUTH_LINE_OCTETS + 1)
MUCH_TOO_LONG = line(MAX_AUTH_LINE_OCTETS * 3)
A, NEED_EHLO = State.AUTH, State.NEED_EHLO

ROWS = [
    # --- AUTH and its initial response
    row(READY, PLAIN_OK, ["235 2.7.0"], id="initial-response", authenticated=True),
    row(READY, "AUTH PLAIN\r\n", ["334"], id="no-initial-response", state=A),
    row(READY, "AUTH PLAIN =\r\n", ["334"], id="empty-initial-response", state=A),
    row(READY, PLAIN_BAD, ["535 5.7.8"], id="initial-response-refused", authenticated=False),
    row(READY, PLAIN_OK.lower(), ["235 2.7.0"], id="lowercase-verb-and-mechanism"),
    row(READY, "AUTH PLAIN not*base64\r\n", ["501 5.5.2"], id="initial-bad-alphabet"),
    row(READY, "AUTH PLAIN b2s\r\n", ["501 5.5.2"], id="initial-missing-padding"),
    row(READY, "AUTH PLAIN b2s==\r\n", ["501 5.5.2"], id="initial-excess-padding"),
    row(READY, "AUTH PLAIN *\r\n", ["501 5.5.2"], id="star-initial-is-a-base64-error"),
    row(READY, "AUTH\r\n", ["501 5.5.2"], id="no-mechanism"),
    row(READY, "AUTH FOOBAR\r\n", ["334"], id="unknown-mechanism-reaches-session", state=A),
    # --- the 334 loop and the SASL line receiver
    row(IN_EXCHANGE, OK + b"\r\n", ["235 2.7.0"], id="response-accepted", authenticated=True),
    row(
        IN_EXCHANGE,
        AGAIN + b"\r\n" + AGAIN + b"\r\n" + OK + b"\r\n",
        ["334", "334", "235 2.7.0"],
        id="challenge-loop",
    ),
    row(IN_EXCHANGE, BAD + b"\r\n", ["535 5.7.8"], id="response-refused", authenticated=False),
    row(IN_EXCHANGE, "\r\n", ["535 5.7.8"], id="empty-line-is-empty-response"),
    row(IN_EXCHANGE, "=\r\n", ["535 5.7.8"], id="equals-line-is-empty-response"),
    row(IN_EXCHANGE, "*\r\n", ["501 5.0.0"], id="star-cancels", authenticated=False),
    row(IN_EXCHANGE, "*\r\nNOOP\r\n", ["501 5.0.0", "250 2.0.0"], id="star-then-commands"),
    row(IN_EXCHANGE, "not*base64\r\n", ["501 5.5.2"], id="response-bad-base64"),
    row(IN_EXCHANGE, "b2s\r\n", ["501 5.5.2"], id="response-missing-padding"),
    row(IN_EXCHANGE, "b2s\r\nNOOP\r\n", ["501 5.5.2", "250 2.0.0"], id="bad-base64-ends-it"),
    row(IN_EXCHANGE, "b2s=\xe9\r\n", ["501 5.5.2"], id="response-not-ascii"),
    # "NOOP" is valid base64: inside an exchange every line is a response.
    row(IN_EXCHANGE, "NOOP\r\n", ["535 5.7.8"], id="command-inside-exchange-is-a-response"),
    row(IN_EXCHANGE, LONGEST, ["535 5.7.8"], id="response-of-12288-octets"),
    row(IN_EXCHANGE, TOO_LONG, ["500 5.5.6"], id="response-of-12289-octets", authenticated=False),
    row(
        IN_EXCHANGE,
        MUCH_TOO_LONG + b"NOOP\r\n",
        ["500 5.5.6", "250 2.0.0"],
        id="long-response-skipped-whole",
    ),
    # --- order
    row(FRESH, PLAIN_OK, ["503 5.5.1"], id="before-ehlo", state=NEED_EHLO),
    row(IN_MAIL, PLAIN_OK, ["503 5.5.1"], id="in-mail", state=State.MAIL),
    row(IN_RCPT, "AUTH PLAIN\r\n", ["503 5.5.1"], id="in-rcpt", state=State.RCPT),
    row(IN_BDAT, "AUTH PLAIN\r\n", ["503 5.5.1"], id="between-bdat-chunks", state=State.BDAT_WAIT),
    row(AUTHENTICATED, PLAIN_OK, ["503 5.5.1"], id="second-auth-after-235", authenticated=True),
    row(AUTHENTICATED, "AUTH LOGIN\r\n", ["503 5.5.1"], id="other-mechanism-after-235"),
    row(FAILED_ONCE, PLAIN_OK, ["235 2.7.0"], id="auth-again-after-535"),
    row(AUTHENTICATED, MAIL, ["250 2.1.0"], id="mail-after-auth", state=State.MAIL),
    row(
        READY,
        "AUTH PLAIN\r\n",
        ["530 5.7.0"],
        id="before-starttls-when-tls-required",
        options=AUTH_REQUIRE_TLS,
    ),
]


@pytest.mark.parametrize(("setup", "data", "expect", "state", "authenticated", "options"), ROWS)
def test_auth_table(
    setup: bytes,
    data: bytes,
    expect: list[str],
    state: State,
    authenticated: bool | None,
    options: ServerOptions,
) -> None:
    dlg = dialogue_after(setup, options)
    before = len(dlg.transcript.replies)
    dlg.feed(data)
    assert dlg.transcript.codes[before:] == expect
    assert dlg.conn.state is state
    if authenticated is not None:
        assert dlg.conn.authenticated is authenticated


@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "bytewise"])
def test_pipelined_auth_exchange_does_not_depend_on_how_bytes_are_split(bytewise: bool) -> None:
    data = EHLO + b"AUTH LOGIN\r\n" + AGAIN + b"\r\n" + OK + b"\r\n" + MAIL + RCPT
    t = run(data, options=AUTH, policy=SASL, bytewise=bytewise)
    assert t.codes == ["250", "334", "334", "235 2.7.0", "250 2.1.0", "250 2.1.5"]
    assert [type(e) for e in t.commands] == [
        c.Ehlo, c.Auth, c.AuthResponse, c.AuthResponse, c.MailFrom, c.RcptTo
    ]  # fmt: skip


# ---------------------------------------------------------------- events


@pytest.mark.parametrize(
    ("command", "mechanism", "initial_response"),
    [
        (b"AUTH PLAIN " + OK, "PLAIN", b"ok"),
        (b"AUTH PLAIN =", "PLAIN", b""),
        (b"AUTH PLAIN", "PLAIN", None),
        (b"AUTH scram-sha-256 " + b64(b"n,,n=user,r=abc"), "SCRAM-SHA-256", b"n,,n=user,r=abc"),
        (b"AUTH  LOGIN   " + OK + b"  ", "LOGIN", b"ok"),
        (b"AUTH X-UNKNOWN-MECH", "X-UNKNOWN-MECH", None),
    ],
    ids=["initial", "equals-is-empty", "none", "lowercase-mechanism", "extra-spaces", "unknown"],
)
def test_auth_event_carries_the_mechanism_and_decoded_initial_response(
    command: bytes, mechanism: str, initial_response: bytes | None
) -> None:
    t = run(EHLO + command + b"\r\n", options=AUTH, policy=SASL)
    [auth] = t.of_type(c.Auth)
    assert (auth.mechanism, auth.initial_response) == (mechanism, initial_response)


def test_each_response_line_is_one_decoded_auth_response_event() -> None:
    t = run(IN_EXCHANGE + AGAIN + b"\r\n\r\n", options=AUTH, policy=SASL)
    assert [e.data for e in t.of_type(c.AuthResponse)] == [b"again", b""]


def test_refused_auth_lines_never_reach_the_session() -> None:
    t = run(READY + b"AUTH PLAIN !!\r\n" + IN_MAIL[len(READY) :] + b"AUTH PLAIN\r\n", options=AUTH)
    assert t.of_type(c.Auth) == []
    assert str(t.errors[0].reply_hint).startswith("501 5.5.2")


def test_eof_inside_an_exchange_closes_the_connection() -> None:
    t = run(IN_EXCHANGE, options=AUTH, policy=SASL, eof=True)
    assert isinstance(t.events[-1], c.ConnectionClosed)


def test_421_during_an_exchange_closes_the_connection() -> None:
    policy: Policy = {**SASL, c.AuthResponse: replies.R421_AUTH_BLOCKED}
    dlg = Dialogue(AUTH, policy=policy)
    dlg.feed(IN_EXCHANGE + BAD + b"\r\nNOOP\r\n")
    assert dlg.transcript.codes[-1] == "421 4.7.0"
    assert dlg.conn.state is State.CLOSED
    assert not any(isinstance(e, c.Noop) for e in dlg.transcript.events)


def test_auth_command_line_over_12288_octets_is_500_5_5_6() -> None:
    command = b"AUTH PLAIN " + b"A" * (MAX_AUTH_LINE_OCTETS - len(b"AUTH PLAIN ") - 1) + b"\r\n"
    assert len(command) == MAX_AUTH_LINE_OCTETS + 1
    t = run(READY + command, options=AUTH, policy=SASL)
    assert t.codes[1:] == ["500 5.5.6"]


def test_auth_command_line_of_12288_octets_is_framed_and_decoded() -> None:
    payload = b"A" * (MAX_AUTH_LINE_OCTETS - len(b"AUTH PLAIN ") - 2)
    payload = payload[: len(payload) - len(payload) % 4]  # valid base64
    t = run(READY + b"AUTH PLAIN " + payload + b"\r\n", options=AUTH, policy=SASL)
    [auth] = t.of_type(c.Auth)
    assert auth.initial_response == base64.b64decode(payload)


def test_auth_command_line_over_12288_octets_is_refused_with_500() -> None:
    command = b"AUTH PLAIN " + b"A" * MAX_AUTH_LINE_OCTETS + b"\r\nNOOP\r\n"
    t = run(READY + command, options=AUTH, policy=SASL)
    assert [code[:3] for code in t.codes[1:]] == ["500", "250"]
    assert t.of_type(c.Auth) == []


# ------------------------------------------------------------- STARTTLS


def test_starttls_resets_the_authenticated_flag() -> None:
    dlg = dialogue_after(AUTHENTICATED)
    assert dlg.conn.authenticated
    dlg.feed(b"STARTTLS\r\n")  # the helper completes the handshake at once
    assert dlg.conn.state is State.NEED_EHLO
    assert not dlg.conn.authenticated  # RFC 3207 §4.2: forget everything from before TLS
    before = len(dlg.transcript.replies)
    dlg.feed(EHLO + b"AUTH PLAIN " + OK + b"\r\n")
    assert dlg.transcript.codes[before:] == ["250", "235 2.7.0"]  # AUTH is allowed again
    assert dlg.conn.authenticated


def test_auth_after_starttls_on_a_require_tls_engine() -> None:
    # Two writes: bytes pipelined behind STARTTLS are discarded (CVE-2011-0411).
    t = run([READY + b"STARTTLS\r\n", EHLO + PLAIN_OK], options=AUTH_REQUIRE_TLS)
    assert t.codes == ["250", "220 2.0.0", "250", "235 2.7.0"]


# ------------------------------------------------------- which replies are legal


@pytest.mark.parametrize(
    ("setup", "data", "reply"),
    [
        (READY, b"AUTH PLAIN\r\n", replies.R250_OK),
        (READY, b"AUTH PLAIN\r\n", replies.R220_READY_TO_START_TLS),
        (READY, b"AUTH PLAIN\r\n", replies.R354_START_DATA),
        (IN_EXCHANGE, OK + b"\r\n", replies.R250_OK),
    ],
    ids=["250-to-auth", "220-to-auth", "354-to-auth", "250-to-auth-response"],
)
def test_engine_refuses_replies_that_are_not_legal_in_an_exchange(
    setup: bytes, data: bytes, reply: Reply
) -> None:
    conn = dialogue_after(setup).conn
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, c.Auth | c.AuthResponse)
    with pytest.raises(LocalProtocolError):
        conn.send(reply)


@pytest.mark.parametrize(
    "reply",
    [replies.R454_AUTH_TEMPORARY, replies.R504_UNKNOWN_MECHANISM, replies.R538_ENCRYPTION_REQUIRED],
    ids=["454", "504", "538"],
)
def test_session_refusals_of_auth_leave_the_engine_ready(reply: Reply) -> None:
    t = run(READY + b"AUTH PLAIN\r\nNOOP\r\n", options=AUTH, policy={c.Auth: reply})
    assert t.codes[1:] == [f"{reply.code} {reply.enhanced}", "250 2.0.0"]


# ----------------------------------------------------------------- secrets


def test_auth_events_do_not_show_their_payload_in_repr() -> None:
    secret = b"\0alice\0hunter2-very-secret"
    assert "hunter2" not in repr(c.Auth("PLAIN", secret))
    assert "hunter2" not in repr(c.AuthResponse(secret))
    assert "PLAIN" in repr(c.Auth("PLAIN", secret))  # the mechanism is not a secret
    t = run(EHLO + b"AUTH PLAIN " + b64(secret) + b"\r\n", options=AUTH, policy=SASL)
    assert all("hunter2" not in repr(e) for e in t.events)


# ------------------------------------------------------------ MAIL AUTH=


@pytest.mark.parametrize(
    ("param", "auth"),
    [
        ("AUTH=<>", "<>"),
        ("AUTH=alice@example.org", "alice@example.org"),
        ("AUTH=alice+2Bx+40example.org", "alice+x@example.org"),
    ],
    ids=["null", "plain-mailbox", "xtext"],
)
def test_mail_auth_parameter_is_decoded_when_auth_is_offered(param: str, auth: str) -> None:
    t = run(
        AUTHENTICATED + f"MAIL FROM:<a@example.org> {param}\r\n".encode(), options=AUTH, policy=SASL
    )
    [mail] = t.of_type(c.MailFrom)
    assert mail.auth == auth
    assert t.last.code == 250


@pytest.mark.parametrize(
    ("options", "param", "expect"),
    [
        (ServerOptions(), "AUTH=<>", "555 5.5.4"),
        (AUTH, "AUTH=a+4", "501 5.5.4"),
        (AUTH, "AUTH=a+zz", "501 5.5.4"),
    ],
    ids=["not-offered", "truncated-xtext", "bad-hex-xtext"],
)
def test_mail_auth_parameter_refusals(options: ServerOptions, param: str, expect: str) -> None:
    t = run(EHLO + f"MAIL FROM:<a@example.org> {param}\r\n".encode(), options=options)
    assert t.codes[1:] == [expect]
    assert t.of_type(c.MailFrom) == []
