"""Accounts as values: sender address matching, name and pattern syntax, redacted repr."""

from __future__ import annotations

import pytest

from postguard.accounts.model import (
    Account,
    ScramCredentials,
    normalize_account_name,
    normalize_address_pattern,
)

ALICE = Account(name="alice", addresses=("Alice@Example.org", "*@alice.example"))


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        pytest.param("alice@example.org", True, id="exact"),
        pytest.param("ALICE@EXAMPLE.ORG", True, id="exact-any-case"),
        pytest.param("bob@example.org", False, id="other-local-part"),
        pytest.param("anyone@alice.example", True, id="domain-wildcard"),
        pytest.param("Anyone@ALICE.Example", True, id="domain-wildcard-any-case"),
        pytest.param("anyone@alice.example.", True, id="trailing-dot"),
        pytest.param("x@sub.alice.example", False, id="wildcard-excludes-subdomains"),
        pytest.param("x@notalice.example", False, id="wildcard-is-not-a-suffix-match"),
        pytest.param("", False, id="null-reverse-path"),
        pytest.param("@alice.example", False, id="empty-local-part"),
        pytest.param("alice.example", False, id="no-at-sign"),
        pytest.param("*@alice.example", True, id="literal-star-is-an-address-of-the-domain"),
    ],
)
def test_may_send_as(address: str, allowed: bool) -> None:
    assert ALICE.may_send_as(address) is allowed


def test_addresses_are_lowercased() -> None:
    assert ALICE.addresses == ("alice@example.org", "*@alice.example")


def test_account_without_addresses_may_send_as_nobody() -> None:
    assert not Account(name="x").may_send_as("x@example.org")


def test_repr_names_credentials_but_never_shows_them() -> None:
    account = Account(
        name="alice",
        addresses=("alice@example.org",),
        password_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$SECRETHASH",
        scram=ScramCredentials(salt=b"s", iterations=4096, stored_key=b"K", server_key=b"S"),
        cram_secret="plaintext-secret",
    )
    text = repr(account)
    assert "SECRETHASH" not in text and "plaintext-secret" not in text
    assert "b'K'" not in text
    assert text == (
        "Account(name='alice', addresses=('alice@example.org',), password_hash=<redacted>, "
        "scram=<redacted>, cram_secret=<redacted>, disabled=False)"
    )
    assert "password_hash=None" in repr(Account(name="bob"))


def test_mechanisms_follow_the_stored_credentials() -> None:
    scram = ScramCredentials(salt=b"s", iterations=4096, stored_key=b"K", server_key=b"S")
    assert Account(name="a").mechanisms() == ()
    assert Account(name="a", password_hash="h").mechanisms() == ("PLAIN", "LOGIN")
    assert Account(name="a", scram=scram, cram_secret="c", password_hash="h").mechanisms() == (
        "SCRAM-SHA-256",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("alice", "alice", id="plain"),
        pytest.param("Alice@Example.org", "alice@example.org", id="address-like-lowercased"),
        pytest.param("a.b+c_d-e", "a.b+c_d-e", id="symbols"),
    ],
)
def test_account_names_are_normalised(text: str, expected: str) -> None:
    assert normalize_account_name(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(".alice", id="leading-dot"),
        pytest.param("al ice", id="space"),
        pytest.param("alice\n", id="newline"),
        pytest.param("ålice", id="non-ascii"),
        pytest.param("a" * 255, id="too-long"),
    ],
)
def test_bad_account_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid account name"):
        normalize_account_name(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Alice@Example.ORG", "alice@example.org", id="address"),
        pytest.param("*@Example.ORG", "*@example.org", id="wildcard"),
    ],
)
def test_address_patterns_are_normalised(text: str, expected: str) -> None:
    assert normalize_address_pattern(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("*", id="bare-star"),
        pytest.param("a*@example.org", id="partial-wildcard"),
        pytest.param("*@*.example.org", id="wildcard-domain"),
        pytest.param("alice", id="no-domain"),
        pytest.param("alice@exa mple.org", id="bad-domain"),
    ],
)
def test_bad_address_patterns_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_address_pattern(text)
