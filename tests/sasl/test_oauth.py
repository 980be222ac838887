"""XOAUTH2 (Google's description) and OAUTHBEARER (RFC 7628): the published examples (RFC 7628
§4.1 and §4.3, the shape of §4.2, Google's initial response and error body), the JSON error
challenge and dummy-response flow, malformed messages, and both client halves.
"""

from __future__ import annotations

import base64

import pytest

from postguard.sasl import (
    Challenge,
    Failure,
    FailureKind,
    NeedTokenValidation,
    OAuthBearerClient,
    OAuthBearerServer,
    SaslAuthenticationError,
    Success,
    TokenVerdict,
    VerifierUnavailable,
    XOAuth2Client,
    XOAuth2Server,
)

# RFC 7628 §4.1 (the initial client response, base64 as printed in the RFC)
RFC7628_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
RFC7628_INITIAL_B64 = (
    b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVy"
    b"IHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC7628_INITIAL = base64.b64decode(RFC7628_INITIAL_B64)
# RFC 7628 §4.3: the server's error challenge, then the client's "AQ==" (%x01).
RFC7628_ERROR = {
    "status": "invalid_token",
    "scope": "example_scope",
    "openid-configuration": "https://example.com/.well-known/openid-configuration",
}
RFC7628_ERROR_B64 = (
    b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3Vy"
    b"YXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0="
)
# RFC 7628 §4.2 uses OAuth 1.0a credentials (mechanism OAUTH10A); same framing, values
# illustrative. postguard offers no OAUTH10A, and OAUTHBEARER must not take them.
RFC7628_OAUTH10A_SHAPE = (
    b'n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=OAuth realm="Example",'
    b'oauth_consumer_key="9djdj82h48djs9d2",oauth_token="kkk9d7dh3k39sjv7k83xxx",'
    b'oauth_signature_method="HMAC-SHA1",oauth_timestamp="137131201",oauth_nonce="7d8f3e4a",'
    b'oauth_signature="Tm9jZXJhZ2UK"\x01\x01'
)
# Google's XOAUTH2 page: the initial client response and an error body.
GOOGLE_TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
GOOGLE_INITIAL_B64 = (
    b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
    b"YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
)
GOOGLE_ERROR_B64 = (
    b"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0cHM6Ly9t"
    b"YWlsLmdvb2dsZS5jb20vIn0K"
)


def test_rfc7628_4_1_initial_response_decodes_to_the_documented_fields() -> None:
    assert RFC7628_INITIAL == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )


def test_oauthbearer_server_parses_rfc7628_4_1_and_succeeds() -> None:
    server = OAuthBearerServer()
    step = server.start(RFC7628_INITIAL)
    assert step == NeedTokenValidation("user@example.com", RFC7628_TOKEN, "server.example.com", 143)
    assert server.resume(TokenVerdict("user@example.com")) == Success("user@example.com")


def test_oauthbearer_client_builds_rfc7628_4_1() -> None:
    client = OAuthBearerClient(
        "user@example.com", RFC7628_TOKEN, host="server.example.com", port=143
    )
    assert base64.b64encode(client.initial_response()) == RFC7628_INITIAL_B64


def test_oauthbearer_failure_sends_the_rfc7628_4_3_error_and_fails_after_x01() -> None:
    server = OAuthBearerServer()
    server.start(RFC7628_INITIAL)
    step = server.resume(TokenVerdict(None, RFC7628_ERROR))
    assert isinstance(step, Challenge)
    assert base64.b64encode(step.data) == RFC7628_ERROR_B64
    client = OAuthBearerClient("user@example.com", RFC7628_TOKEN)
    client.initial_response()
    dummy = client.respond(step.data)
    assert base64.b64encode(dummy) == b"AQ=="
    assert client.server_error == RFC7628_ERROR
    final = server.respond(dummy)
    assert final == Failure("token rejected", FailureKind.AUTH_FAILED)


def test_oauthbearer_default_error_is_invalid_token_bearer() -> None:
    server = OAuthBearerServer()
    server.start(RFC7628_INITIAL)
    step = server.resume(TokenVerdict(None))
    assert step == Challenge(b'{"status":"invalid_token","schemes":"bearer"}')


