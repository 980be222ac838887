"""SCRAM-SHA-256 and -PLUS (RFC 5802, 7677, 9266): the RFC 7677 §3 exchange reproduced byte
for byte by both halves; unknown users indistinguishable until the end; malformed messages,
wrong nonces, tampered proofs and channel-binding mismatches; downgrade protection; the
client's checks on a hostile server; ``scram_keys`` and SASLprep of names and passwords.
"""

from __future__ import annotations

import base64
import re

import pytest

from postguard.sasl import (
    Challenge,
    Failure,
    FailureKind,
    NeedScramCredentials,
    SaslAuthenticationError,
    ScramClient,
    ScramCredentials,
    ScramLookup,
    ScramServer,
    Success,
    scram_keys,
)

from .exchange import EXPORTER, MOCK_SEED, Verifier, run_exchange

# RFC 7677 §3
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
NONCE_PREFIX = CLIENT_FINAL[: CLIENT_FINAL.index(b",p=")].decode()


def rfc_credentials() -> ScramCredentials:
    stored, server = scram_keys("pencil", RFC_SALT, 4096)
    return ScramCredentials(RFC_SALT, 4096, stored, server, "user")


def server_at_client_final(**kwargs: object) -> ScramServer:
    """A server that has sent the RFC 7677 server-first and waits for the client-final."""
    server = ScramServer(nonce=SERVER_NONCE, mock_seed=MOCK_SEED, **kwargs)  # type: ignore[arg-type]
    assert server.start(CLIENT_FIRST) == NeedScramCredentials("user")
    assert server.resume(ScramLookup(rfc_credentials())) == Challenge(SERVER_FIRST)
    return server


def test_server_reproduces_the_rfc7677_exchange() -> None:
    server = server_at_client_final()
    assert server.respond(CLIENT_FINAL) == Challenge(SERVER_FINAL)
    # RFC 4954 §4: no success data in SMTP; the empty answer to v= completes the exchange.
    assert server.respond(b"") == Success("user", None)


def test_client_reproduces_the_rfc7677_exchange() -> None:
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    assert client.name == "SCRAM-SHA-256"
    assert client.initial_response() == CLIENT_FIRST
    assert client.respond(SERVER_FIRST) == CLIENT_FINAL
    assert client.respond(SERVER_FINAL) == b""
    client.verify_final()


def test_client_accepts_the_verifier_as_success_data_too() -> None:
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    client.initial_response()
    client.respond(SERVER_FIRST)
    client.verify_final(SERVER_FINAL)


def test_client_without_initial_response_sends_client_first_after_empty_challenge() -> None:
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    assert client.respond(b"") == CLIENT_FIRST
    assert client.respond(SERVER_FIRST) == CLIENT_FINAL


def test_server_without_initial_response_sends_an_empty_challenge() -> None:
    server = ScramServer(nonce=SERVER_NONCE, mock_seed=MOCK_SEED)
    assert server.start(None) == Challenge(b"")
    assert server.respond(CLIENT_FIRST) == NeedScramCredentials("user")


# --- unknown users ---------------------------------------------------------------------------

_SERVER_FIRST_SHAPE = re.compile(
    rb"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj\)hNlF\$k0,s=[A-Za-z0-9+/]{22}==,i=4096"
)


def _exchange_steps(username: str, seed: bytes = MOCK_SEED) -> list[object]:
    client = ScramClient(username, "not the password", nonce=CLIENT_NONCE)
    server = ScramServer(nonce=SERVER_NONCE, mock_seed=seed)
    verifier = Verifier(passwords={"alice": "correct horse"})
    steps: list[object] = [server.start(client.initial_response())]
    steps.append(server.resume(verifier.answer(steps[-1])))  # type: ignore[arg-type]
    first = steps[-1]
    assert isinstance(first, Challenge)
    steps.append(server.respond(client.respond(first.data)))
    return steps


def test_unknown_user_flow_matches_a_wrong_password_until_the_end() -> None:
    known, unknown = _exchange_steps("alice"), _exchange_steps("mallory")
    assert [type(s) for s in known] == [type(s) for s in unknown]
    for steps in (known, unknown):
        assert isinstance(steps[1], Challenge)
        assert _SERVER_FIRST_SHAPE.fullmatch(steps[1].data)
        assert isinstance(steps[2], Failure)
        assert steps[2].kind is FailureKind.AUTH_FAILED


def test_unknown_user_mock_salt_is_stable_per_name_and_seed() -> None:
    def salt(name: str, seed: bytes = MOCK_SEED) -> bytes:
        challenge = _exchange_steps(name, seed)[1]
        assert isinstance(challenge, Challenge)
        return challenge.data.split(b",")[1]

    assert salt("mallory") == salt("mallory")
    assert salt("mallory") != salt("trudy")
    assert salt("mallory") != salt("mallory", seed=b"another-seed-of-16+octets")


