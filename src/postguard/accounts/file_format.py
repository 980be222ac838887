"""Reading and writing the accounts file's text (the format is documented in `file_store`).

Owns parsing (bytes on disk to ``{name: Account}``, every error a `ConfigError` naming the
file and key, as for `postguard.toml`), rendering (accounts to TOML text that parses back
equal), and the atomic, durable replacement of the file.

Reuses `postguard.config.reader.Table` so that both files report errors the same way:
``accounts.toml: account.alice.addresses[1]: invalid mailbox "x"``.

Must not: cache, watch or log (that is `file_store`). SECURITY: error messages never quote
the value of ``password``, ``scram_sha_256`` or ``cram_md5``: a misplaced plaintext password
would otherwise end up in a log line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from postguard.accounts.model import Account, normalize_account_name, normalize_address_pattern
from postguard.accounts.passwords import is_argon2id_hash
from postguard.accounts.scram_keys import format_scram_verifier, parse_scram_verifier
from postguard.config.errors import ConfigError
from postguard.config.reader import (
    Reader,
    Table,
    array,
    boolean,
    describe_toml_error,
    read_section,
    string,
)
from postguard.config.syntax import quote
from postguard.config.units import MiB, format_size

__all__ = [
    "ACCOUNTS_FILE_MODE",
    "MAX_ACCOUNTS_FILE_OCTETS",
    "FileStamp",
    "format_accounts",
    "locked_directory",
    "parse_accounts",
    "read_accounts_file",
    "stat_stamp",
    "write_accounts_file",
]

# About 400 octets per account with SCRAM (argon2 PHC string ~100, verifier ~110, addresses):
# 16 MiB holds some 40,000 accounts, far beyond what a flat file should carry (use SQL).
MAX_ACCOUNTS_FILE_OCTETS = 16 * MiB
ACCOUNTS_FILE_MODE = 0o600

FileStamp = tuple[int, int, int]
"""``(st_mtime_ns, st_size, st_ino)``: what tells one version of the file from the next."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HEADER = """\
# postguard accounts. Managed with `postguard user add|passwd|delete|list`; the server
# re-reads this file when it changes. Hand edits are fine, but `postguard user` rewrites the
# file without comments. Keep it mode 0600: it holds password hashes.
"""


def _argon2id(text: str) -> str:
    if not is_argon2id_hash(text):
        raise ValueError(
            'not an argon2id hash (expected "$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>"; '
            "set passwords with `postguard user passwd`)"
        )
    return text


def _secret(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


# TOML key -> (Account field, reader)
_ACCOUNT: Mapping[str, tuple[str, Reader]] = {
    "addresses": ("addresses", array(normalize_address_pattern)),
    "password": ("password_hash", string(_argon2id)),
    "scram_sha_256": ("scram", string(parse_scram_verifier)),
    "cram_md5": ("cram_secret", string(_secret)),
    "disabled": ("disabled", boolean),
}
_READERS = {key: reader for key, (_, reader) in _ACCOUNT.items()}


def parse_accounts(document: Mapping[str, Any], path: Path) -> dict[str, Account]:
    """Turn a parsed accounts document into accounts.

    Args:
        document: The TOML document.
        path: The file, for error messages.

    Returns:
        ``{name: Account}`` in file order.

    Raises:
        ConfigError: Unknown key, wrong type, bad name, address or credential.
    """
    root = Table(path, "", document)
    root.check_keys(("account",))
    table = root.table("account")
    accounts: dict[str, Account] = {}
    for raw in table.names():
        try:
            name = normalize_account_name(raw)
        except ValueError as exc:
            raise table.error(raw, str(exc)) from None
        if name != raw:
            raise table.error(raw, f"account names are lowercase: write {quote(name)}")
        values = read_section(table.table(raw), _READERS)
        fields = {_ACCOUNT[key][0]: value for key, value in values.items()}
        accounts[name] = Account(name=name, **fields)
    return accounts


def stat_stamp(path: Path) -> FileStamp | None:
    """The file's `FileStamp`, or None if it does not exist.

    Raises:
        OSError: The file cannot be examined (other than not existing).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def read_accounts_file(path: Path) -> tuple[FileStamp | None, dict[str, Account]]:
    """Read and parse the accounts file.

    Args:
        path: The file. A missing file is an empty one.

    Returns:
        The stamp of the version read (from the open file, so it matches the content;
        None for a missing file) and its accounts.

    Raises:
        ConfigError: The file cannot be read, is too large, not UTF-8, not TOML, or not a
            valid accounts file.
    """
    try:
        with path.open("rb") as file:
            st = os.fstat(file.fileno())
            data = file.read(MAX_ACCOUNTS_FILE_OCTETS + 1)
    except FileNotFoundError:
        return None, {}
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_ACCOUNTS_FILE_OCTETS:
        limit = format_size(MAX_ACCOUNTS_FILE_OCTETS)
        raise ConfigError(path, "", f"larger than {limit}; use a database-backed store")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not valid UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages name a position and a problem, never the text at it.
        raise ConfigError(path, "", describe_toml_error(exc)) from None
    return (st.st_mtime_ns, st.st_size, st.st_ino), parse_accounts(document, path)


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else quote(name)


