"""Fixtures for accounts tests: a cheap argon2id hasher that counts its calls.

The hasher does real argon2id work, with the smallest parameters argon2 allows, so tests
stay fast; it records every ``verify`` call (hash checked, thread it ran in) so tests can
prove that unknown users go through the same verification as real ones.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import argon2
import pytest

from postguard.accounts.passwords import Argon2idHasher

CHEAP_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=8,  # KiB; argon2's minimum is 8 per lane
    parallelism=1,
)


@dataclass
class VerifyCall:
    password_hash: str
    thread: threading.Thread


class CountingHasher(Argon2idHasher):
    """A real argon2id hasher (cheap parameters) that records each verify call."""

    def __init__(self) -> None:
        super().__init__(CHEAP_PARAMETERS)
        self.calls: list[VerifyCall] = []

    def verify(self, password_hash: str, password: str) -> bool:
        self.calls.append(VerifyCall(password_hash, threading.current_thread()))
        return super().verify(password_hash, password)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()