def test_unknown_user_fails_even_with_a_proof_for_the_mock_keys() -> None:
    # The mock keys are never valid: no password can match them.
    server = ScramServer(nonce=SERVER_NONCE, mock_seed=MOCK_SEED)
    server.start(CLIENT_FIRST)
    server.resume(ScramLookup(None))
    step = server.respond(CLIENT_FINAL)
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.AUTH_FAILED


# --- malformed and forged messages ------------------------------------------------------------

CLIENT_FIRST_CASES = [
    pytest.param(b"", FailureKind.MALFORMED, id="empty"),
    pytest.param(b"x,,n=user,r=abc", FailureKind.MALFORMED, id="bad-cb-flag"),
    pytest.param(b"n,b=x,n=user,r=abc", FailureKind.MALFORMED, id="bad-authzid-attr"),
    pytest.param(b"n,,n=user", FailureKind.MALFORMED, id="no-nonce"),
    pytest.param(b"n,,r=abc,n=user", FailureKind.MALFORMED, id="wrong-order"),
    pytest.param(b"n,,m=ext,n=user,r=abc", FailureKind.MALFORMED, id="mandatory-extension"),
    pytest.param(b"n,,n=us=er,r=abc", FailureKind.MALFORMED, id="bad-saslname-escape"),
    pytest.param(b"n,,n=user,r=a,bc", FailureKind.MALFORMED, id="bad-attribute"),
    pytest.param(b"n,,n=\xff,r=abc", FailureKind.MALFORMED, id="bad-utf8"),
    pytest.param(b"n,,n=,r=abc", FailureKind.MALFORMED, id="empty-username"),
    pytest.param(b"n,,n=user,r=", FailureKind.MALFORMED, id="empty-nonce"),
    pytest.param(b"n,,n=\x07,r=abc", FailureKind.MALFORMED, id="control-in-username"),
    pytest.param("n,,n=\ue000,r=abc".encode(), FailureKind.MALFORMED, id="saslprep-prohibited"),
    pytest.param(b"p=tls-exporter,,n=user,r=abc", FailureKind.MALFORMED, id="p-without-plus"),
    pytest.param(b"n,a=other,n=user,r=abc", FailureKind.AUTHZ_DENIED, id="authzid-other"),
]


@pytest.mark.parametrize(("message", "kind"), CLIENT_FIRST_CASES)
def test_bad_client_first_fails_with_its_kind(message: bytes, kind: FailureKind) -> None:
    step = ScramServer(nonce=SERVER_NONCE, mock_seed=MOCK_SEED).start(message)
    assert isinstance(step, Failure)
    assert step.kind is kind


def test_authzid_equal_to_username_is_accepted() -> None:
    step = ScramServer(nonce=SERVER_NONCE, mock_seed=MOCK_SEED).start(b"n,a=user,n=user,r=abc")
    assert step == NeedScramCredentials("user")


def _tamper_proof(message: bytes) -> bytes:
    head, proof = message.rsplit(b",p=", 1)
    raw = bytearray(base64.b64decode(proof))
    raw[0] ^= 1
    return head + b",p=" + base64.b64encode(bytes(raw))


CLIENT_FINAL_CASES = [
    pytest.param(CLIENT_FINAL.replace(b"hNlF$k0", b"hNlF$k1"), FailureKind.AUTH_FAILED, id="nonce"),
    pytest.param(_tamper_proof(CLIENT_FINAL), FailureKind.AUTH_FAILED, id="tampered-proof"),
    pytest.param(CLIENT_FINAL.replace(b"c=biws", b"c=eSws"), FailureKind.AUTH_FAILED, id="cbind"),
    pytest.param(CLIENT_FINAL.split(b",p=")[0], FailureKind.MALFORMED, id="no-proof"),
    pytest.param(NONCE_PREFIX.encode() + b",p=!!!!", FailureKind.MALFORMED, id="proof-not-b64"),
    pytest.param(NONCE_PREFIX.encode() + b",p=AAAA", FailureKind.MALFORMED, id="proof-short"),
    pytest.param(CLIENT_FINAL.replace(b"c=biws", b"c=b!ws"), FailureKind.MALFORMED, id="c-not-b64"),
    pytest.param(CLIENT_FINAL[len(b"c=biws,") :], FailureKind.MALFORMED, id="no-c"),
    pytest.param(CLIENT_FINAL + b"\xff", FailureKind.MALFORMED, id="bad-utf8"),
    pytest.param(b"", FailureKind.MALFORMED, id="empty"),
]


