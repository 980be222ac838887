"""The accounts file: its format, lookups, reload on change, and atomic writes."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import tomllib
from pathlib import Path

import pytest

from postguard.accounts import (
    Account,
    AccountExistsError,
    FileCredentialStore,
    ScramCredentials,
    UnknownAccountError,
)
from postguard.accounts.file_format import (
    format_accounts,
    parse_accounts,
    read_accounts_file,
    write_accounts_file,
)
from postguard.accounts.scram_keys import format_scram_verifier, new_scram_credentials
from postguard.config import ConfigError

from .conftest import CountingHasher

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
SCRAM = new_scram_credentials("pencil", iterations=4096, salt=b"0123456789abcdef")
VERIFIER = format_scram_verifier(SCRAM)
ALICE_TOML = f"""
[account.alice]
addresses = ["Alice@Example.org", "*@alice.example"]
password = "{HASH}"
scram_sha_256 = "{VERIFIER}"
disabled = false
"""


def write(path: Path, text: str) -> None:
    """Edit the file in place, as an editor might, and make sure its stamp changes."""
    before = path.stat() if path.exists() else None
    path.write_text(text, encoding="utf-8")
    if before is not None:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "accounts.toml"


def test_documented_example_parses(path: Path) -> None:
    write(path, ALICE_TOML + '\n[account."bob@example.org"]\naddresses = ["bob@example.org"]\n')
    _, accounts = read_accounts_file(path)
    alice = accounts["alice"]
    assert alice.addresses == ("alice@example.org", "*@alice.example")
    assert alice.password_hash == HASH
    assert alice.scram == SCRAM
    assert (alice.cram_secret, alice.disabled) == (None, False)
    assert accounts["bob@example.org"] == Account(
        name="bob@example.org", addresses=("bob@example.org",)
    )


def test_format_and_parse_round_trip(path: Path) -> None:
    accounts = [
        Account(name="zed", addresses=("*@zed.example",), cram_secret='se"cret\\', disabled=True),
        Account(name="alice", addresses=("alice@example.org",), password_hash=HASH, scram=SCRAM),
        Account(name="bob@example.org"),
    ]
    text = format_accounts(accounts)
    parsed = parse_accounts(tomllib.loads(text), path)
    assert list(parsed) == ["alice", "bob@example.org", "zed"]  # sorted by name
    assert sorted(parsed.values(), key=lambda a: a.name) == sorted(accounts, key=lambda a: a.name)
    assert '[account."bob@example.org"]' in text


def test_missing_file_means_no_accounts(path: Path) -> None:
    store = FileCredentialStore(path)
    assert store.accounts() == []
    assert store.mechanisms_available() == set()
    assert store.get("alice") is None


# (id, file text, exact str(ConfigError) after "<path>: ")
BAD_FILES = [
    ("unknown-top-level", "[accounts.alice]\n", "accounts: unknown key (expected: account)"),
    ("account-not-table", "[account]\nalice = 1\n", "account.alice: expected a table, got integer"),
    (
        "unknown-account-key",
        "[account.alice]\npasword = 'x'\n",
        "account.alice.pasword: unknown key (expected: addresses, password, scram_sha_256,"
        " cram_md5, disabled)",
    ),
    (
        "uppercase-name",
        "[account.Alice]\n",
        'account.Alice: account names are lowercase: write "alice"',
    ),
    (
        "bad-name",
        '[account."al ice"]\n',
        'account."al ice": invalid account name "al ice" (expected up to 254 ASCII letters,'
        " digits and . _ @ + -, starting with a letter or digit)",
    ),
    (
        "bad-address",
        '[account.alice]\naddresses = ["alice@example.org", "alice"]\n',
        'account.alice.addresses[1]: invalid mailbox "alice" (expected local-part@domain)',
    ),
    (
        "duplicate-address",
        '[account.alice]\naddresses = ["a@example.org", "A@example.org"]\n',
        "account.alice.addresses[1]: duplicate of account.alice.addresses[0]",
    ),
    (
        "plaintext-in-password",
        '[account.alice]\npassword = "hunter2hunter2"\n',
        'account.alice.password: not an argon2id hash (expected "$argon2id$v=19$m=...,t=...,p=...'
        '$<salt>$<hash>"; set passwords with `postguard user passwd`)',
    ),
    (
        "bad-scram",
        '[account.alice]\nscram_sha_256 = "hunter2hunter2"\n',
        "account.alice.scram_sha_256: not a SCRAM-SHA-256 verifier (expected SCRAM-SHA-256"
        "$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>)",
    ),
    ("empty-cram", '[account.alice]\ncram_md5 = ""\n', "account.alice.cram_md5: must not be empty"),
    (
        "disabled-string",
        '[account.alice]\ndisabled = "yes"\n',
        "account.alice.disabled: expected a boolean, got string",
    ),
    (
        "toml-syntax",
        "[account.alice\n",
        "line 1, column 15: Expected ']' at the end of a table declaration",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BAD_FILES])
def test_broken_file_at_first_load_is_a_config_error(path: Path, text: str, expected: str) -> None:
    write(path, text)
    with pytest.raises(ConfigError) as caught:
        FileCredentialStore(path)
    assert str(caught.value) == f"{path}: {expected}"
    assert "hunter2" not in str(caught.value)


def test_oversized_file_is_refused(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("postguard.accounts.file_format.MAX_ACCOUNTS_FILE_OCTETS", 10)
    write(path, ALICE_TOML)
    with pytest.raises(ConfigError, match="larger than 10B"):
        FileCredentialStore(path)


def test_find_by_address_is_exact_enabled_and_unambiguous(path: Path) -> None:
    write_accounts_file(
        path,
        [
            Account(name="alice", addresses=("alice@example.org", "*@example.org", "info@x.org")),
            Account(name="bob", addresses=("info@x.org",)),
            Account(name="carol", addresses=("carol@example.org",), disabled=True),
        ],
    )
    store = FileCredentialStore(path)
    found = store.find_by_address("ALICE@example.org")
    assert found is not None and found.name == "alice"
    assert store.find_by_address("someone@example.org") is None  # wildcards never map
    assert store.find_by_address("info@x.org") is None  # two accounts: ambiguous
    assert store.find_by_address("carol@example.org") is None  # disabled


def test_mechanisms_come_from_enabled_accounts(path: Path) -> None:
    write_accounts_file(
        path,
        [
            Account(name="a", password_hash=HASH),
            Account(name="b", scram=SCRAM),
            Account(name="c", cram_secret="secret", disabled=True),
        ],
    )
    store = FileCredentialStore(path)
    assert store.mechanisms_available() == {"PLAIN", "LOGIN", "SCRAM-SHA-256"}
    assert not store.has_cram_secrets()
    store.update("c", lambda account: Account(name="c", cram_secret="secret"))
    assert store.has_cram_secrets()
    assert "CRAM-MD5" in store.mechanisms_available()


def test_warnings_name_cram_accounts_and_a_readable_file(path: Path) -> None:
    write_accounts_file(path, [Account(name="a", cram_secret="s"), Account(name="b")])
    store = FileCredentialStore(path)
    assert store.warnings() == [f"{path}: account a has a CRAM-MD5 secret (plaintext-equivalent)"]
    path.chmod(0o640)
    assert store.warnings()[1] == (
        f"{path}: readable by group or others (mode 0640); it holds password hashes, run chmod 600"
    )


# --- reloading -------------------------------------------------------------------------------


def test_unchanged_file_is_not_reloaded(path: Path) -> None:
    write(path, ALICE_TOML)
    store = FileCredentialStore(path)
    assert store.maybe_reload() is False


def test_changed_file_is_reloaded(path: Path) -> None:
    write(path, ALICE_TOML)
    store = FileCredentialStore(path)
    write(path, ALICE_TOML.replace("disabled = false", "disabled = true"))
    assert store.maybe_reload() is True
    alice = store.get("alice")
    assert alice is not None and alice.disabled


def test_file_replaced_by_rename_is_reloaded(path: Path) -> None:
    write(path, ALICE_TOML)
    store = FileCredentialStore(path)
    write_accounts_file(path, [Account(name="bob")])
    assert store.maybe_reload() is True
    assert [account.name for account in store.accounts()] == ["bob"]


def test_broken_reload_keeps_the_old_accounts_and_logs_one_error(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(path, ALICE_TOML)
    store = FileCredentialStore(path)
    write(path, ALICE_TOML.replace(f'password = "{HASH}"', 'password = "hunter2hunter2"'))
    with caplog.at_level(logging.INFO, logger="postguard.accounts"):
        assert store.maybe_reload() is False
        assert store.maybe_reload() is False  # same broken version: no second line
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.name == "postguard.accounts"
    message = record.getMessage()
    assert f"{path}: account.alice.password: not an argon2id hash" in message
    assert "still using the previous 1 accounts" in message
    assert "hunter2" not in message
    assert store.get("alice") is not None  # old accounts still served
    write(path, "[account.bob]\n")  # fixed: loads again
    assert store.maybe_reload() is True
    assert [account.name for account in store.accounts()] == ["bob"]


def test_removed_file_means_no_accounts(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(path, ALICE_TOML)
    store = FileCredentialStore(path)
    path.unlink()
    with caplog.at_level(logging.INFO, logger="postguard.accounts"):
        assert store.maybe_reload() is True
    assert store.accounts() == []
    assert caplog.records[0].levelno == logging.WARNING


async def test_watch_reloads_on_change(path: Path) -> None:
    write(path, ALICE_TOML)
    reloaded = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Store(FileCredentialStore):
        def maybe_reload(self) -> bool:
            changed = super().maybe_reload()
            if changed:
                loop.call_soon_threadsafe(reloaded.set)
            return changed

    store = Store(path)
    task = asyncio.create_task(store.watch(0.01))
    write(path, "[account.bob]\n")
    try:
        await asyncio.wait_for(reloaded.wait(), timeout=10)
    finally:
        task.cancel()
    assert [account.name for account in store.accounts()] == ["bob"]


async def test_watch_refuses_a_non_positive_interval(path: Path) -> None:
    with pytest.raises(ValueError):
        await FileCredentialStore(path).watch(0)


# --- writing ---------------------------------------------------------------------------------


def test_written_file_is_mode_0600_whatever_the_umask(path: Path) -> None:
    old = os.umask(0)
    try:
        write_accounts_file(path, [Account(name="alice")])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["accounts.toml"]  # no tmp left


def test_write_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "accounts.toml"
    write_accounts_file(path, [])
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert FileCredentialStore(path).accounts() == []


def test_add_update_delete(path: Path, hasher: CountingHasher) -> None:
    store = FileCredentialStore(path, hasher=hasher)
    store.add(Account(name="alice", addresses=("alice@example.org",)))
    with pytest.raises(AccountExistsError):
        store.add(Account(name="alice"))
    updated = store.update(
        "ALICE", lambda a: Account(name=a.name, addresses=a.addresses, disabled=True)
    )
    assert updated.disabled
    assert FileCredentialStore(path).get("alice") == updated  # on disk, not only in memory
    assert store.delete("alice").name == "alice"
    with pytest.raises(UnknownAccountError):
        store.delete("alice")
    with pytest.raises(UnknownAccountError):
        store.update("not a name", lambda a: a)
    assert FileCredentialStore(path).accounts() == []


def test_write_re_reads_the_file_so_other_edits_are_kept(path: Path) -> None:
    store = FileCredentialStore(path)
    write_accounts_file(path, [Account(name="bob")])  # another `postguard user` run
    store.add(Account(name="alice"))
    assert [a.name for a in FileCredentialStore(path).accounts()] == ["alice", "bob"]


def test_write_refuses_to_clobber_a_broken_file(path: Path) -> None:
    store = FileCredentialStore(path)
    write(path, "[account.alice\n")
    with pytest.raises(ConfigError):
        store.add(Account(name="bob"))
    assert path.read_text() == "[account.alice\n"


def test_scram_credentials_survive_a_write(path: Path) -> None:
    store = FileCredentialStore(path)
    store.add(Account(name="alice", scram=SCRAM))
    alice = FileCredentialStore(path).get("alice")
    assert alice is not None and alice.scram == SCRAM
    assert isinstance(alice.scram, ScramCredentials)
