"""Deriving and storing SCRAM-SHA-256 keys (RFC 5802 §3, RFC 7677), and SASLprep (RFC 4013).

Owns the server-side key derivation that turns a password into the `ScramCredentials` kept
in the accounts file, and the text form of those credentials, which is PostgreSQL's
``pg_authid.rolpassword`` format so verifiers can be moved between the two:

    SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>

SASLprep and the key derivation itself are ``postguard.sasl``'s (one implementation, used
by the SCRAM mechanism and here).

Iterations: RFC 7677 §4 asks for at least 4096, which is also PostgreSQL's default, so 4096
is the floor for stored verifiers. New verifiers use `DEFAULT_SCRAM_ITERATIONS`: the keys in
the accounts file allow an offline guessing attack at one PBKDF2 run per guess, and the cost
of a higher count falls on the client, once per login (the server computes no PBKDF2 for
SCRAM). 100,000 rounds of PBKDF2-HMAC-SHA-256 took 0.1 s on the 2-vCPU development VM.

Must not: log, or put a password or key in an exception message.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from postguard.accounts.model import ScramCredentials
from postguard.sasl.saslprep import saslprep as _sasl_saslprep
from postguard.sasl.scram import scram_keys as _sasl_scram_keys

__all__ = [
    "DEFAULT_SCRAM_ITERATIONS",
    "MIN_SCRAM_ITERATIONS",
    "SCRAM_KEY_OCTETS",
    "SCRAM_SALT_OCTETS",
    "format_scram_verifier",
    "new_scram_credentials",
    "parse_scram_verifier",
    "saslprep",
    "scram_keys",
]

MIN_SCRAM_ITERATIONS = 4096  # RFC 7677 §4: "at least 4096"
DEFAULT_SCRAM_ITERATIONS = 100_000
# Largest count accepted from a file: a verifier is read on every reload, but a client must
# run this many rounds per login; 10 million is minutes on a phone, so anything above is a typo.
MAX_SCRAM_ITERATIONS = 10_000_000
SCRAM_SALT_OCTETS = 16  # 128 bits, as PostgreSQL (SCRAM_DEFAULT_SALT_LEN) and RFC 8018 §4.1
SCRAM_KEY_OCTETS = 32  # SHA-256 output size
_VERIFIER_PREFIX = "SCRAM-SHA-256$"
_VERIFIER_FORMAT = "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>"


def saslprep(text: str) -> str:
    """Prepare a password with SASLprep (RFC 4013) as a *stored* string (RFC 3454 §7).

    The one implementation lives in :mod:`postguard.sasl.saslprep`; this name is kept for
    callers in ``accounts``.

    Raises:
        ValueError: a prohibited or unassigned code point, or a bidi violation. The message
            names the offending position, never the text.
    """
    return _sasl_saslprep(text)


def scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """Derive SCRAM-SHA-256's StoredKey and ServerKey (RFC 5802 §3); see ``sasl.scram``.

    Raises:
        ValueError: fewer than 4096 iterations, an empty salt, or SASLprep refuses the
            password.
    """
    return _sasl_scram_keys(password, salt, iterations)


def new_scram_credentials(
    password: str, *, iterations: int = DEFAULT_SCRAM_ITERATIONS, salt: bytes | None = None
) -> ScramCredentials:
    """Make the SCRAM-SHA-256 credentials to store for ``password``, with a fresh salt.

    Args:
        password: The password.
        iterations: PBKDF2 iteration count, at least `MIN_SCRAM_ITERATIONS`.
        salt: A given salt (for tests and imports); by default `SCRAM_SALT_OCTETS` random
            octets from `secrets`.

    Returns:
        The credentials.

    Raises:
        ValueError: The password fails SASLprep, or ``iterations`` is below the minimum.
    """
    if not MIN_SCRAM_ITERATIONS <= iterations <= MAX_SCRAM_ITERATIONS:
        raise ValueError(
            f"SCRAM iteration count must be {MIN_SCRAM_ITERATIONS} to {MAX_SCRAM_ITERATIONS}"
        )
    salt = secrets.token_bytes(SCRAM_SALT_OCTETS) if salt is None else salt
    stored_key, server_key = scram_keys(password, salt, iterations)
    return ScramCredentials(
        salt=salt, iterations=iterations, stored_key=stored_key, server_key=server_key
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def format_scram_verifier(credentials: ScramCredentials) -> str:
    """Write credentials in PostgreSQL's verifier format (see the module docstring)."""
    return (
        f"{_VERIFIER_PREFIX}{credentials.iterations}:{_b64(credentials.salt)}"
        f"${_b64(credentials.stored_key)}:{_b64(credentials.server_key)}"
    )


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError(f"{what} is not valid base64 (expected {_VERIFIER_FORMAT})") from None


def parse_scram_verifier(text: str) -> ScramCredentials:
    """Read credentials in PostgreSQL's verifier format.

    Args:
        text: ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``.

    Returns:
        The credentials.

    Raises:
        ValueError: The text is not of that form, the iteration count is out of range, the
            salt is empty or a key is not 32 octets. The message never quotes the text.
    """
    expected = f"expected {_VERIFIER_FORMAT}"
    if not text.startswith(_VERIFIER_PREFIX):
        raise ValueError(f"not a SCRAM-SHA-256 verifier ({expected})")
    head, dollar, keys = text.removeprefix(_VERIFIER_PREFIX).partition("$")
    count, colon1, salt_text = head.partition(":")
    stored_text, colon2, server_text = keys.partition(":")
    if not (dollar and colon1 and colon2) or not count.isascii() or not count.isdigit():
        raise ValueError(f"malformed SCRAM-SHA-256 verifier ({expected})")
    iterations = int(count)
    if not MIN_SCRAM_ITERATIONS <= iterations <= MAX_SCRAM_ITERATIONS:
        raise ValueError(
            f"SCRAM iteration count {iterations} is out of range "
            f"({MIN_SCRAM_ITERATIONS} to {MAX_SCRAM_ITERATIONS}; RFC 7677 §4)"
        )
    salt = _unb64(salt_text, "the salt")
    stored_key = _unb64(stored_text, "StoredKey")
    server_key = _unb64(server_text, "ServerKey")
    if not salt:
        raise ValueError("the SCRAM salt is empty")
    if len(stored_key) != SCRAM_KEY_OCTETS or len(server_key) != SCRAM_KEY_OCTETS:
        raise ValueError(f"SCRAM-SHA-256 keys must be {SCRAM_KEY_OCTETS} octets each")
    return ScramCredentials(
        salt=salt, iterations=iterations, stored_key=stored_key, server_key=server_key
    )
