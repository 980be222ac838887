"""Accounts: who may authenticate, with which stored credentials, and as which senders.

Owns the credential side of SMTP AUTH. Modules:

- `model`: `Account`, `ScramCredentials` (frozen; credentials redacted from ``repr``), and
  the syntax of account names and sender address patterns;
- `store`: `CredentialStore`, the Protocol the SASL layer uses; `StoreUnavailable`; and
  `PasswordVerifier`, the constant-work argon2 check every store shares;
- `file_store`: `FileCredentialStore`, accounts in a TOML file reloaded on change (the file
  format is documented there);
- `file_format`: parsing, rendering and atomic replacement of that file;
- `passwords`: argon2id hashing (`hash_password`, `verify`, `needs_rehash`);
- `scram_keys`: SCRAM-SHA-256 key derivation (RFC 5802/7677), SASLprep (RFC 4013), and the
  PostgreSQL verifier format;
- `provisioning`: password rules, and deriving every stored credential from a new password.

`oauth` (bearer-token validation) is a separate module and is not imported here.

Must not: speak SMTP, decide replies, or count failures (the session and `policy/` do). No
credential is ever logged or put in an exception message.
"""

from postguard.accounts.file_store import (
    AccountExistsError,
    FileCredentialStore,
    UnknownAccountError,
)
from postguard.accounts.model import Account, ScramCredentials
from postguard.accounts.store import CredentialStore, PasswordVerifier, StoreUnavailable

__all__ = [
    "Account",
    "AccountExistsError",
    "CredentialStore",
    "FileCredentialStore",
    "PasswordVerifier",
    "ScramCredentials",
    "StoreUnavailable",
    "UnknownAccountError",
]
