"""Client half ⇄ server half for every mechanism, built through the registry: right
credentials succeed (with and without an initial response), wrong ones fail as AUTH_FAILED;
plus the registry's strength order, EHLO list and client choice.
"""

from __future__ import annotations

import dataclasses

import pytest

from postguard.sasl import (
    CLIENT_MECHANISMS,
    SERVER_MECHANISMS,
    STRENGTH_ORDER,
    Failure,
    FailureKind,
    SaslClientContext,
    SaslCredentials,
    SaslServerContext,
    Success,
    advertised_mechanisms,
    choose_client_mechanism,
)

from .exchange import EXPORTER, MOCK_SEED, Verifier, run_exchange

SERVER_CONTEXT = SaslServerContext(
    hostname="mx.example.org",
    nonce="server-nonce_42",
    timestamp=1_700_000_000,
    mock_seed=MOCK_SEED,
    channel_binding=EXPORTER,
)
CLIENT_CONTEXT = SaslClientContext(
    nonce="client-nonce_17", channel_binding=EXPORTER, host="mx.example.org", port=587
)
GOOD = SaslCredentials("alice", password="correct horse", token="ya29.good-token")
BAD = SaslCredentials("alice", password="wrong horse", token="ya29.revoked")
UNKNOWN = SaslCredentials("mallory", password="correct horse", token="ya29.nobody")


def client_context(name: str) -> SaslClientContext:
    # A client holding channel binding that picks plain SCRAM while the server offers -PLUS
    # is the downgrade RFC 5802 §6 catches; a plain-SCRAM client here has no binding.
    if name == "SCRAM-SHA-256":
        return dataclasses.replace(CLIENT_CONTEXT, channel_binding=None)
    return CLIENT_CONTEXT


def test_registries_cover_the_same_mechanisms_in_strength_order() -> None:
    assert set(SERVER_MECHANISMS) == set(CLIENT_MECHANISMS) == set(STRENGTH_ORDER)
    assert STRENGTH_ORDER == (
        "SCRAM-SHA-256-PLUS",
        "SCRAM-SHA-256",
        "OAUTHBEARER",
        "XOAUTH2",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
    )


@pytest.mark.parametrize("send_initial", [True, False], ids=["initial-response", "no-initial"])
@pytest.mark.parametrize("name", STRENGTH_ORDER)
def test_round_trip_with_right_credentials_succeeds(name: str, send_initial: bool) -> None:
    client = CLIENT_MECHANISMS[name](GOOD, client_context(name))
    server = SERVER_MECHANISMS[name](SERVER_CONTEXT)
    assert client.name == server.name == name
    outcome, _ = run_exchange(client, server, Verifier(), send_initial=send_initial)
    assert outcome == Success("alice")


@pytest.mark.parametrize("credentials", [BAD, UNKNOWN], ids=["wrong", "unknown-user"])
@pytest.mark.parametrize("name", STRENGTH_ORDER)
def test_round_trip_with_wrong_credentials_fails(name: str, credentials: SaslCredentials) -> None:
    client = CLIENT_MECHANISMS[name](credentials, client_context(name))
    server = SERVER_MECHANISMS[name](SERVER_CONTEXT)
    outcome, _ = run_exchange(client, server, Verifier())
    assert isinstance(outcome, Failure)
    assert outcome.kind is FailureKind.AUTH_FAILED


def test_scram_transcript_puts_the_verifier_in_a_challenge_then_an_empty_answer() -> None:
    client = CLIENT_MECHANISMS["SCRAM-SHA-256"](GOOD, client_context("SCRAM-SHA-256"))
    server = SERVER_MECHANISMS["SCRAM-SHA-256"](SERVER_CONTEXT)
    outcome, transcript = run_exchange(client, server, Verifier())
    assert outcome == Success("alice", None)
    assert [who for who, _ in transcript] == ["C", "S", "C", "S", "C"]
    assert transcript[3][1].startswith(b"v=")
    assert transcript[4] == ("C", b"")


@pytest.mark.parametrize(
    ("enabled", "channel_binding", "expected"),
    [
        (
            ["plain", "LOGIN", "SCRAM-SHA-256"],
            True,
            ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"),
        ),
        (["PLAIN", "SCRAM-SHA-256"], False, ("SCRAM-SHA-256", "PLAIN")),
        (["SCRAM-SHA-256-PLUS", "PLAIN"], True, ("PLAIN",)),
        (["XOAUTH2", "OAUTHBEARER", "CRAM-MD5"], True, ("OAUTHBEARER", "XOAUTH2", "CRAM-MD5")),
    ],
    ids=["plus-added", "no-binding", "plus-alone-dropped", "order"],
)
def test_advertised_mechanisms_keep_plus_in_step_with_channel_binding(
    enabled: list[str], channel_binding: bool, expected: tuple[str, ...]
) -> None:
    assert advertised_mechanisms(enabled, channel_binding_available=channel_binding) == expected


def test_advertised_mechanisms_reject_unknown_names() -> None:
    with pytest.raises(ValueError, match="DIGEST-MD5"):
        advertised_mechanisms(["PLAIN", "DIGEST-MD5"], channel_binding_available=False)


@pytest.mark.parametrize(
    ("offered", "credentials", "channel_binding", "expected"),
    [
        (["PLAIN", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], GOOD, EXPORTER, "SCRAM-SHA-256-PLUS"),
        (["PLAIN", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], GOOD, None, "SCRAM-SHA-256"),
        (["login", "plain"], GOOD, None, "PLAIN"),
        (["XOAUTH2", "PLAIN"], SaslCredentials("a", token="t"), None, "XOAUTH2"),
        (["XOAUTH2"], SaslCredentials("a", password="p"), None, None),
        ([], GOOD, None, None),
    ],
    ids=["plus", "no-binding", "plain-over-login", "token", "no-usable", "none-offered"],
)
def test_client_chooses_the_strongest_usable_mechanism(
    offered: list[str],
    credentials: SaslCredentials,
    channel_binding: bytes | None,
    expected: str | None,
) -> None:
    context = SaslClientContext(nonce="n", channel_binding=channel_binding)
    assert choose_client_mechanism(offered, credentials, context) == expected


def test_plain_scram_client_with_binding_against_a_plus_server_is_a_downgrade() -> None:
    client = CLIENT_MECHANISMS["SCRAM-SHA-256"](GOOD, CLIENT_CONTEXT)  # flag "y"
    server = SERVER_MECHANISMS["SCRAM-SHA-256"](SERVER_CONTEXT)
    outcome, _ = run_exchange(client, server, Verifier())
    assert outcome == Failure("channel-binding downgrade", FailureKind.AUTH_FAILED)


@pytest.mark.parametrize("name", ["PLAIN", "SCRAM-SHA-256", "XOAUTH2"])
def test_client_factory_refuses_missing_credentials(name: str) -> None:
    with pytest.raises(ValueError):
        CLIENT_MECHANISMS[name](SaslCredentials("alice"), CLIENT_CONTEXT)
