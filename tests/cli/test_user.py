"""``postguard user``: accounts added, listed, re-passworded and deleted through the CLI.

The main flow runs ``python -m postguard`` as a subprocess, the password on standard input,
and checks the accounts file it leaves behind. Error statuses and the interactive prompt
run in-process through `main` (the prompt reads a terminal, the one thing replaced here).
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from postguard.accounts import FileCredentialStore, passwords
from postguard.accounts.scram_keys import parse_scram_verifier, scram_keys
from postguard.cli import user as user_cli
from postguard.cli.main import build_parser, main

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "tr0ub4dor&3 is too short? no"


def postguard(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "postguard", *args]
    # SECURITY: the property under test: no password is ever on a command line.
    assert all(PASSWORD not in arg and NEW_PASSWORD not in arg for arg in argv)
    environment = {k: v for k, v in os.environ.items() if k != "POSTGUARD_DATA_DIR"}
    environment.update(env or {})
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=120, env=environment
    )


def read_accounts(path: Path) -> dict[str, dict[str, object]]:
    with path.open("rb") as file:
        document = tomllib.load(file)
    accounts: dict[str, dict[str, object]] = document["account"]
    return accounts


def test_add_list_passwd_delete_through_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    accounts_file = data / "accounts.toml"

    added = postguard(
        "user", "add", "Alice", "--address", "alice@example.org", "--address", "*@Alice.example",
        "--password-stdin", "--data-dir", str(data), stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout == f"added account alice (SCRAM-SHA-256, PLAIN, LOGIN) to {accounts_file}\n"
    assert stat.S_IMODE(accounts_file.stat().st_mode) == 0o600
    alice = read_accounts(accounts_file)["alice"]
    assert alice["addresses"] == ["alice@example.org", "*@alice.example"]
    assert passwords.verify(str(alice["password"]), PASSWORD)
    scram = parse_scram_verifier(str(alice["scram_sha_256"]))
    assert (scram.stored_key, scram.server_key) == scram_keys(
        PASSWORD, scram.salt, scram.iterations
    )
    assert "cram_md5" not in alice
    assert PASSWORD not in accounts_file.read_text()

    listed = postguard("user", "list", "--json", "--data-dir", str(data))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "name": "alice",
            "addresses": ["alice@example.org", "*@alice.example"],
            "mechanisms": ["SCRAM-SHA-256", "PLAIN", "LOGIN"],
            "disabled": False,
        }
    ]

    changed = postguard(
        "user", "passwd", "alice", "--password-stdin", "--data-dir", str(data),
        stdin=NEW_PASSWORD + "\r\nignored second line\n",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    alice_after = read_accounts(accounts_file)["alice"]
    assert passwords.verify(str(alice_after["password"]), NEW_PASSWORD)
    assert not passwords.verify(str(alice_after["password"]), PASSWORD)
    scram = parse_scram_verifier(str(alice_after["scram_sha_256"]))
    assert scram.stored_key == scram_keys(NEW_PASSWORD, scram.salt, scram.iterations)[0]
    assert alice_after["addresses"] == alice["addresses"]

    deleted = postguard("user", "delete", "alice", "--data-dir", str(data))
    assert deleted.returncode == 0, deleted.stderr
    assert "account" not in tomllib.loads(accounts_file.read_text())


def test_cram_md5_only_on_request_and_with_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = postguard(
        "user", "add", "bob", "--address", "bob@example.org", "--no-scram", "--cram-md5",
        "--password-stdin", "--data-dir", str(data), stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning: account bob has a CRAM-MD5 secret (plaintext-equivalent)" in result.stderr
    bob = read_accounts(data / "accounts.toml")["bob"]
    assert bob["cram_md5"] == PASSWORD
    assert "scram_sha_256" not in bob
    table = postguard("user", "list", "--data-dir", str(data))
    assert table.stdout.splitlines() == [
        "NAME  ADDRESSES        MECHANISMS            DISABLED",
        "bob   bob@example.org  CRAM-MD5,PLAIN,LOGIN  no",
    ]
    assert "CRAM-MD5 secret" in table.stderr


def test_config_file_selects_the_accounts_file(tmp_path: Path) -> None:
    config = tmp_path / "postguard.toml"
    target = tmp_path / "etc" / "users.toml"
    config.write_text(f'[server]\ndata_dir = "var"\n[auth]\naccounts_file = "{target}"\n')
    result = postguard(
        "user", "add", "carol", "--address", "carol@example.org", "--password-stdin",
        "--config", str(config), stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "carol" in read_accounts(target)
    assert not (tmp_path / "var").exists()


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"POSTGUARD_DATA_DIR": str(tmp_path / "env-data")}
    result = postguard("user", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_there_is_no_option_that_takes_a_password_on_the_command_line() -> None:
    parser = build_parser()
    assert main(["user", "add", "x", "--address", "x@example.org", "--password", PASSWORD]) == 64
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    user_actions = next(a for a in subcommands["user"]._actions if a.dest == "user_command")
    for action_parser in user_actions.choices.values():
        for option in action_parser._actions:
            if "password" in option.dest:
                assert option.dest == "password_stdin" and option.nargs == 0


# --- in-process: exit statuses ---------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("POSTGUARD_DATA_DIR", raising=False)
    return tmp_path / "data"


def run(monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(list(args))


def add_alice(monkeypatch: pytest.MonkeyPatch, data: Path) -> None:
    status = run(
        monkeypatch, "user", "add", "alice", "--address", "alice@example.org", "--no-scram",
        "--password-stdin", "--data-dir", str(data), stdin=PASSWORD,
    )  # fmt: skip
    assert status == 0


@pytest.mark.parametrize("action", ["passwd", "delete"])
def test_unknown_account_is_67(
    monkeypatch: pytest.MonkeyPatch, data: Path, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--password-stdin"] if action == "passwd" else []
    assert (
        run(monkeypatch, "user", action, "nobody", *extra, "--data-dir", str(data), stdin=PASSWORD)
        == 67
    )
    assert capsys.readouterr().err == "postguard: no account named 'nobody'\n"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        pytest.param(["alice"], PASSWORD, "account 'alice' already exists", id="exists"),
        pytest.param(
            ["bob", "--address", "bob"], PASSWORD, 'invalid mailbox "bob"', id="bad-address"
        ),
        pytest.param(["b b"], PASSWORD, 'invalid account name "b b"', id="bad-name"),
        pytest.param(["bob"], "short", "password too short", id="short-password"),
        pytest.param(["bob"], "", "no password on standard input", id="no-password"),
        pytest.param(["bob"], "\u0007" * 9, "SASLprep", id="scram-refuses-password"),
    ],
)
def test_usage_errors_are_64(
    monkeypatch: pytest.MonkeyPatch,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    stdin: str,
    message: str,
) -> None:
    add_alice(monkeypatch, data)
    capsys.readouterr()
    if "--address" not in args:
        args = [*args, "--address", "x@example.org"]
    status = run(
        monkeypatch, "user", "add", *args, "--password-stdin", "--data-dir", str(data), stdin=stdin
    )
    assert status == 64
    assert message in capsys.readouterr().err


def test_broken_accounts_file_is_78(
    monkeypatch: pytest.MonkeyPatch, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data.mkdir()
    (data / "accounts.toml").write_text('[account.alice]\npassword = "hunter2hunter2"\n')
    assert run(monkeypatch, "user", "list", "--data-dir", str(data)) == 78
    err = capsys.readouterr().err
    assert "account.alice.password: not an argon2id hash" in err
    assert "hunter2" not in err


def test_broken_config_is_78(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "postguard.toml"
    config.write_text('[auth]\nmechanisms = ["NTLM"]\n')
    assert (
        run(monkeypatch, "user", "list", "--config", str(config), "--data-dir", str(tmp_path)) == 78
    )
    assert 'auth.mechanisms[0]: unknown value "NTLM"' in capsys.readouterr().err


UNWRITABLE_DIR = Path("/sys/kernel")  # sysfs: no new files, not even for root


@pytest.mark.skipif(not UNWRITABLE_DIR.is_dir(), reason="needs Linux sysfs for a read-only dir")
def test_unwritable_directory_is_74(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(
        monkeypatch, "user", "add", "bob", "--address", "b@example.org", "--no-scram",
        "--password-stdin", "--data-dir", str(UNWRITABLE_DIR), stdin=PASSWORD,
    )  # fmt: skip
    assert status == 74
    assert capsys.readouterr().err.startswith(
        f"postguard: cannot write {UNWRITABLE_DIR / 'accounts.toml'}: "
    )


def test_unreadable_accounts_path_is_78(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run(monkeypatch, "user", "list", "--data-dir", str(blocker)) == 78
    assert capsys.readouterr().err == (
        f"postguard: {blocker / 'accounts.toml'}: cannot read: Not a directory\n"
    )


# --- in-process: the prompt ------------------------------------------------------------------


def test_prompt_asks_twice_without_echo(monkeypatch: pytest.MonkeyPatch, data: Path) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr(user_cli.getpass, "getpass", fake_getpass)
    status = run(
        monkeypatch,
        "user",
        "add",
        "dave",
        "--address",
        "d@example.org",
        "--no-scram",
        "--data-dir",
        str(data),
    )
    assert status == 0
    assert prompts == ["New password: ", "Repeat password: "]
    account = FileCredentialStore(data / "accounts.toml").get("dave")
    assert account is not None and account.password_hash is not None
    assert passwords.verify(account.password_hash, PASSWORD)


def test_prompt_mismatch_is_64(
    monkeypatch: pytest.MonkeyPatch, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr(user_cli.getpass, "getpass", lambda prompt: next(answers))
    status = run(
        monkeypatch, "user", "add", "dave", "--address", "d@example.org", "--data-dir", str(data)
    )
    assert status == 64
    assert "the passwords do not match" in capsys.readouterr().err
    assert not (data / "accounts.toml").exists()


def test_passwd_keeps_cram_md5_and_scram_choices(
    monkeypatch: pytest.MonkeyPatch, data: Path
) -> None:
    status = run(
        monkeypatch, "user", "add", "erin", "--address", "e@example.org", "--no-scram",
        "--cram-md5", "--password-stdin", "--data-dir", str(data), stdin=PASSWORD,
    )  # fmt: skip
    assert status == 0
    assert (
        run(
            monkeypatch,
            "user",
            "passwd",
            "ERIN",
            "--password-stdin",
            "--data-dir",
            str(data),
            stdin=NEW_PASSWORD,
        )
        == 0
    )
    erin = FileCredentialStore(data / "accounts.toml").get("erin")
    assert erin is not None
    assert (erin.scram, erin.cram_secret) == (None, NEW_PASSWORD)
