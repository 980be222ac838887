"""The contract every mechanism shares: out-of-order calls and wrong result types raise
SaslUsageError; a verifier outage is TEMPORARY; over-long responses are MALFORMED; secrets
never show in ``repr``; SASLprep follows RFC 4013 §3's examples.
"""

from __future__ import annotations

import pytest

from postguard.sasl import (
    MAX_RESPONSE_OCTETS,
    SERVER_MECHANISMS,
    Challenge,
    CramLookup,
    Failure,
    FailureKind,
    NeedPassword,
    NeedTokenValidation,
    PasswordVerdict,
    PlainClient,
    PlainServer,
    SaslAuthenticationError,
    SaslCredentials,
    SaslServerContext,
    SaslServerMechanism,
    SaslUsageError,
    ScramClient,
    ScramCredentials,
    ScramLookup,
    TokenVerdict,
    VerifierUnavailable,
    saslprep,
    scram_keys,
)

from .exchange import EXPORTER, MOCK_SEED

CONTEXT = SaslServerContext(
    hostname="mx.example.org",
    nonce="fresh-nonce_0123",
    timestamp=1_700_000_000,
    mock_seed=MOCK_SEED,
    channel_binding=EXPORTER,
)


def make(name: str) -> SaslServerMechanism:
    return SERVER_MECHANISMS[name](CONTEXT)


@pytest.mark.parametrize("name", sorted(SERVER_MECHANISMS))
def test_respond_before_start_is_a_usage_error(name: str) -> None:
    with pytest.raises(SaslUsageError):
        make(name).respond(b"")


@pytest.mark.parametrize("name", sorted(SERVER_MECHANISMS))
def test_start_twice_is_a_usage_error(name: str) -> None:
    mech = make(name)
    mech.start(None)
    with pytest.raises(SaslUsageError):
        mech.start(None)


@pytest.mark.parametrize("name", sorted(SERVER_MECHANISMS))
def test_resume_without_a_pending_need_is_a_usage_error(name: str) -> None:
    mech = make(name)
    mech.start(None)
    with pytest.raises(SaslUsageError):
        mech.resume(PasswordVerdict("alice"))


@pytest.mark.parametrize("name", sorted(SERVER_MECHANISMS))
def test_str_instead_of_bytes_is_a_usage_error(name: str) -> None:
    with pytest.raises(SaslUsageError):
        make(name).start("text")  # type: ignore[arg-type]


def test_respond_while_a_need_is_pending_is_a_usage_error() -> None:
    mech = PlainServer()
    assert isinstance(mech.start(b"\x00tim\x00pw"), NeedPassword)
    with pytest.raises(SaslUsageError):
        mech.respond(b"")


def test_resume_with_the_wrong_result_type_is_a_usage_error_and_keeps_state() -> None:
    mech = PlainServer()
    mech.start(b"\x00tim\x00pw")
    with pytest.raises(SaslUsageError):
        mech.resume(CramLookup("s", "tim"))
    assert mech.resume(PasswordVerdict("tim")).__class__.__name__ == "Success"


def test_anything_after_the_end_is_a_usage_error() -> None:
    mech = PlainServer()
    mech.start(b"\x00tim\x00pw")
    mech.resume(PasswordVerdict(None))
    assert mech.is_finished
    with pytest.raises(SaslUsageError):
        mech.respond(b"")
    with pytest.raises(SaslUsageError):
        mech.resume(PasswordVerdict(None))


@pytest.mark.parametrize(
    ("name", "initial"),
    [
        ("PLAIN", b"\x00tim\x00pw"),
        ("SCRAM-SHA-256", b"n,,n=tim,r=abc"),
        ("XOAUTH2", b"user=tim\x01auth=Bearer abc\x01\x01"),
        ("OAUTHBEARER", b"n,,\x01auth=Bearer abc\x01\x01"),
    ],
)
def test_verifier_outage_is_a_temporary_failure(name: str, initial: bytes) -> None:
    mech = make(name)
    mech.start(initial)
    step = mech.resume(VerifierUnavailable("store down"))
    assert step == Failure("verifier unavailable", FailureKind.TEMPORARY)


@pytest.mark.parametrize("name", sorted(SERVER_MECHANISMS))
def test_response_over_the_rfc4954_limit_is_malformed(name: str) -> None:
    step = make(name).start(b"\x00" * (MAX_RESPONSE_OCTETS + 1))
    assert isinstance(step, Failure)
    assert step.kind is FailureKind.MALFORMED


def test_scram_plus_factory_needs_channel_binding() -> None:
    context = SaslServerContext("mx.example.org", "n", 0, MOCK_SEED, channel_binding=None)
    with pytest.raises(ValueError):
        SERVER_MECHANISMS["SCRAM-SHA-256-PLUS"](context)


