"""Password hashing with argon2id, for PLAIN and LOGIN (and for `postguard user`).

Owns the choice of algorithm and parameters, and the only calls into argon2-cffi.

Parameters: RFC 9106 §4's second recommended option (argon2-cffi's
``profiles.RFC_9106_LOW_MEMORY``): argon2id, t=3 passes, m=64 MiB, p=4 lanes, 128-bit salt,
256-bit tag. The first option (m=2 GiB) is out of reach for a mail server that may verify
several logins at once; see `store.MAX_CONCURRENT_PASSWORD_CHECKS` for the bound on memory.
One verification took 1.1 s of CPU on the 2-vCPU development VM (four lanes on two cores);
a dedicated server core is faster. `store.PasswordVerifier` bounds how many run at once.
The parameters are in every hash (PHC string format), so old hashes keep verifying after a
change and `needs_rehash` tells which ones to renew (``postguard user passwd`` writes a
fresh hash).

Must not: log, or put a password or hash in an exception message. Blocking: every function
here except `is_argon2id_hash` runs argon2 (see above for how long); async callers use a
worker thread (`store.PasswordVerifier`).
"""

from __future__ import annotations

import re
import secrets
import threading

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "ARGON2_PARAMETERS",
    "DEFAULT_HASHER",
    "Argon2idHasher",
    "hash_password",
    "is_argon2id_hash",
    "needs_rehash",
    "verify",
]

ARGON2_PARAMETERS = argon2.profiles.RFC_9106_LOW_MEMORY
"""argon2id, t=3, m=65536 KiB, p=4, 16-octet salt, 32-octet hash (RFC 9106 §4, option 2)."""

# PHC string format as libargon2 writes it: unpadded base64 salt and hash.
_ARGON2ID_PHC = re.compile(r"\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


class Argon2idHasher:
    """argon2id hashing and verification with one set of parameters.

    Thread-safe: argon2-cffi's hasher keeps no state between calls.
    """

    def __init__(self, parameters: argon2.Parameters = ARGON2_PARAMETERS) -> None:
        """Hash with ``parameters`` (argon2id only).

        Raises:
            ValueError: ``parameters`` is not argon2id.
        """
        if parameters.type is not argon2.Type.ID:
            raise ValueError("only argon2id is supported")
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def hash(self, password: str) -> str:
        """Hash ``password`` with a fresh random salt; returns a PHC string."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """Tell whether ``password`` matches ``password_hash``.

        Any hash argon2 cannot read (corrupt, or another algorithm) counts as a mismatch.
        The comparison of the final tag is constant-time (libargon2).
        """
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Tell whether ``password_hash`` was made with other parameters than this hasher's."""
        return self._hasher.check_needs_rehash(password_hash)

    def dummy_hash(self) -> str:
        """A hash of a random secret with this hasher's parameters, made on first use.

        Verifying any password against it costs the same as verifying a real account's
        hash and never succeeds: `store.PasswordVerifier` uses it for unknown names.
        """
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self.hash(secrets.token_urlsafe(32))
            return self._dummy_hash


DEFAULT_HASHER = Argon2idHasher()


def hash_password(password: str) -> str:
    """Hash ``password`` with argon2id and the default parameters (`ARGON2_PARAMETERS`).

    Args:
        password: The password.

    Returns:
        A PHC string, ``$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>``.
    """
    return DEFAULT_HASHER.hash(password)


def verify(password_hash: str, password: str) -> bool:
    """Tell whether ``password`` matches the argon2 hash ``password_hash``.

    Args:
        password_hash: A PHC string; an unreadable one never matches.
        password: The candidate password.

    Returns:
        True on a match.
    """
    return DEFAULT_HASHER.verify(password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """Tell whether ``password_hash`` uses parameters other than `ARGON2_PARAMETERS`."""
    return DEFAULT_HASHER.needs_rehash(password_hash)


def is_argon2id_hash(text: str) -> bool:
    """Tell whether ``text`` is a well-formed argon2id PHC string (cheap: no hashing)."""
    if not _ARGON2ID_PHC.fullmatch(text):
        return False
    try:
        argon2.extract_parameters(text)
    except InvalidHashError:
        return False
    return True
