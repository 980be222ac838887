"""CRAM-MD5 (RFC 2195): the §2 example both ways, the unknown-user path, malformed responses,
and the refusal of an initial response (RFC 4954 §4 → 501).
"""

from __future__ import annotations

import base64

import pytest

from postguard.sasl import (
    Challenge,
    CramLookup,
    CramMd5Client,
    CramMd5Server,
    Failure,
    FailureKind,
    NeedCramSecret,
    SaslAuthenticationError,
    Success,
)

# RFC 2195 §2
RFC_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC_CHALLENGE_B64 = b"PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
RFC_SECRET = "tanstaaftanstaaf"
RFC_RESPONSE = b"tim b913a602c7eda7a495b4e6e7334d3890"
RFC_RESPONSE_B64 = b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"


def rfc_server() -> CramMd5Server:
    return CramMd5Server(nonce="1896", timestamp=697170952, hostname="postoffice.reston.mci.net")


def test_server_challenge_is_the_rfc2195_example() -> None:
    step = rfc_server().start(None)
    assert step == Challenge(RFC_CHALLENGE)
    assert base64.b64encode(step.data) == RFC_CHALLENGE_B64


def test_client_computes_the_rfc2195_response() -> None:
    client = CramMd5Client("tim", RFC_SECRET)
    assert client.initial_response() is None
    response = client.respond(RFC_CHALLENGE)
    assert response == RFC_RESPONSE
    assert base64.b64encode(response) == RFC_RESPONSE_B64


def test_server_accepts_the_rfc2195_response_with_the_right_secret() -> None:
    server = rfc_server()
    server.start(None)
    assert server.respond(RFC_RESPONSE) == NeedCramSecret("tim")
    assert server.resume(CramLookup(RFC_SECRET, "tim")) == Success("tim")


def test_uppercase_hex_digest_is_accepted() -> None:
    server = rfc_server()
    server.start(None)
    server.respond(RFC_RESPONSE.upper().replace(b"TIM", b"tim"))
    assert server.resume(CramLookup(RFC_SECRET, "tim")) == Success("tim")


@pytest.mark.parametrize(
    "lookup",
    [CramLookup("wrong secret", "tim"), CramLookup(None, None)],
    ids=["wrong-secret", "unknown-user"],
)
def test_wrong_secret_and_unknown_user_fail_alike(lookup: CramLookup) -> None:
    server = rfc_server()
    server.start(None)
    server.respond(RFC_RESPONSE)
    step = server.resume(lookup)
    assert step == Failure("invalid credentials", FailureKind.AUTH_FAILED)


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"timb913a602c7eda7a495b4e6e7334d3890", id="no-space"),
        pytest.param(b"tim b913a602c7eda7a495b4e6e7334d389", id="short-digest"),
        pytest.param(b"tim b913a602c7eda7a495b4e6e7334d3890a", id="long-digest"),
        pytest.param(b"tim z913a602c7eda7a495b4e6e7334d3890", id="non-hex-digest"),
        pytest.param(b" b913a602c7eda7a495b4e6e7334d3890", id="empty-user"),
        pytest.param(b"t\xffm b913a602c7eda7a495b4e6e7334d3890", id="bad-utf8-user"),
        pytest.param(b"", id="empty"),
    ],
)
def test_malformed_response_is_malformed(response: bytes) -> None:
    server = rfc_server()
    server.start(None)
    step = server.respond(response)
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


@pytest.mark.parametrize("initial", [b"", b"tim"], ids=["empty", "data"])
def test_initial_response_is_malformed(initial: bytes) -> None:
    step = rfc_server().start(initial)
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


@pytest.mark.parametrize(
    ("nonce", "timestamp", "hostname"),
    [("a b", 1, "h"), ("1", -1, "h"), ("1", 1, "h>x"), ("", 1, "h")],
    ids=["space-in-nonce", "negative-time", "bad-host", "empty-nonce"],
)
def test_server_refuses_challenge_parts_that_are_not_a_msg_id(
    nonce: str, timestamp: int, hostname: str
) -> None:
    with pytest.raises(ValueError):
        CramMd5Server(nonce=nonce, timestamp=timestamp, hostname=hostname)


def test_client_refuses_a_second_challenge() -> None:
    client = CramMd5Client("tim", RFC_SECRET)
    client.respond(RFC_CHALLENGE)
    with pytest.raises(SaslAuthenticationError):
        client.respond(RFC_CHALLENGE)
