"""``postguard user add|passwd|delete|list``: manage the accounts file.

Which file: with ``--config FILE``, ``auth.accounts_file`` of that configuration (with
``--data-dir`` overriding its data directory, as for ``serve``); without it, the embedded
defaults' ``<data dir>/accounts.toml``, where the data directory is ``--data-dir``, else
``$POSTGUARD_DATA_DIR``, else ``./postguard-data`` (again as for ``serve``). A running server
picks up the change by itself.

Passwords are read from a no-echo prompt (asked twice) or, with ``--password-stdin``, from
the first line of standard input; never from the command line, where every local user can
read them (``/proc/<pid>/cmdline``, ``ps``) and the shell history keeps them.

Exit statuses: 0 ok; 64 usage (bad name, address or password, account already exists);
67 no such account (``passwd``, ``delete``); 74 the file could not be written; 78 the
configuration or the accounts file is broken.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..accounts.file_store import AccountExistsError, FileCredentialStore, UnknownAccountError
from ..accounts.model import Account, normalize_account_name, normalize_address_pattern
from ..accounts.provisioning import check_new_password, with_password
from ..accounts.scram_keys import DEFAULT_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS
from ..config import ConfigError
from .common import DATA_DIR_ENV, DEFAULT_DATA_DIR, resolve_config
from .main import EX_CONFIG, EX_OK, EX_USAGE

EX_NOUSER = 67  # sysexits(3): "addressee unknown"
EX_IOERR = 74  # sysexits(3): "an error occurred while doing I/O on some file"


class _Failure(Exception):
    """Ends a command with a message on stderr and an exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_parser(sub: Any) -> None:
    """Register ``user`` and its actions."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="configuration file (its auth.accounts_file)")
    common.add_argument(
        "--data-dir",
        type=Path,
        help=f"data directory (default: ${DATA_DIR_ENV} or ./{DEFAULT_DATA_DIR})",
    )
    password = argparse.ArgumentParser(add_help=False)
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )

    parser = sub.add_parser("user", help="manage accounts that may authenticate (SMTP AUTH)")
    actions = parser.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", parents=[common, password], help="add an account")
    add.add_argument("name", help="account name (the SASL user name), e.g. alice")
    add.add_argument(
        "--address",
        action="append",
        required=True,
        dest="addresses",
        metavar="ADDRESS",
        help="sender address the account may use (repeatable); *@example.org for a domain",
    )
    add.add_argument(
        "--scram",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="store SCRAM-SHA-256 keys (default: on)",
    )
    add.add_argument(
        "--scram-iterations",
        type=int,
        default=DEFAULT_SCRAM_ITERATIONS,
        metavar="N",
        help=f"PBKDF2 rounds for SCRAM (default {DEFAULT_SCRAM_ITERATIONS}, "
        f"at least {MIN_SCRAM_ITERATIONS})",
    )
    add.add_argument(
        "--cram-md5",
        action="store_true",
        help="also store the password itself for CRAM-MD5 (plaintext-equivalent; discouraged)",
    )
    add.set_defaults(run=run_add)

    passwd = actions.add_parser(
        "passwd", parents=[common, password], help="set a new password for an account"
    )
    passwd.add_argument("name", help="account name")
    passwd.set_defaults(run=run_passwd)

    delete = actions.add_parser("delete", parents=[common], help="remove an account")
    delete.add_argument("name", help="account name")
    delete.set_defaults(run=run_delete)

    listing = actions.add_parser("list", parents=[common], help="list accounts")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(run=run_list)


def _accounts_file(args: argparse.Namespace) -> Path:
    """The accounts file ``serve`` would use with the same options."""
    return resolve_config(args).auth.accounts_file


def _read_password(args: argparse.Namespace) -> str:
    """The new password: first line of stdin, or asked twice without echo."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise _Failure(EX_USAGE, "no password on standard input")
        return password
    try:
        password = getpass.getpass("New password: ")
        again = getpass.getpass("Repeat password: ")
    except (EOFError, KeyboardInterrupt):
        raise _Failure(EX_USAGE, "no password given") from None
    if password != again:
        raise _Failure(EX_USAGE, "the passwords do not match")
    return password