@pytest.mark.parametrize(("message", "kind"), CLIENT_FINAL_CASES)
def test_bad_client_final_fails_with_its_kind(message: bytes, kind: FailureKind) -> None:
    step = server_at_client_final().respond(message)
    assert isinstance(step, Failure)
    assert step.kind is kind


def test_non_empty_answer_to_the_verifier_is_malformed() -> None:
    server = server_at_client_final()
    server.respond(CLIENT_FINAL)
    step = server.respond(b"v=again")
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


# --- channel binding (RFC 5802 §6, RFC 9266) ------------------------------------------------

OTHER_EXPORTER = bytes(32)


@pytest.mark.parametrize(
    ("client_cb", "plus", "server_cb", "server_plus", "expected"),
    [
        pytest.param(EXPORTER, True, EXPORTER, True, None, id="plus-same-channel"),
        pytest.param(OTHER_EXPORTER, True, EXPORTER, True, FailureKind.AUTH_FAILED, id="mitm"),
        pytest.param(EXPORTER, False, EXPORTER, False, FailureKind.AUTH_FAILED, id="downgrade"),
        pytest.param(EXPORTER, False, None, False, None, id="y-server-cannot-bind"),
        pytest.param(None, False, EXPORTER, False, None, id="n-client-cannot-bind"),
        pytest.param(None, False, EXPORTER, True, FailureKind.MALFORMED, id="plus-without-p"),
        pytest.param(EXPORTER, True, None, False, FailureKind.MALFORMED, id="p-to-plain-scram"),
    ],
)
def test_channel_binding_negotiation(
    client_cb: bytes | None,
    plus: bool,
    server_cb: bytes | None,
    server_plus: bool,
    expected: FailureKind | None,
) -> None:
    client = ScramClient("alice", "correct horse", nonce="cnonce", channel_binding=client_cb)
    if plus:
        client = ScramClient(
            "alice", "correct horse", nonce="cnonce", channel_binding=client_cb, plus=True
        )
    server = ScramServer(
        nonce="snonce", mock_seed=MOCK_SEED, channel_binding=server_cb, plus=server_plus
    )
    outcome, _ = run_exchange(client, server, Verifier())
    if expected is None:
        assert outcome == Success("alice")
    else:
        assert isinstance(outcome, Failure)
        assert outcome.kind is expected


def test_plus_server_refuses_another_channel_binding_type() -> None:
    server = ScramServer(nonce="s", mock_seed=MOCK_SEED, channel_binding=EXPORTER, plus=True)
    step = server.start(b"p=tls-unique,,n=user,r=abc")
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.AUTH_FAILED


def test_plus_client_sends_the_tls_exporter_gs2_header() -> None:
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE, channel_binding=EXPORTER, plus=True)
    assert client.name == "SCRAM-SHA-256-PLUS"
    assert client.initial_response() == b"p=tls-exporter,," + CLIENT_FIRST[3:]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"plus": True},
        {"plus": True, "channel_binding": b"short"},
        {"channel_binding": bytes(12)},
        {"mock_seed": b"short"},
        {"nonce": "has,comma"},
        {"mock_iterations": 1000},
    ],
    ids=["plus-no-cb", "plus-short-cb", "tls-unique-length", "short-seed", "comma", "iterations"],
)
def test_server_constructor_refuses_unsafe_settings(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"nonce": "snonce", "mock_seed": MOCK_SEED, **kwargs}
    with pytest.raises(ValueError):
        ScramServer(**settings)  # type: ignore[arg-type]


# --- the client against a hostile server ------------------------------------------------------

