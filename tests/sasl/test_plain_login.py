"""PLAIN (RFC 4616) and LOGIN: the RFC 4616 §4 examples, the authzid rule, malformed
messages (→ MALFORMED, 501), the no-initial-response flows, and both client halves.
"""

from __future__ import annotations

import pytest

from postguard.sasl import (
    Challenge,
    Failure,
    FailureKind,
    LoginClient,
    LoginServer,
    NeedPassword,
    PasswordVerdict,
    PlainClient,
    PlainServer,
    SaslAuthenticationError,
    Success,
)

from .exchange import Verifier, run_exchange


def test_rfc4616_example_without_authzid_asks_to_verify_tim() -> None:
    # RFC 4616 §4: "\0tim\0tanstaaftanstaaf"
    step = PlainServer().start(b"\x00tim\x00tanstaaftanstaaf")
    assert step == NeedPassword("tim", None, "tanstaaftanstaaf")


def test_rfc4616_example_kurt_acting_as_ursel_is_authz_denied() -> None:
    # RFC 4616 §4: "Ursel\0Kurt\0xipj3plmq" — Kurt may not act as Ursel here.
    step = PlainServer().start(b"Ursel\x00Kurt\x00xipj3plmq")
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.AUTHZ_DENIED


def test_plain_authzid_equal_to_authcid_is_accepted() -> None:
    step = PlainServer().start(b"tim\x00tim\x00tanstaaftanstaaf")
    assert step == NeedPassword("tim", "tim", "tanstaaftanstaaf")


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (PasswordVerdict("tim@example.org"), Success("tim@example.org")),
        (PasswordVerdict(None), FailureKind.AUTH_FAILED),
    ],
    ids=["verified", "rejected"],
)
def test_plain_outcome_follows_the_password_verdict(
    verdict: PasswordVerdict, expected: object
) -> None:
    server = PlainServer()
    server.start(b"\x00tim\x00tanstaaftanstaaf")
    step = server.resume(verdict)
    if isinstance(expected, FailureKind):
        assert isinstance(step, Failure)
        assert step.kind is expected
    else:
        assert step == expected


MALFORMED_PLAIN = [
    pytest.param(b"", id="empty"),
    pytest.param(b"tim", id="no-nul"),
    pytest.param(b"\x00tim", id="one-nul"),
    pytest.param(b"\x00tim\x00pw\x00", id="three-nuls"),
    pytest.param(b"\x00\x00pw", id="empty-authcid"),
    pytest.param(b"\x00tim\x00", id="empty-password"),
    pytest.param(b"\x00t\xffm\x00pw", id="bad-utf8-authcid"),
    pytest.param(b"\x00tim\x00p\xc3", id="truncated-utf8-password"),
    pytest.param(b"\xc0\x80\x00tim\x00pw", id="overlong-utf8-authzid"),
    pytest.param(b"\x00t\nim\x00pw", id="control-in-authcid"),
    pytest.param(b"\x00" + b"u" * 256 + b"\x00pw", id="authcid-over-255"),
    pytest.param(b"\x00tim\x00" + b"p" * 256, id="password-over-255"),
]


@pytest.mark.parametrize("message", MALFORMED_PLAIN)
def test_malformed_plain_message_is_malformed(message: bytes) -> None:
    step = PlainServer().start(message)
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


def test_plain_password_of_255_octets_is_accepted() -> None:
    step = PlainServer().start(b"\x00tim\x00" + b"p" * 255)
    assert isinstance(step, NeedPassword)


def test_plain_without_initial_response_sends_an_empty_challenge() -> None:
    server = PlainServer()
    assert server.start(None) == Challenge(b"")
    assert isinstance(server.respond(b"\x00tim\x00tanstaaftanstaaf"), NeedPassword)


def test_plain_empty_initial_response_is_malformed() -> None:
    step = PlainServer().start(b"")
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


def test_plain_client_builds_the_rfc4616_message() -> None:
    assert PlainClient("tim", "tanstaaftanstaaf").initial_response() == (
        b"\x00tim\x00tanstaaftanstaaf"
    )
    assert PlainClient("Kurt", "xipj3plmq", authzid="Ursel").initial_response() == (
        b"Ursel\x00Kurt\x00xipj3plmq"
    )


def test_plain_client_answers_the_empty_challenge_when_it_sent_no_initial_response() -> None:
    outcome, transcript = run_exchange(
        PlainClient("alice", "correct horse"), PlainServer(), Verifier(), send_initial=False
    )
    assert outcome == Success("alice")
    assert transcript == [("S", b""), ("C", b"\x00alice\x00correct horse")]


def test_plain_client_refuses_a_second_challenge() -> None:
    client = PlainClient("tim", "pw")
    client.initial_response()
    with pytest.raises(SaslAuthenticationError):
        client.respond(b"")


@pytest.mark.parametrize(
    ("username", "password"),
    [("", "pw"), ("tim", ""), ("t\x00m", "pw"), ("tim", "p\x00w"), ("u" * 256, "pw")],
    ids=["empty-user", "empty-password", "nul-user", "nul-password", "long-user"],
)
def test_plain_client_rejects_fields_plain_cannot_carry(username: str, password: str) -> None:
    with pytest.raises(ValueError):
        PlainClient(username, password)


def test_plain_client_error_does_not_show_the_password() -> None:
    with pytest.raises(ValueError) as excinfo:
        PlainClient("tim", "secret\x00pw")
    assert "secret" not in str(excinfo.value)


# --- LOGIN ----------------------------------------------------------------------------------


def test_login_server_asks_username_then_password_with_the_exact_strings() -> None:
    server = LoginServer()
    assert server.start(None) == Challenge(b"Username:")
    assert server.respond(b"tim") == Challenge(b"Password:")
    assert server.respond(b"tanstaaftanstaaf") == NeedPassword("tim", None, "tanstaaftanstaaf")


def test_login_initial_response_is_taken_as_the_username() -> None:
    server = LoginServer()
    assert server.start(b"tim") == Challenge(b"Password:")
    assert isinstance(server.respond(b"pw"), NeedPassword)


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param((None, b""), id="empty-username"),
        pytest.param((None, b"t\xffm"), id="bad-utf8-username"),
        pytest.param((None, b"tim", b""), id="empty-password"),
        pytest.param((None, b"tim", b"p\x00w"), id="nul-in-password"),
        pytest.param((b"",), id="empty-initial-response"),
    ],
)
def test_malformed_login_field_is_malformed(messages: tuple[bytes | None, ...]) -> None:
    server = LoginServer()
    step = server.start(messages[0])
    for message in messages[1:]:
        assert message is not None
        step = server.respond(message)
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


def test_login_client_answers_name_then_password_then_refuses_more() -> None:
    client = LoginClient("tim", "pw")
    assert client.initial_response() is None
    assert client.respond(b"Username:") == b"tim"
    assert client.respond(b"Password:") == b"pw"
    with pytest.raises(SaslAuthenticationError):
        client.respond(b"Again:")