def test_oauth10a_credentials_get_the_bearer_only_error_challenge() -> None:
    server = OAuthBearerServer()
    step = server.start(RFC7628_OAUTH10A_SHAPE)
    assert step == Challenge(b'{"status":"invalid_request","schemes":"bearer"}')
    final = server.respond(b"\x01")
    assert isinstance(final, Failure)
    assert final.kind is FailureKind.AUTH_FAILED


def test_oauthbearer_without_authzid_host_or_port() -> None:
    step = OAuthBearerServer().start(b"n,,\x01auth=Bearer abc\x01\x01")
    assert step == NeedTokenValidation(None, "abc", None, None)


def test_oauthbearer_ignores_unknown_keys_and_accepts_lowercase_scheme() -> None:
    step = OAuthBearerServer().start(b"y,,\x01xtra=1 2\x01auth=bearer abc\x01\x01")
    assert step == NeedTokenValidation(None, "abc", None, None)


MALFORMED_OAUTHBEARER = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x01", id="bare-kvsep"),
    pytest.param(b"n,,auth=Bearer abc\x01\x01", id="no-leading-kvsep"),
    pytest.param(b"n,,\x01auth=Bearer abc\x01", id="one-trailing-kvsep"),
    pytest.param(b"n,,\x01host=h\x01\x01", id="no-auth"),
    pytest.param(b"n,,\x01auth=Bearer abc\x01auth=Bearer abc\x01\x01", id="repeated-key"),
    pytest.param(b"n,,\x01auth=Bearer \x01\x01", id="empty-token"),
    pytest.param(b"n,,\x01auth=Bearer a b\x01\x01", id="token-with-space"),
    pytest.param(b"n,,\x01port=http\x01auth=Bearer abc\x01\x01", id="port-not-number"),
    pytest.param(b"n,,\x01port=70000\x01auth=Bearer abc\x01\x01", id="port-out-of-range"),
    pytest.param(b"n,,\x01host=a b\x01auth=Bearer abc\x01\x01", id="host-with-space"),
    pytest.param(b"n,,\x01k1=v\x01auth=Bearer abc\x01\x01", id="key-not-alpha"),
    pytest.param(b"n,,\x01auth=Bearer abc\x00\x01\x01", id="nul-in-value"),
    pytest.param(b"p=tls-exporter,,\x01auth=Bearer abc\x01\x01", id="channel-binding"),
    pytest.param(b"x,,\x01auth=Bearer abc\x01\x01", id="bad-gs2-flag"),
    pytest.param(b"n,a=u=ZZ,\x01auth=Bearer abc\x01\x01", id="bad-authzid-escape"),
    pytest.param(b"n,a=\xff,\x01auth=Bearer abc\x01\x01", id="bad-utf8"),
]


@pytest.mark.parametrize("message", MALFORMED_OAUTHBEARER)
def test_malformed_oauthbearer_message_is_malformed(message: bytes) -> None:
    step = OAuthBearerServer().start(message)
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


# --- XOAUTH2 ---------------------------------------------------------------------------------


def test_xoauth2_client_builds_googles_example() -> None:
    client = XOAuth2Client("someuser@example.com", GOOGLE_TOKEN)
    assert base64.b64encode(client.initial_response()) == GOOGLE_INITIAL_B64


def test_xoauth2_server_parses_googles_example() -> None:
    step = XOAuth2Server().start(base64.b64decode(GOOGLE_INITIAL_B64))
    assert step == NeedTokenValidation("someuser@example.com", GOOGLE_TOKEN)


