"""Properties: whatever bytes a client sends, every server mechanism answers with a step; and
whatever a server sends, every client half answers with bytes or SaslAuthenticationError.

Hypothesis feeds random messages (and mutations of valid ones, so parsing gets past the first
byte) into ``start``/``respond`` of every server mechanism, answering each ``Need...`` with a
random verdict. The only exception allowed would be SaslUsageError, and the driver never
misuses the API, so none may occur; each exchange ends within a bounded number of steps.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postguard.sasl import (
    CLIENT_MECHANISMS,
    SERVER_MECHANISMS,
    Challenge,
    CramLookup,
    Failure,
    NeedCramSecret,
    NeedPassword,
    NeedScramCredentials,
    NeedTokenValidation,
    PasswordVerdict,
    Resumption,
    SaslAuthenticationError,
    SaslClientContext,
    SaslClientMechanism,
    SaslCredentials,
    SaslServerContext,
    ScramClient,
    ScramLookup,
    Step,
    Success,
    TokenVerdict,
    VerifierUnavailable,
)

from .exchange import EXPORTER, MOCK_SEED, Verifier

STEP_TYPES = (
    Challenge,
    NeedPassword,
    NeedScramCredentials,
    NeedCramSecret,
    NeedTokenValidation,
    Success,
    Failure,
)
CONTEXT = SaslServerContext("mx.example.org", "fuzz-nonce", 1, MOCK_SEED, channel_binding=EXPORTER)
_SCRAM = Verifier().scram_credentials("alice")

SEEDS = [
    b"\x00alice\x00correct horse",
    b"alice",
    b"alice 0123456789abcdef0123456789abcdef",
    b"n,,n=alice,r=abc",
    b"y,,n=alice,r=abc",
    b"p=tls-exporter,,n=alice,r=abc",
    b"c=biws,r=abcfuzz-nonce,p=" + b"A" * 43 + b"=",
    b"user=alice\x01auth=Bearer abc\x01\x01",
    b"n,a=alice,\x01host=h\x01port=1\x01auth=Bearer abc\x01\x01",
    b"\x01",
    b"",
]


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(SEEDS))
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    cut = draw(st.integers(0, len(seed)))
    return seed[:cut] + draw(st.binary(max_size=8)) + seed[cut + draw(st.integers(0, 3)) :]


def verdicts(step: Step) -> st.SearchStrategy[Resumption]:
    unavailable = st.just(VerifierUnavailable())
    if isinstance(step, NeedPassword):
        return st.sampled_from([PasswordVerdict("alice"), PasswordVerdict(None)]) | unavailable
    if isinstance(step, NeedScramCredentials):
        return st.sampled_from([ScramLookup(_SCRAM), ScramLookup(None)]) | unavailable
    if isinstance(step, NeedCramSecret):
        options = [CramLookup("correct horse", "alice"), CramLookup(None, None)]
        return st.sampled_from(options) | unavailable
    options_t = [TokenVerdict("alice"), TokenVerdict(None), TokenVerdict(None, {"status": "x"})]
    return st.sampled_from(options_t) | unavailable


@given(
    name=st.sampled_from(sorted(SERVER_MECHANISMS)),
    initial=st.none() | messages(),
    data=st.data(),
)
def test_random_client_input_only_ever_yields_steps(
    name: str, initial: bytes | None, data: st.DataObject
) -> None:
    mech = SERVER_MECHANISMS[name](CONTEXT)
    step = mech.start(initial)
    for _ in range(12):
        assert isinstance(step, STEP_TYPES)
        if isinstance(step, Success | Failure):
            return
        if isinstance(step, Challenge):
            step = mech.respond(data.draw(messages()))
        else:
            step = mech.resume(data.draw(verdicts(step)))
    raise AssertionError("exchange did not end within 12 steps")


CLIENT_NONCE = "client-nonce_17"
CHALLENGE_SEEDS = [
    b"",
    b"Username:",
    b"<1896.697170952@postoffice.reston.mci.net>",
    b"r=client-nonce_17xyz,s=QUJDRA==,i=4096",
    b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    b"e=invalid-proof",
    b'{"status":"invalid_token","schemes":"bearer"}',
]


def client_for(name: str) -> SaslClientMechanism:
    if name.startswith("SCRAM"):
        # A low ceiling keeps a mutated "i=" from costing seconds of PBKDF2.
        return ScramClient(
            "alice",
            "correct horse",
            nonce=CLIENT_NONCE,
            channel_binding=EXPORTER,
            plus=name.endswith("PLUS"),
            max_iterations=8192,
        )
    credentials = SaslCredentials("alice", password="correct horse", token="ya29.tok")
    return CLIENT_MECHANISMS[name](credentials, SaslClientContext(nonce=CLIENT_NONCE))


@st.composite
def challenges(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(CHALLENGE_SEEDS))
    if draw(st.booleans()):
        return draw(st.binary(max_size=120))
    cut = draw(st.integers(0, len(seed)))
    return seed[:cut] + draw(st.binary(max_size=6)) + seed[cut + draw(st.integers(0, 3)) :]


@given(
    name=st.sampled_from(sorted(CLIENT_MECHANISMS)),
    send_initial=st.booleans(),
    received=st.lists(challenges(), max_size=5),
)
def test_random_server_challenges_yield_bytes_or_an_authentication_error(
    name: str, send_initial: bool, received: list[bytes]
) -> None:
    client = client_for(name)
    if send_initial:
        initial = client.initial_response()
        assert initial is None or isinstance(initial, bytes)
    for challenge in received:
        try:
            answer = client.respond(challenge)
        except SaslAuthenticationError:
            return
        assert isinstance(answer, bytes)