def format_accounts(accounts: Iterable[Account]) -> str:
    """Render accounts as the accounts file, sorted by name; `parse_accounts` reads it back.

    Args:
        accounts: The accounts (names unique).

    Returns:
        TOML text.
    """
    lines = [_HEADER.rstrip("\n")]
    for account in sorted(accounts, key=lambda a: a.name):
        lines += ["", f"[account.{_key(account.name)}]"]
        lines.append("addresses = [" + ", ".join(quote(a) for a in account.addresses) + "]")
        if account.password_hash is not None:
            lines.append(f"password = {quote(account.password_hash)}")
        if account.scram is not None:
            lines.append(f"scram_sha_256 = {quote(format_scram_verifier(account.scram))}")
        if account.cram_secret is not None:
            lines.append("# CRAM-MD5 secret: plaintext-equivalent, anyone reading it can log in.")
            lines.append(f"cram_md5 = {quote(account.cram_secret)}")
        lines.append(f"disabled = {'true' if account.disabled else 'false'}")
    return "\n".join(lines) + "\n"


def _owner_for(path: Path) -> tuple[int, int] | None:
    """Owner to give the new file when running as root, so the service user can read it.

    An existing file keeps its owner; a new one gets its directory's (the data directory
    belongs to the service user once the server has run). Not root: the default, us.
    """
    if os.geteuid() != 0:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        st = path.parent.stat()
    return st.st_uid, st.st_gid


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_accounts_file(path: Path, accounts: Iterable[Account]) -> None:
    """Replace the accounts file atomically and durably, mode 0600.

    Maildir discipline (STYLE.md §3): write a temporary file in the same directory, fsync
    it, rename it over the file, fsync the directory. A reader sees the old file or the new
    one, never a mix, and after a crash one of the two is on disk.

    Args:
        path: The accounts file; its directory is created (mode 0700) if missing.
        accounts: The complete new set of accounts.

    Raises:
        OSError: The file could not be written; the old file is then untouched.
    """
    data = format_accounts(accounts).encode("utf-8")
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = _owner_for(path)
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, ACCOUNTS_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as file:
            # SECURITY: exactly 0600 whatever the umask: the file holds password hashes.
            os.fchmod(file.fileno(), ACCOUNTS_FILE_MODE)
            if owner is not None:
                os.fchown(file.fileno(), *owner)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


@contextlib.contextmanager
def locked_directory(path: Path) -> Iterator[None]:
    """Hold an exclusive flock(2) on the accounts file's directory.

    Serialises read-modify-write cycles of `postguard user` invocations. The directory is
    locked, not the file: the file is replaced by rename, so a lock on it would protect an
    inode that is no longer the file.
    """
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
