"""Password checks through the store: constant work for unknown users, threads, bounds.

No timing assertions (STYLE.md §5): instead each test proves *which* argon2 verification
ran, using a real (cheap) hasher that records its calls.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from postguard.accounts import Account, FileCredentialStore, PasswordVerifier
from postguard.accounts.file_format import write_accounts_file

from .conftest import CHEAP_PARAMETERS, CountingHasher


@pytest.fixture
def store(tmp_path: Path, hasher: CountingHasher) -> FileCredentialStore:
    path = tmp_path / "accounts.toml"
    write_accounts_file(
        path,
        [
            Account(
                name="alice",
                addresses=("alice@example.org",),
                password_hash=hasher.hash("pw-alice"),
            ),
            Account(name="carol", password_hash=hasher.hash("pw-carol"), disabled=True),
            Account(name="dave"),  # no password (OAuth only)
        ],
    )
    hasher.calls.clear()
    return FileCredentialStore(path, hasher=hasher)


async def test_right_password_returns_the_account(store: FileCredentialStore) -> None:
    account = await store.verify_password("alice", "pw-alice")
    assert account is not None and account.name == "alice"


async def test_name_is_case_insensitive(store: FileCredentialStore) -> None:
    assert await store.verify_password("ALICE", "pw-alice") is not None


async def test_wrong_password_returns_none_after_checking_the_real_hash(
    store: FileCredentialStore, hasher: CountingHasher
) -> None:
    assert await store.verify_password("alice", "pw-wrong") is None
    (call,) = hasher.calls
    alice = store.get("alice")
    assert alice is not None and call.password_hash == alice.password_hash


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("nobody", id="unknown"),
        pytest.param("carol", id="disabled"),
        pytest.param("dave", id="no-password"),
        pytest.param("not a valid name!", id="invalid-name"),
    ],
)
async def test_unusable_name_does_one_real_argon2_verification_against_the_dummy_hash(
    store: FileCredentialStore, hasher: CountingHasher, name: str
) -> None:
    assert await store.verify_password(name, "pw-carol") is None
    (call,) = hasher.calls  # exactly one verification, as for a real account
    assert call.password_hash == hasher.dummy_hash()
    assert call.password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")  # same parameters


async def test_disabled_account_with_the_right_password_is_refused(
    store: FileCredentialStore,
) -> None:
    assert await store.verify_password("carol", "pw-carol") is None


async def test_dummy_hash_is_computed_once(
    store: FileCredentialStore, hasher: CountingHasher
) -> None:
    for name in ("x", "y", "carol"):
        await store.verify_password(name, "guess")
    assert len({call.password_hash for call in hasher.calls}) == 1


async def test_argon2_runs_in_a_worker_thread(
    store: FileCredentialStore, hasher: CountingHasher
) -> None:
    await store.verify_password("alice", "pw-alice")
    await store.verify_password("nobody", "pw-alice")
    assert [call.thread is threading.main_thread() for call in hasher.calls] == [False, False]


class GatedHasher(CountingHasher):
    """Holds every verification until released, counting how many are inside at once."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.gate = threading.Event()
        self.inside = 0
        self.peak = 0
        self._lock = threading.Lock()

    def verify(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
        self.entered.release()
        self.gate.wait(timeout=10)
        with self._lock:
            self.inside -= 1
        return super().verify(password_hash, password)


async def test_concurrent_verifications_are_bounded() -> None:
    hasher = GatedHasher()
    verifier = PasswordVerifier(hasher, max_concurrent=2)
    account = Account(name="a", password_hash=hasher.hash("password"))
    tasks = [asyncio.create_task(verifier.verify(account, "password")) for _ in range(4)]
    for _ in range(2):
        assert await asyncio.to_thread(hasher.entered.acquire, timeout=10)
    # A third verification must not start while two are running.
    assert not await asyncio.to_thread(hasher.entered.acquire, timeout=0.2)
    hasher.gate.set()
    results = await asyncio.gather(*tasks)
    assert results == [account] * 4
    assert hasher.peak == 2


def test_hasher_fixture_is_cheap_but_real(hasher: CountingHasher) -> None:
    password_hash = hasher.hash("password")
    assert password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert CHEAP_PARAMETERS.time_cost == 1
    assert hasher.verify(password_hash, "password")
