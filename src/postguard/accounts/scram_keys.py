"""Deriving and storing SCRAM-SHA-256 keys (RFC 5802 §3, RFC 7677), and SASLprep (RFC 4013).

Owns the server-side key derivation that turns a password into the `ScramCredentials` kept
in the accounts file, and the text form of those credentials, which is PostgreSQL's
``pg_authid.rolpassword`` format so verifiers can be moved between the two:

    SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>

`scram_keys` has the same signature as ``postguard.sasl.scram.scram_keys`` (written
separately, sans-IO); the two are to be reconciled so that one implementation remains.

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
import hashlib
import hmac
import secrets
import stringprep
import unicodedata

from postguard.accounts.model import ScramCredentials

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

    RFC 5802 §2.2 normalises passwords this way before hashing, so that a password typed as
    composed or decomposed Unicode gives the same keys.

    Args:
        text: The password.

    Returns:
        The prepared string.

    Raises:
        ValueError: The string has a prohibited character (control, private use, surrogate,
            non-character...), an unassigned code point, or breaks the bidi rule. The message
            names the offending code point's position, never the text.
    """
    # RFC 4013 §2.1: non-ASCII spaces (C.1.2) map to SPACE; "commonly mapped to nothing"
    # characters (B.1: soft hyphen, zero-width joiners, variation selectors...) are removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in text
        if not stringprep.in_table_b1(char)
    )
    # RFC 4013 §2.2: Unicode normalization form KC, with the Unicode 3.2 tables stringprep
    # is defined on (RFC 3454 §1.2).
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,  # non-ASCII space
        stringprep.in_table_c21_c22,  # ASCII and non-ASCII control characters
        stringprep.in_table_c3,  # private use
        stringprep.in_table_c4,  # non-character code points
        stringprep.in_table_c5,  # surrogates
        stringprep.in_table_c6,  # inappropriate for plain text
        stringprep.in_table_c7,  # inappropriate for canonical representation
        stringprep.in_table_c8,  # change display properties / deprecated
        stringprep.in_table_c9,  # tagging characters
    )
    for index, char in enumerate(prepared):
        if any(check(char) for check in prohibited):  # RFC 4013 §2.3
            raise ValueError(f"prohibited character U+{ord(char):04X} at position {index + 1}")
        if stringprep.in_table_a1(char):  # RFC 4013 §2.5, RFC 3454 §7: stored strings
            raise ValueError(f"unassigned code point U+{ord(char):04X} at position {index + 1}")
    # RFC 4013 §2.4, RFC 3454 §6: a string with right-to-left characters has no
    # left-to-right ones, and starts and ends with a right-to-left character.
    if any(stringprep.in_table_d1(char) for char in prepared) and (
        any(stringprep.in_table_d2(char) for char in prepared)
        or not stringprep.in_table_d1(prepared[0])
        or not stringprep.in_table_d1(prepared[-1])
    ):
        raise ValueError("mixes right-to-left and left-to-right text (RFC 3454 §6)")
    return prepared


def scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """Derive SCRAM-SHA-256's StoredKey and ServerKey from a password (RFC 5802 §3).

    Args:
        password: The password; SASLprep is applied here.
        salt: The salt.
        iterations: The PBKDF2 iteration count (at least 1).

    Returns:
        ``(stored_key, server_key)``, 32 octets each.

    Raises:
        ValueError: The password fails SASLprep (see `saslprep`), or ``iterations < 1``.
    """
    if iterations < 1:
        raise ValueError("the iteration count must be at least 1")
    # RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i), and Hi is PBKDF2 with
    # HMAC as its PRF and an output of one hash length (RFC 2898 §5.2).
    salted_password = hashlib.pbkdf2_hmac(
        "sha256", saslprep(password).encode(), salt, iterations, dklen=SCRAM_KEY_OCTETS
    )
    client_key = hmac.digest(salted_password, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()  # StoredKey := H(ClientKey)
    server_key = hmac.digest(salted_password, b"Server Key", "sha256")
    return stored_key, server_key


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
