"""argon2id hashing: the parameters, verification, rehash detection and hash recognition."""

from __future__ import annotations

import dataclasses

import argon2
import pytest

from postguard.accounts import passwords
from postguard.accounts.passwords import Argon2idHasher, is_argon2id_hash

from .conftest import CHEAP_PARAMETERS


def test_default_hash_is_argon2id_with_rfc_9106_second_option() -> None:
    password_hash = passwords.hash_password("correct horse battery staple")
    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    parameters = argon2.extract_parameters(password_hash)
    assert (parameters.salt_len, parameters.hash_len) == (16, 32)
    assert passwords.verify(password_hash, "correct horse battery staple")
    assert not passwords.verify(password_hash, "correct horse battery stapler")
    assert not passwords.needs_rehash(password_hash)


def test_same_password_gets_a_new_salt_each_time() -> None:
    hasher = Argon2idHasher(CHEAP_PARAMETERS)
    assert hasher.hash("same password") != hasher.hash("same password")


@pytest.mark.parametrize(
    "bad_hash",
    [
        pytest.param("", id="empty"),
        pytest.param("not a hash", id="text"),
        pytest.param("$argon2id$v=19$m=8,t=1,p=1$AAAA$AAAA", id="wrong-tag"),
        pytest.param("$2b$12$abcdefghijklmnopqrstuu", id="bcrypt"),
    ],
)
def test_unreadable_or_wrong_hash_never_verifies(bad_hash: str) -> None:
    assert not Argon2idHasher(CHEAP_PARAMETERS).verify(bad_hash, "password")


def test_hash_with_other_parameters_needs_rehash() -> None:
    cheap = Argon2idHasher(CHEAP_PARAMETERS).hash("password1")
    assert passwords.needs_rehash(cheap)
    assert passwords.verify(cheap, "password1")  # parameters travel in the hash


def test_only_argon2id_parameters_are_accepted() -> None:
    with pytest.raises(ValueError, match="argon2id"):
        Argon2idHasher(dataclasses.replace(CHEAP_PARAMETERS, type=argon2.Type.I))


def test_dummy_hash_is_made_once_and_matches_no_password() -> None:
    hasher = Argon2idHasher(CHEAP_PARAMETERS)
    dummy = hasher.dummy_hash()
    assert hasher.dummy_hash() is dummy
    assert is_argon2id_hash(dummy)
    assert not hasher.verify(dummy, "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(Argon2idHasher(CHEAP_PARAMETERS).hash("x" * 8), True, id="real"),
        pytest.param("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g", True, id="shape"),
        pytest.param("$argon2i$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g", False, id="argon2i"),
        pytest.param("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA", False, id="no-hash"),
        pytest.param("hunter2hunter2", False, id="plaintext"),
    ],
)
def test_argon2id_hashes_are_recognised(text: str, expected: bool) -> None:
    assert is_argon2id_hash(text) is expected
