"""What an account is: its name, the addresses it may send as, and its credentials.

Owns `Account` and `ScramCredentials` (plain, frozen data) and the syntax of account names
and sender address patterns. Credentials are stored forms only: an argon2id hash, SCRAM keys,
and (only when an operator asks for it) a CRAM-MD5 secret; never a password in the clear
except that last one, which is why it is opt-in and reported at start-up.

Must not: do I/O, hash, or log. Reading and writing accounts is `file_store`'s job, hashing
is `passwords`' and `scram_keys`'.

SECURITY: credential fields never appear in ``repr`` (STYLE.md §6); tracebacks and debug logs
that print an `Account` show ``<redacted>`` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postguard.config.syntax import normalize_domain, normalize_mailbox, quote

__all__ = [
    "MAX_ACCOUNT_NAME_CHARS",
    "Account",
    "ScramCredentials",
    "normalize_account_name",
    "normalize_address_pattern",
]

# An account name is often an address; RFC 3696 erratum 1690 puts the longest usable address
# at 254 characters (the 256-octet RFC 5321 path minus its angle brackets).
MAX_ACCOUNT_NAME_CHARS = 254
# Lowercase ASCII so that a name is one TOML-safe token that cannot be confused with another
# by case or by look-alike characters; "@", ".", "+", "_" and "-" allow address-like names.
_ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9._@+-]*")
_DOMAIN_WILDCARD = "*@"

_REDACTED = "<redacted>"


def normalize_account_name(text: str) -> str:
    """Check an account name and return its canonical (lowercase) form.

    Args:
        text: A name such as ``alice`` or ``alice@example.org``.

    Returns:
        The name in lower case.

    Raises:
        ValueError: The name is empty, too long, or has characters other than ASCII
            letters, digits and ``. _ @ + -`` (or starts with one of those symbols).
    """
    name = text.lower()
    if len(name) > MAX_ACCOUNT_NAME_CHARS or not _ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            f"invalid account name {quote(text)} (expected up to {MAX_ACCOUNT_NAME_CHARS} "
            "ASCII letters, digits and . _ @ + -, starting with a letter or digit)"
        )
    return name


def normalize_address_pattern(text: str) -> str:
    """Check a sender address pattern and return it lowercased.

    Args:
        text: A full address (``alice@example.org``) or a whole-domain wildcard
            (``*@example.org``). Domains are written in ASCII (IDNs as ``xn--``).

    Returns:
        The pattern in lower case.

    Raises:
        ValueError: The text is neither form.
    """
    if text.startswith(_DOMAIN_WILDCARD):
        return _DOMAIN_WILDCARD + normalize_domain(text.removeprefix(_DOMAIN_WILDCARD))
    if "*" in text:
        raise ValueError(f"invalid address {quote(text)} (a wildcard must be *@domain)")
    return normalize_mailbox(text)


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """The SCRAM-SHA-256 verifier of one password (RFC 5802 §3, RFC 7677).

    The server stores these instead of the password: StoredKey lets it check a ClientProof,
    ServerKey lets it prove itself to the client. Together they are NOT plaintext-equivalent
    for SCRAM (a thief still needs the password to authenticate), but they allow an offline
    dictionary attack at the cost of `iterations` PBKDF2 rounds per guess.

    Attributes:
        salt: The random salt sent to the client.
        iterations: The PBKDF2 iteration count sent to the client.
        stored_key: ``H(ClientKey)``, 32 octets.
        server_key: ``HMAC(SaltedPassword, "Server Key")``, 32 octets.
    """

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __repr__(self) -> str:
        """Show the iteration count only: the keys are secrets."""
        return f"ScramCredentials(iterations={self.iterations}, keys={_REDACTED})"


@dataclass(frozen=True, slots=True)
class Account:
    """One account that may authenticate and submit mail.

    Attributes:
        name: Canonical account name (see `normalize_account_name`); the SASL authcid.
        addresses: Sender addresses the account may use in MAIL FROM, lowercase: full
            addresses, or ``*@domain`` for every address of one domain (not its subdomains).
        password_hash: argon2id PHC string for PLAIN and LOGIN, or None.
        scram: SCRAM-SHA-256 keys, or None (then SCRAM is not available to this account).
        cram_secret: The CRAM-MD5 shared secret, or None. It is plaintext-equivalent: whoever
            reads it can log in, so it exists only when set explicitly.
        disabled: A disabled account never authenticates and is never found by address.
    """

    name: str
    addresses: tuple[str, ...] = ()
    password_hash: str | None = None
    scram: ScramCredentials | None = None
    cram_secret: str | None = None
    disabled: bool = False

    def __post_init__(self) -> None:
        # Frozen and slotted: object.__setattr__ is the documented way to normalise.
        object.__setattr__(self, "addresses", tuple(a.lower() for a in self.addresses))

    def __repr__(self) -> str:
        """Name, addresses and which credentials exist; never the credentials."""

        def present(value: object) -> str:
            return _REDACTED if value is not None else "None"

        return (
            f"Account(name={self.name!r}, addresses={self.addresses!r}, "
            f"password_hash={present(self.password_hash)}, scram={present(self.scram)}, "
            f"cram_secret={present(self.cram_secret)}, disabled={self.disabled!r})"
        )

    def may_send_as(self, address: str) -> bool:
        """Tell whether MAIL FROM ``address`` is one of this account's addresses.

        Comparison is case-insensitive, local-part included (postguard folds mailbox case,
        see `postguard.config.syntax.normalize_mailbox`). ``*@example.org`` matches every
        address at example.org but not at sub.example.org. The null reverse-path (empty
        string) matches nothing.

        Args:
            address: The reverse-path mailbox, without angle brackets.

        Returns:
            True if an entry of `addresses` allows it.
        """
        local, at, domain = address.lower().rpartition("@")
        if not at or not local or not domain:
            return False
        mailbox = f"{local}@{domain.removesuffix('.')}"
        wildcard = _DOMAIN_WILDCARD + mailbox.rpartition("@")[2]
        return mailbox in self.addresses or wildcard in self.addresses

    def mechanisms(self) -> tuple[str, ...]:
        """SASL mechanisms this account's stored credentials can serve, strongest first.

        ``SCRAM-SHA-256`` also stands for ``SCRAM-SHA-256-PLUS`` (same keys; the listener
        adds channel binding when TLS provides it). OAuth mechanisms are not listed: they
        depend on the token issuer, not on stored credentials.
        """
        found: list[str] = []
        if self.scram is not None:
            found.append("SCRAM-SHA-256")
        if self.cram_secret is not None:
            found.append("CRAM-MD5")
        if self.password_hash is not None:
            found += ["PLAIN", "LOGIN"]
        return tuple(found)