def test_xoauth2_failure_sends_json_error_and_fails_after_empty_response() -> None:
    google_error = {"status": "401", "schemes": "bearer mac", "scope": "https://mail.google.com/"}
    server = XOAuth2Server()
    server.start(base64.b64decode(GOOGLE_INITIAL_B64))
    step = server.resume(TokenVerdict(None, google_error))
    assert isinstance(step, Challenge)
    # Google's example body ends with a newline; ours is the same JSON without it.
    assert step.data == base64.b64decode(GOOGLE_ERROR_B64).rstrip(b"\n")
    client = XOAuth2Client("someuser@example.com", GOOGLE_TOKEN)
    client.initial_response()
    assert client.respond(step.data) == b""
    assert client.server_error == google_error
    assert server.respond(b"") == Failure("token rejected", FailureKind.AUTH_FAILED)


def test_xoauth2_default_error_follows_google() -> None:
    server = XOAuth2Server()
    server.start(b"user=u\x01auth=Bearer abc\x01\x01")
    assert server.resume(TokenVerdict(None)) == Challenge(b'{"status":"401","schemes":"bearer"}')


MALFORMED_XOAUTH2 = [
    pytest.param(b"", id="empty"),
    pytest.param(b"user=u\x01auth=Bearer abc\x01", id="one-trailing-soh"),
    pytest.param(b"auth=Bearer abc\x01\x01", id="no-user"),
    pytest.param(b"user=u\x01\x01", id="no-auth"),
    pytest.param(b"user=\x01auth=Bearer abc\x01\x01", id="empty-user"),
    pytest.param(b"user=u\xff\x01auth=Bearer abc\x01\x01", id="bad-utf8-user"),
    pytest.param(b"user=u\x01user=v\x01auth=Bearer abc\x01\x01", id="repeated-key"),
    pytest.param(b"user=u\x01auth=Bearer a\xffc\x01\x01", id="non-ascii-auth"),
    pytest.param(b"user=u\x01auth=Bearer\x01\x01", id="no-token"),
    pytest.param(b"user=u\x01junk\x01auth=Bearer abc\x01\x01", id="pair-without-equals"),
]


@pytest.mark.parametrize("message", MALFORMED_XOAUTH2)
def test_malformed_xoauth2_message_is_malformed(message: bytes) -> None:
    step = XOAuth2Server().start(message)
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


@pytest.mark.parametrize("server_cls", [XOAuth2Server, OAuthBearerServer])
def test_token_server_without_initial_response_sends_empty_challenge(
    server_cls: type[XOAuth2Server] | type[OAuthBearerServer],
) -> None:
    assert server_cls().start(None) == Challenge(b"")


def test_token_validator_outage_is_temporary() -> None:
    server = XOAuth2Server()
    server.start(b"user=u\x01auth=Bearer abc\x01\x01")
    step = server.resume(VerifierUnavailable("introspection endpoint down"))
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.TEMPORARY


def test_token_verdict_cannot_be_success_and_error() -> None:
    with pytest.raises(ValueError):
        TokenVerdict("alice", {"status": "invalid_token"})


@pytest.mark.parametrize(
    "make",
    [
        lambda: XOAuth2Client("u", "bad token"),
        lambda: XOAuth2Client("u\x01", "abc"),
        lambda: OAuthBearerClient("u", "abc", host="a b"),
        lambda: OAuthBearerClient("u", "abc", port=70000),
        lambda: OAuthBearerClient("u", ""),
    ],
    ids=["token-space", "user-soh", "host-space", "port-range", "empty-token"],
)
def test_token_clients_refuse_values_the_framing_cannot_carry(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_token_client_refuses_a_challenge_after_the_error() -> None:
    client = OAuthBearerClient("u", "abc")
    client.initial_response()
    client.respond(b'{"status":"invalid_token"}')
    with pytest.raises(SaslAuthenticationError):
        client.respond(b"{}")


def test_token_client_keeps_no_error_for_a_non_json_challenge() -> None:
    client = XOAuth2Client("u", "abc")
    client.initial_response()
    assert client.respond(b"not json") == b""
    assert client.server_error is None


def test_xoauth2_with_another_scheme_gets_the_bearer_only_error_challenge() -> None:
    server = XOAuth2Server()
    step = server.start(b'user=u\x01auth=OAuth realm="x"\x01\x01')
    assert step == Challenge(b'{"status":"invalid_request","schemes":"bearer"}')
    assert isinstance(server.respond(b""), Failure)