def _run(args: argparse.Namespace, action: Callable[[FileCredentialStore], int]) -> int:
    """Open the store and run ``action``, turning failures into messages and statuses."""
    path: Path | str = "the accounts file"
    try:
        path = _accounts_file(args)
        return action(FileCredentialStore(path))
    except _Failure as failure:
        print(f"postguard: {failure}", file=sys.stderr)
        return failure.status
    except ConfigError as exc:
        print(f"postguard: {exc}", file=sys.stderr)
        return EX_CONFIG
    except UnknownAccountError as exc:
        print(f"postguard: no account named {exc.args[0]!r}", file=sys.stderr)
        return EX_NOUSER
    except OSError as exc:  # reading problems are ConfigErrors; this is writing
        print(f"postguard: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return EX_IOERR


def _cram_warning(account: Account) -> None:
    if account.cram_secret is not None:
        print(
            f"warning: account {account.name} has a CRAM-MD5 secret (plaintext-equivalent): "
            "anyone who can read the accounts file can log in as it",
            file=sys.stderr,
        )


def run_add(args: argparse.Namespace) -> int:
    """Add an account with a new password."""

    def action(store: FileCredentialStore) -> int:
        try:
            name = normalize_account_name(args.name)
            addresses = tuple(normalize_address_pattern(a) for a in args.addresses)
        except ValueError as exc:
            raise _Failure(EX_USAGE, str(exc)) from None
        if store.get(name) is not None:  # checked again under the lock by add()
            raise _Failure(EX_USAGE, f"account {name!r} already exists (use `user passwd`)")
        password = _read_password(args)
        try:
            account = with_password(
                Account(name=name, addresses=tuple(dict.fromkeys(addresses))),
                password,
                scram=args.scram,
                cram_md5=args.cram_md5,
                scram_iterations=args.scram_iterations,
            )
        except ValueError as exc:
            hint = " (or use --no-scram)" if "SCRAM" in str(exc) else ""
            raise _Failure(EX_USAGE, f"{exc}{hint}") from None
        try:
            store.add(account)
        except AccountExistsError:
            raise _Failure(EX_USAGE, f"account {name!r} already exists") from None
        _cram_warning(account)
        print(f"added account {name} ({', '.join(account.mechanisms())}) to {store.path}")
        return EX_OK

    return _run(args, action)


def run_passwd(args: argparse.Namespace) -> int:
    """Replace an account's password; keeps which mechanisms it has (SCRAM, CRAM-MD5)."""

    def action(store: FileCredentialStore) -> int:
        if store.get(args.name) is None:
            raise UnknownAccountError(args.name)
        password = _read_password(args)
        try:
            check_new_password(password)
        except ValueError as exc:
            raise _Failure(EX_USAGE, str(exc)) from None

        def change(account: Account) -> Account:
            iterations = account.scram.iterations if account.scram else DEFAULT_SCRAM_ITERATIONS
            return with_password(
                account,
                password,
                scram=account.scram is not None,
                cram_md5=account.cram_secret is not None,
                scram_iterations=max(iterations, DEFAULT_SCRAM_ITERATIONS),
            )

        try:
            account = store.update(args.name, change)
        except ValueError as exc:
            raise _Failure(
                EX_USAGE, f"{exc} (or `user delete` and `user add --no-scram`)"
            ) from None
        _cram_warning(account)
        print(f"changed the password of account {account.name} in {store.path}")
        return EX_OK

    return _run(args, action)


def run_delete(args: argparse.Namespace) -> int:
    """Remove an account."""

    def action(store: FileCredentialStore) -> int:
        account = store.delete(args.name)
        print(f"deleted account {account.name} from {store.path}")
        return EX_OK

    return _run(args, action)


def run_list(args: argparse.Namespace) -> int:
    """Show accounts: name, addresses, mechanisms, disabled. Never a credential."""

    def action(store: FileCredentialStore) -> int:
        for warning in store.warnings():
            print(f"warning: {warning}", file=sys.stderr)
        accounts = store.accounts()
        if args.json:
            rows = [
                {
                    "name": account.name,
                    "addresses": list(account.addresses),
                    "mechanisms": list(account.mechanisms()),
                    "disabled": account.disabled,
                }
                for account in accounts
            ]
            print(json.dumps(rows, indent=2))
            return EX_OK
        table = [("NAME", "ADDRESSES", "MECHANISMS", "DISABLED")] + [
            (
                account.name,
                ",".join(account.addresses) or "-",
                ",".join(account.mechanisms()) or "-",
                "yes" if account.disabled else "no",
            )
            for account in accounts
        ]
        widths = [max(len(line[column]) for line in table) for column in range(3)]
        for line in table:
            cells = [cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True)]
            print("  ".join([*cells, line[3]]))
        if not accounts:
            print(f"(no accounts in {store.path})")
        return EX_OK

    return _run(args, action)
