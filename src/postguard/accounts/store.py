"""The credential store interface the SASL layer talks to, and its shared password check.

Owns `CredentialStore` (the Protocol every back end implements: the TOML file today, SQL
later), `StoreUnavailable` (a back end that cannot answer right now), and
`PasswordVerifier`, the constant-work argon2 check every back end should reuse.

Theory of operation: a store answers lookups from memory or its back end; the only expensive
operation is `verify_password`, which runs argon2 in a worker thread so the event loop keeps
serving other sessions. The SASL layer intersects `mechanisms_available()` with
``auth.mechanisms`` to decide what EHLO advertises.

Must not: speak SMTP, choose replies, or count failures (brute-force limits live with the
session). Never log a password, a hash or a key.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from postguard.accounts.model import Account
from postguard.accounts.passwords import DEFAULT_HASHER, Argon2idHasher

__all__ = [
    "MAX_CONCURRENT_PASSWORD_CHECKS",
    "CredentialStore",
    "PasswordVerifier",
    "StoreUnavailable",
]

# Each argon2 verification holds 64 MiB (passwords.ARGON2_PARAMETERS) and 4 lanes of CPU;
# 4 at a time caps that at 256 MiB and 16 lanes. Further attempts wait their turn, which
# costs an attacker the same as a legitimate client and never blocks the event loop.
MAX_CONCURRENT_PASSWORD_CHECKS = 4


class StoreUnavailable(Exception):
    """The credential back end cannot answer now (database down, I/O error).

    The session answers ``454 4.7.0 Temporary authentication failure`` (RFC 4954 §6) and
    does not count it as a failed attempt. The message is for the log; it must not contain
    credentials.
    """


class CredentialStore(Protocol):
    """Where accounts and their credentials come from.

    Names are matched case-insensitively (stores keep them lowercase, see
    `model.normalize_account_name`); a name that is not a valid account name is simply not
    found. Every method may raise `StoreUnavailable`; none raises for "not found".
    """

    def get(self, name: str) -> Account | None:
        """Return the account called ``name``, disabled or not; None if there is none.

        Callers that authenticate must check `Account.disabled` (or use
        `verify_password`, which does).
        """
        ...

    def find_by_address(self, address: str) -> Account | None:
        """Return the enabled account listing ``address`` exactly (for OAuth claims).

        Only full addresses count, never ``*@domain`` wildcards: a token for
        bob@example.org must not log in as whoever may send for all of example.org. When
        several enabled accounts list the address, the answer is None (ambiguous: fail
        closed). Case-insensitive.
        """
        ...

    async def verify_password(self, name: str, password: str) -> Account | None:
        """Check a PLAIN/LOGIN password; return the account on success, else None.

        Contract: unknown names, disabled accounts and accounts without a password hash do
        the same argon2 work as a real check (against a dummy hash) and return None, so the
        time taken does not reveal which names exist. Runs argon2 off the event loop.
        """
        ...

    def has_cram_secrets(self) -> bool:
        """Tell whether any enabled account has a CRAM-MD5 secret (else CRAM-MD5 is hidden)."""
        ...

    def mechanisms_available(self) -> set[str]:
        """SASL mechanisms the stored credentials of enabled accounts can serve.

        ``PLAIN`` and ``LOGIN`` if any account has a password hash, ``SCRAM-SHA-256`` if
        any has SCRAM keys (also standing for ``SCRAM-SHA-256-PLUS``), ``CRAM-MD5`` if any
        has a CRAM-MD5 secret. OAuth mechanisms do not depend on the store.
        """
        ...


class PasswordVerifier:
    """Constant-work argon2 verification, off the event loop and bounded in concurrency.

    Every store's `verify_password` should be ``return await verifier.verify(self.get(name),
    password)``.
    """

    def __init__(
        self,
        hasher: Argon2idHasher = DEFAULT_HASHER,
        *,
        max_concurrent: int = MAX_CONCURRENT_PASSWORD_CHECKS,
    ) -> None:
        """Verify with ``hasher``, at most ``max_concurrent`` at a time."""
        self._hasher = hasher
        self._slots = asyncio.Semaphore(max_concurrent)

    async def verify(self, account: Account | None, password: str) -> Account | None:
        """Return ``account`` if it may log in with ``password``, else None.

        Args:
            account: The account looked up by name, or None if there is none.
            password: The password the client sent.

        Returns:
            ``account`` when it exists, is enabled, has a password hash and the password
            matches it; None otherwise, after the same amount of argon2 work.
        """
        enabled = account is not None and not account.disabled
        password_hash = account.password_hash if account is not None and enabled else None
        # SECURITY: user enumeration by timing. An unknown or disabled name, or one without
        # a password, is checked against a dummy hash with the same parameters, so every
        # path costs one argon2 run. (The dummy hash is made on the first such call, which
        # therefore costs two.)
        async with self._slots:
            if password_hash is not None:
                matched = await asyncio.to_thread(self._hasher.verify, password_hash, password)
            else:
                await asyncio.to_thread(self._verify_dummy, password)
                matched = False
        return account if matched else None

    def _verify_dummy(self, password: str) -> None:
        self._hasher.verify(self._hasher.dummy_hash(), password)