HOSTILE_SERVER_FIRST = [
    pytest.param(b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", id="foreign-nonce"),
    pytest.param(b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", id="no-server-nonce"),
    pytest.param(b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095", id="too-few-iter"),
    pytest.param(b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999", id="too-many"),
    pytest.param(b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1", id="negative-iter"),
    pytest.param(b"r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096", id="empty-salt"),
    pytest.param(b"r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=4096", id="bad-salt"),
    pytest.param(b"m=x,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", id="mext"),
    pytest.param(b"\xff", id="bad-utf8"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("server_first", HOSTILE_SERVER_FIRST)
def test_client_refuses_a_bad_server_first(server_first: bytes) -> None:
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    client.initial_response()
    with pytest.raises(SaslAuthenticationError):
        client.respond(server_first)


@pytest.mark.parametrize(
    ("server_final", "needle"),
    [
        (b"v=" + base64.b64encode(bytes(32)), "signature"),
        (b"v=", "signature"),
        (b"e=invalid-proof", "invalid-proof"),
        (b"e=\r\nINJECTED", "unrecognised"),
        (b"x=1", "signature"),
    ],
    ids=["wrong-signature", "empty-signature", "server-error", "hostile-error", "no-v"],
)
def test_client_refuses_a_bad_server_final(server_final: bytes, needle: str) -> None:
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    client.initial_response()
    client.respond(SERVER_FIRST)
    with pytest.raises(SaslAuthenticationError, match=needle):
        client.respond(server_final)


def test_client_refuses_success_without_the_server_proof() -> None:
    # SECURITY: an impostor that answers 235 straight after the client-final proved nothing.
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    client.initial_response()
    client.respond(SERVER_FIRST)
    with pytest.raises(SaslAuthenticationError):
        client.verify_final()


# --- keys and SASLprep -----------------------------------------------------------------------


def test_scram_keys_refuse_fewer_than_4096_iterations_and_empty_salt() -> None:
    with pytest.raises(ValueError):
        scram_keys("pencil", RFC_SALT, 4095)
    with pytest.raises(ValueError):
        scram_keys("pencil", b"", 4096)


def test_scram_keys_saslprep_the_password() -> None:
    # RFC 4013 §3 examples 1 and 5: soft hyphen vanishes, ROMAN NUMERAL NINE becomes "IX".
    keys = scram_keys("IX", RFC_SALT, 4096)
    assert scram_keys("I\u00adX", RFC_SALT, 4096) == keys
    assert scram_keys("\u2168", RFC_SALT, 4096) == keys


def test_scram_keys_refuse_a_password_saslprep_prohibits() -> None:
    with pytest.raises(ValueError):
        scram_keys("\u0007bell", RFC_SALT, 4096)


def test_username_with_comma_and_equals_round_trips_through_saslname() -> None:
    verifier = Verifier(passwords={"a,b=c": "pw"})
    client = ScramClient("a,b=c", "pw", nonce=CLIENT_NONCE)
    assert client.initial_response() == b"n,,n=a=2Cb=3Dc,r=" + CLIENT_NONCE.encode()
    client = ScramClient("a,b=c", "pw", nonce=CLIENT_NONCE)
    server = ScramServer(nonce=SERVER_NONCE, mock_seed=MOCK_SEED)
    outcome, _ = run_exchange(client, server, verifier)
    assert outcome == Success("a,b=c")


def test_scram_credentials_refuse_weak_or_truncated_values() -> None:
    stored, server = scram_keys("pencil", RFC_SALT, 4096)
    with pytest.raises(ValueError):
        ScramCredentials(RFC_SALT, 1000, stored, server, "user")
    with pytest.raises(ValueError):
        ScramCredentials(RFC_SALT, 4096, stored[:16], server, "user")


def test_username_empty_after_saslprep_is_malformed() -> None:
    step = ScramServer(nonce=SERVER_NONCE, mock_seed=MOCK_SEED).start("n,,n=\u00ad,r=abc".encode())
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


def test_bad_channel_binding_name_is_malformed() -> None:
    server = ScramServer(nonce="s", mock_seed=MOCK_SEED, channel_binding=EXPORTER, plus=True)
    step = server.start(b"p=tls_exporter!,,n=user,r=abc")
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"nonce": ""},
        {"nonce": "a,b"},
        {"plus": True},
        {"plus": True, "channel_binding": bytes(12)},
    ],
    ids=["empty-nonce", "comma-nonce", "plus-no-cb", "plus-short-cb"],
)
def test_client_constructor_refuses_unusable_settings(kwargs: dict[str, object]) -> None:
    settings: dict[str, object] = {"nonce": CLIENT_NONCE, **kwargs}
    with pytest.raises(ValueError):
        ScramClient("user", "pencil", **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("username", "password"), [("\u00ad", "pencil"), ("user", "\u00ad")], ids=["user", "password"]
)
def test_client_refuses_names_and_passwords_empty_after_saslprep(
    username: str, password: str
) -> None:
    with pytest.raises(ValueError):
        ScramClient(username, password, nonce=CLIENT_NONCE)


def test_client_refuses_a_signature_that_is_not_base64() -> None:
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    client.initial_response()
    client.respond(SERVER_FIRST)
    with pytest.raises(SaslAuthenticationError):
        client.respond(b"v=!!!")


def test_client_refuses_a_challenge_after_the_verifier() -> None:
    client = ScramClient("user", "pencil", nonce=CLIENT_NONCE)
    client.initial_response()
    client.respond(SERVER_FIRST)
    client.respond(SERVER_FINAL)
    with pytest.raises(SaslAuthenticationError):
        client.respond(SERVER_FINAL)
