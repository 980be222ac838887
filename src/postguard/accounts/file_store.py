"""`FileCredentialStore`: accounts in a TOML file, reloaded when it changes.

The accounts file (``auth.accounts_file``, default ``<data_dir>/accounts.toml``), one table
per account::

    [account.alice]                      # account name = SASL username; lowercase ASCII
    addresses = ["alice@example.org", "*@alice.example"]
    password = "$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>"
    scram_sha_256 = "SCRAM-SHA-256$100000:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>"
    # cram_md5 = "..."                   # only when set explicitly
    disabled = false

    [account."bob@example.org"]          # names with "@" or "." are quoted TOML keys
    addresses = ["bob@example.org"]
    password = "$argon2id$..."

- ``addresses``: what the account may use as MAIL FROM: full addresses, or ``*@domain`` for
  every address of a domain (not its subdomains). Case-insensitive; default none.
- ``password``: argon2id hash (PHC string) for PLAIN and LOGIN. Absent: no password login.
- ``scram_sha_256``: SCRAM-SHA-256 keys in PostgreSQL's ``rolpassword`` format, so verifiers
  can be copied from ``pg_authid``; at least 4096 iterations (RFC 7677 §4). Absent: no SCRAM.
- ``cram_md5``: the password itself, for CRAM-MD5 (RFC 2195), which cannot work from a hash.
  Anyone who reads it can log in; the server logs a warning per account that has one, and
  offers CRAM-MD5 only if some account does.
- ``disabled``: true refuses every login (default false).

Every other key is an error. A missing file means no accounts.

Theory of operation: the store keeps an immutable snapshot of the accounts in memory and
answers every lookup from it. `maybe_reload` compares the file's (mtime_ns, size, inode) with
the version loaded and re-reads on a change; `watch` does that periodically. A broken file at
start-up raises `ConfigError`; a broken file on reload logs ONE error line (file, key,
problem) and keeps serving the previous accounts until the file changes again. Writes (from
``postguard user``) take a lock on the directory, re-read the file, and replace it
atomically (`file_format.write_accounts_file`), so concurrent edits are not lost and the
server never reads half a file.

Must not: speak SMTP or count failures. Never log a credential; log lines name accounts and
keys only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from postguard.accounts.file_format import (
    FileStamp,
    locked_directory,
    read_accounts_file,
    stat_stamp,
    write_accounts_file,
)
from postguard.accounts.model import Account, normalize_account_name
from postguard.accounts.passwords import DEFAULT_HASHER, Argon2idHasher
from postguard.accounts.store import PasswordVerifier
from postguard.config.errors import ConfigError

__all__ = ["AccountExistsError", "FileCredentialStore", "UnknownAccountError"]

logger = logging.getLogger("postguard.accounts")

# A stamp that never equals a real one: the file could not even be stat'ed (EACCES...).
_UNSTATABLE: FileStamp = (-1, -1, -1)


class AccountExistsError(ValueError):
    """`FileCredentialStore.add`: an account with that name already exists."""


class UnknownAccountError(LookupError):
    """`FileCredentialStore.update`/`delete`: no account has that name."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Snapshot:
    """One loaded version of the file, with the indexes lookups need."""

    accounts: Mapping[str, Account]
    by_address: Mapping[str, tuple[str, ...]]  # exact address -> enabled account names
    mechanisms: frozenset[str]

    @classmethod
    def of(cls, accounts: Mapping[str, Account]) -> _Snapshot:
        by_address: dict[str, tuple[str, ...]] = {}
        mechanisms: set[str] = set()
        for account in accounts.values():
            if account.disabled:
                continue
            mechanisms.update(account.mechanisms())
            for address in account.addresses:
                if not address.startswith("*@"):
                    by_address[address] = (*by_address.get(address, ()), account.name)
        return cls(
            accounts=MappingProxyType(dict(accounts)),
            by_address=MappingProxyType(by_address),
            mechanisms=frozenset(mechanisms),
        )


def _existing_name(name: str) -> str:
    """The canonical form of ``name``; an invalid name cannot exist, so it is unknown."""
    try:
        return normalize_account_name(name)
    except ValueError:
        raise UnknownAccountError(name) from None