# --- secrets stay out of repr ----------------------------------------------------------------

SECRET = "s3cr3t-Pa55"
_stored, _server = scram_keys(SECRET, b"salt-salt-salt!!", 4096)
REDACTED: list[tuple[str, object, list[str]]] = [
    ("NeedPassword", NeedPassword("tim", None, SECRET), [SECRET]),
    ("NeedTokenValidation", NeedTokenValidation("tim", SECRET), [SECRET]),
    ("CramLookup", CramLookup(SECRET, "tim"), [SECRET]),
    (
        "ScramCredentials",
        ScramCredentials(b"salt-salt-salt!!", 4096, _stored, _server, "tim"),
        [repr(_stored), repr(_server)],
    ),
    ("SaslCredentials", SaslCredentials("tim", password=SECRET, token=SECRET), [SECRET]),
    ("SaslServerContext", CONTEXT, [repr(MOCK_SEED), repr(EXPORTER)]),
    ("ScramClient", ScramClient("tim", SECRET, nonce="abc"), [SECRET]),
    ("PlainClient", PlainClient("tim", SECRET), [SECRET]),
]


@pytest.mark.parametrize(("label", "value", "secrets"), REDACTED, ids=[r[0] for r in REDACTED])
def test_repr_never_shows_secrets(label: str, value: object, secrets: list[str]) -> None:
    text = repr(value)
    for secret in secrets:
        assert secret not in text, label


def test_token_verdict_and_challenge_reprs_are_plain() -> None:
    assert "invalid_token" in repr(TokenVerdict(None, {"status": "invalid_token"}))
    assert repr(Challenge(b"Username:")) == "Challenge(data=b'Username:')"
    assert repr(ScramLookup(None)) == "ScramLookup(credentials=None)"


# --- SASLprep (RFC 4013 §3 examples) -----------------------------------------------------------

SASLPREP_EXAMPLES: list[tuple[str, str | None]] = [
    ("I\u00adX", "IX"),  # 1: SOFT HYPHEN mapped to nothing
    ("user", "user"),  # 2: no transformation
    ("USER", "USER"),  # 3: case preserved
    ("\u00aa", "a"),  # 4: NFKC
    ("\u2168", "IX"),  # 5: NFKC, matches #1
    ("\u0007", None),  # 6: prohibited character
    ("\u0627\u0031", None),  # 7: bidirectional check
]


@pytest.mark.parametrize(
    ("given", "expected"), SASLPREP_EXAMPLES, ids=[str(i) for i in range(1, 8)]
)
def test_saslprep_follows_rfc4013_examples(given: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            saslprep(given)
    else:
        assert saslprep(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [("a\u00a0b", "a b"), ("\u0627\u0628", "\u0627\u0628")],
    ids=["non-ascii-space", "rtl-only"],
)
def test_saslprep_maps_spaces_and_allows_pure_rtl(given: str, expected: str) -> None:
    assert saslprep(given) == expected


def test_saslprep_unassigned_code_point_only_in_queries() -> None:
    unassigned = "\u0221"  # unassigned in Unicode 3.2 (RFC 3454 table A.1)
    assert saslprep(unassigned, allow_unassigned=True) == unassigned
    with pytest.raises(ValueError):
        saslprep(unassigned)


def test_saslprep_error_does_not_echo_the_input() -> None:
    with pytest.raises(ValueError) as excinfo:
        saslprep("secret\u0007")
    assert "secret" not in str(excinfo.value)


# --- client halves: misuse -------------------------------------------------------------------


def test_client_initial_response_after_respond_is_a_usage_error() -> None:
    client = PlainClient("tim", "pw")
    client.respond(b"")
    with pytest.raises(SaslUsageError):
        client.initial_response()


def test_client_respond_after_verify_final_is_a_usage_error() -> None:
    client = PlainClient("tim", "pw")
    client.initial_response()
    client.verify_final()
    with pytest.raises(SaslUsageError):
        client.respond(b"")


def test_one_way_client_refuses_success_data() -> None:
    client = PlainClient("tim", "pw")
    client.initial_response()
    with pytest.raises(SaslAuthenticationError):
        client.verify_final(b"unexpected")


def test_client_respond_with_str_is_a_usage_error() -> None:
    with pytest.raises(SaslUsageError):
        PlainClient("tim", "pw").respond("")  # type: ignore[arg-type]


def test_saslprep_refuses_mixed_direction_text() -> None:
    with pytest.raises(ValueError):
        saslprep("\u0627a\u0627")
