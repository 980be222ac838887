"""SCRAM-SHA-256 keys (RFC 5802/7677), SASLprep (RFC 4013) and the stored verifier format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from postguard.accounts.model import ScramCredentials
from postguard.accounts.scram_keys import (
    DEFAULT_SCRAM_ITERATIONS,
    format_scram_verifier,
    new_scram_credentials,
    parse_scram_verifier,
    saslprep,
    scram_keys,
)

# RFC 7677 §3: user "user", password "pencil".
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_FIRST_BARE = "n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
CLIENT_FINAL_WITHOUT_PROOF = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
CLIENT_PROOF = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
SERVER_SIGNATURE = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_keys_match_the_rfc_7677_vector() -> None:
    stored_key, server_key = scram_keys("pencil", SALT, 4096)
    assert base64.b64encode(stored_key).decode() == "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    assert base64.b64encode(server_key).decode() == "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="


def test_keys_verify_the_rfc_7677_exchange() -> None:
    # Independent of the key values above: the RFC's ClientProof and ServerSignature must
    # check out against the stored keys, as a server would check them (RFC 5802 §3).
    stored_key, server_key = scram_keys("pencil", SALT, 4096)
    auth_message = f"{CLIENT_FIRST_BARE},{SERVER_FIRST},{CLIENT_FINAL_WITHOUT_PROOF}".encode()
    client_signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = base64.b64decode(CLIENT_PROOF)
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    server_signature = hmac.digest(server_key, auth_message, "sha256")
    assert base64.b64encode(server_signature).decode() == SERVER_SIGNATURE


def test_password_is_saslprepped_before_hashing() -> None:
    # RFC 4013 §3 example 1: SOFT HYPHEN maps to nothing, so both spell the same password.
    assert scram_keys("I\u00adX", SALT, 4096) == scram_keys("IX", SALT, 4096)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("I\u00adX", "IX", id="soft-hyphen-mapped-to-nothing"),
        pytest.param("user", "user", id="no-transformation"),
        pytest.param("USER", "USER", id="case-preserved"),
        pytest.param("\u00aa", "a", id="nfkc-ordinal-indicator"),
        pytest.param("\u2168", "IX", id="nfkc-roman-numeral"),
        pytest.param("a\u00a0b", "a b", id="non-ascii-space-to-space"),
    ],
)
def test_saslprep_rfc_4013_examples(text: str, expected: str) -> None:
    assert saslprep(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("\u0007", "prohibited character", id="control"),
        pytest.param("\u0627\u0031", "right-to-left", id="bidi"),
        pytest.param("a\ue000", "prohibited character", id="private-use"),
        pytest.param("a\u0221", "unassigned code point", id="unassigned-in-3.2"),
    ],
)
def test_saslprep_refuses_prohibited_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        saslprep(text)


def test_new_credentials_use_a_random_salt_and_the_default_count() -> None:
    first = new_scram_credentials("pencil pencil")
    second = new_scram_credentials("pencil pencil")
    assert first.iterations == DEFAULT_SCRAM_ITERATIONS
    assert len(first.salt) == 16
    assert first.salt != second.salt
    assert (first.stored_key, first.server_key) == scram_keys(
        "pencil pencil", first.salt, first.iterations
    )


def test_new_credentials_refuse_fewer_than_4096_iterations() -> None:
    with pytest.raises(ValueError, match="4096"):
        new_scram_credentials("pencil", iterations=4095)


def test_verifier_is_postgresql_format_and_round_trips() -> None:
    credentials = new_scram_credentials("pencil", iterations=4096, salt=SALT)
    verifier = format_scram_verifier(credentials)
    assert verifier == (
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
    )
    assert parse_scram_verifier(verifier) == credentials


KEY = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("md5abcdef", "not a SCRAM-SHA-256 verifier", id="other-format"),
        pytest.param(f"SCRAM-SHA-256$4096:c2FsdA==${KEY}", "malformed", id="one-key"),
        pytest.param(f"SCRAM-SHA-256$x:c2FsdA==${KEY}:{KEY}", "malformed", id="count-not-number"),
        pytest.param(f"SCRAM-SHA-256$1:c2FsdA==${KEY}:{KEY}", "out of range", id="count-low"),
        pytest.param(f"SCRAM-SHA-256$4096:!!${KEY}:{KEY}", "salt is not valid base64", id="salt"),
        pytest.param(f"SCRAM-SHA-256$4096:${KEY}:{KEY}", "salt is empty", id="no-salt"),
        pytest.param(f"SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:{KEY}", "32 octets", id="short-key"),
    ],
)
def test_bad_verifier_is_refused_without_quoting_it(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_scram_verifier(text)
    assert KEY not in str(caught.value)
    assert "c2FsdA" not in str(caught.value)


def test_credentials_repr_hides_the_keys() -> None:
    credentials = ScramCredentials(
        salt=SALT, iterations=4096, stored_key=b"\x01" * 32, server_key=b"\x02" * 32
    )
    text = repr(credentials)
    assert text == "ScramCredentials(iterations=4096, keys=<redacted>)"
