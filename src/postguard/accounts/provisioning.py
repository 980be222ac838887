"""Turning a new password into the credentials an account stores.

Owns the rules for passwords set through postguard (length, characters) and
`with_password`, which derives every stored form at once: the argon2id hash always, SCRAM
keys and the CRAM-MD5 secret on request. ``postguard user add`` and ``passwd`` call it; a
future admin API would too.

Must not: read or write files, prompt, or log. Blocking: argon2 runs here (tens of ms).
"""

from __future__ import annotations

import dataclasses

from postguard.accounts.model import Account
from postguard.accounts.passwords import DEFAULT_HASHER, Argon2idHasher
from postguard.accounts.scram_keys import DEFAULT_SCRAM_ITERATIONS, new_scram_credentials

__all__ = ["MAX_PASSWORD_OCTETS", "MIN_PASSWORD_CHARS", "check_new_password", "with_password"]

# NIST SP 800-63B §5.1.1.2: memorised secrets of at least 8 characters.
MIN_PASSWORD_CHARS = 8
# Far above any passphrase (a 10-word diceware phrase is ~60 characters). Keeps a PLAIN
# response (authzid NUL authcid NUL password: at most 254 + 254 + 1024 + 2 octets, 2,048
# after base64) comfortably inside one AUTH line.
MAX_PASSWORD_OCTETS = 1024


def check_new_password(password: str) -> None:
    """Refuse a password postguard will not store.

    Raises:
        ValueError: Shorter than `MIN_PASSWORD_CHARS`, longer than `MAX_PASSWORD_OCTETS`
            in UTF-8, or containing NUL, CR or LF (PLAIN separates its fields with NUL, and
            LOGIN sends the password as one line). The message never quotes the password.
    """
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"password too short (at least {MIN_PASSWORD_CHARS} characters)")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_OCTETS:
        raise ValueError(f"password too long (at most {MAX_PASSWORD_OCTETS} octets)")
    if any(char in password for char in "\0\r\n"):
        raise ValueError("password contains NUL, CR or LF")


def with_password(
    account: Account,
    password: str,
    *,
    scram: bool,
    cram_md5: bool = False,
    hasher: Argon2idHasher = DEFAULT_HASHER,
    scram_iterations: int = DEFAULT_SCRAM_ITERATIONS,
) -> Account:
    """Return ``account`` with every credential replaced by ones for ``password``.

    Args:
        account: The account (its name, addresses and disabled flag are kept).
        password: The new password.
        scram: Store SCRAM-SHA-256 keys (else SCRAM is unavailable to the account).
        cram_md5: Store the password itself as the CRAM-MD5 secret (plaintext-equivalent).
        hasher: The argon2id hasher.
        scram_iterations: PBKDF2 iteration count of the SCRAM keys.

    Returns:
        The new account value.

    Raises:
        ValueError: `check_new_password` refused the password, or SCRAM was asked for and
            the password fails SASLprep (RFC 4013); the message says which.
    """
    check_new_password(password)
    scram_credentials = None
    if scram:
        try:
            scram_credentials = new_scram_credentials(password, iterations=scram_iterations)
        except ValueError as exc:
            raise ValueError(f"password cannot be used with SCRAM (SASLprep: {exc})") from None
    return dataclasses.replace(
        account,
        password_hash=hasher.hash(password),
        scram=scram_credentials,
        # SECURITY: CRAM-MD5 (RFC 2195) keys HMAC-MD5 with the password, so the server must
        # keep the password itself. Only on explicit request; the store warns at start-up.
        cram_secret=password if cram_md5 else None,
    )