class FileCredentialStore:
    """A `CredentialStore` backed by the accounts file (format in the module docstring)."""

    def __init__(self, path: Path, *, hasher: Argon2idHasher = DEFAULT_HASHER) -> None:
        """Load the accounts file.

        Args:
            path: The accounts file; a missing file means no accounts.
            hasher: argon2id parameters for password checks (tests use cheap ones).

        Raises:
            ConfigError: The file exists but cannot be read or is not a valid accounts file.
        """
        self.path = path
        self._verifier = PasswordVerifier(hasher)
        self._reload_lock = threading.Lock()
        stamp, accounts = read_accounts_file(path)
        self._seen: FileStamp | None = stamp  # last version tried, loaded or not
        self._snapshot = _Snapshot.of(accounts)

    # --- CredentialStore ------------------------------------------------------------------

    def get(self, name: str) -> Account | None:
        """Return the account called ``name`` (case-insensitive), disabled or not."""
        try:
            return self._snapshot.accounts.get(normalize_account_name(name))
        except ValueError:
            return None

    def find_by_address(self, address: str) -> Account | None:
        """Return the one enabled account listing exactly ``address`` (not via a wildcard)."""
        snapshot = self._snapshot
        names = snapshot.by_address.get(address.lower(), ())
        # SECURITY: two accounts claiming one address is ambiguous; an OAuth identity must
        # map to exactly one account or to none.
        return snapshot.accounts[names[0]] if len(names) == 1 else None

    async def verify_password(self, name: str, password: str) -> Account | None:
        """Check a password with constant work (see `CredentialStore.verify_password`)."""
        return await self._verifier.verify(self.get(name), password)

    def has_cram_secrets(self) -> bool:
        """Tell whether an enabled account has a CRAM-MD5 secret."""
        return "CRAM-MD5" in self._snapshot.mechanisms

    def mechanisms_available(self) -> set[str]:
        """SASL mechanisms the enabled accounts' credentials can serve."""
        return set(self._snapshot.mechanisms)

    # --- inspection -----------------------------------------------------------------------

    def accounts(self) -> list[Account]:
        """All accounts, disabled ones included, sorted by name."""
        return sorted(self._snapshot.accounts.values(), key=lambda account: account.name)

    def warnings(self) -> list[str]:
        """Lines for the server to log as WARNINGs at start-up (and after changes).

        One per account with a CRAM-MD5 secret, and one if the file can be read by group
        or others.
        """
        lines = [
            f"{self.path}: account {account.name} has a CRAM-MD5 secret (plaintext-equivalent)"
            for account in self.accounts()
            if account.cram_secret is not None
        ]
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except OSError:
            return lines
        if mode & 0o077:
            lines.append(
                f"{self.path}: readable by group or others (mode {mode:04o}); "
                "it holds password hashes, run chmod 600"
            )
        return lines

    # --- reloading ------------------------------------------------------------------------

    def maybe_reload(self) -> bool:
        """Re-read the file if it changed since the version last tried.

        A broken new version is logged once (ERROR: file, key, problem) and the previous
        accounts stay in use; it is tried again only after the next change. A removed file
        means no accounts (logged as a WARNING). Safe to call from a worker thread.

        Returns:
            True if a new set of accounts is now in use.
        """
        with self._reload_lock:
            try:
                stamp = stat_stamp(self.path)
            except OSError:
                stamp = _UNSTATABLE
            if stamp == self._seen:
                return False
            self._seen = stamp
            try:
                stamp, accounts = read_accounts_file(self.path)
            except ConfigError as exc:
                count = len(self._snapshot.accounts)
                logger.error(
                    "accounts file not reloaded, still using the previous %d accounts: %s",
                    count,
                    exc,
                )
                return False
            self._seen = stamp
            self._snapshot = _Snapshot.of(accounts)
        if stamp is None:
            logger.warning("accounts file %s is missing: no accounts", self.path)
        else:
            logger.info("accounts reloaded from %s (%d accounts)", self.path, len(accounts))
        return True

    async def watch(self, interval: float) -> None:
        """Call `maybe_reload` every ``interval`` seconds, in a worker thread, until cancelled.

        Raises:
            ValueError: ``interval`` is not positive.
        """
        if interval <= 0:
            raise ValueError("watch interval must be positive")
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.maybe_reload)

    # --- writing (postguard user) ---------------------------------------------------------

    def _modify(self, change: Callable[[dict[str, Account]], None]) -> None:
        """Lock, re-read the file, apply ``change`` in place, write it back atomically."""
        with locked_directory(self.path):
            _, accounts = read_accounts_file(self.path)
            change(accounts)
            write_accounts_file(self.path, accounts.values())
            with self._reload_lock:
                self._seen = stat_stamp(self.path)
                self._snapshot = _Snapshot.of(accounts)

    def add(self, account: Account) -> None:
        """Add a new account to the file.

        Raises:
            AccountExistsError: An account has that name already.
            ConfigError: The file on disk is broken (it is left untouched).
            OSError: The file could not be written (it is left untouched).
        """

        def change(accounts: dict[str, Account]) -> None:
            if account.name in accounts:
                raise AccountExistsError(account.name)
            accounts[account.name] = account

        self._modify(change)

    def update(self, name: str, change: Callable[[Account], Account]) -> Account:
        """Replace the account called ``name`` by ``change(account)`` and return the result.

        ``change`` runs under the lock and must keep the name.

        Raises:
            UnknownAccountError: No account has that name.
            ConfigError: The file on disk is broken (it is left untouched).
            OSError: The file could not be written (it is left untouched).
        """
        key = _existing_name(name)
        result: list[Account] = []

        def apply(accounts: dict[str, Account]) -> None:
            if key not in accounts:
                raise UnknownAccountError(name)
            new = change(accounts[key])
            if new.name != key:
                raise ValueError("update must not rename an account")
            accounts[key] = new
            result.append(new)

        self._modify(apply)
        return result[0]

    def delete(self, name: str) -> Account:
        """Remove the account called ``name`` from the file; return it.

        Raises:
            UnknownAccountError: No account has that name.
            ConfigError: The file on disk is broken (it is left untouched).
            OSError: The file could not be written (it is left untouched).
        """
        key = _existing_name(name)
        removed: list[Account] = []

        def change(accounts: dict[str, Account]) -> None:
            if key not in accounts:
                raise UnknownAccountError(name)
            removed.append(accounts.pop(key))

        self._modify(change)
        return removed[0]
