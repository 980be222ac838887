"""SASLprep (RFC 4013): the stringprep profile for user names and passwords.

Owns one function, :func:`saslprep`, built only from the standard library: ``stringprep``
supplies the RFC 3454 tables and ``unicodedata.ucd_3_2_0`` the Unicode 3.2 NFKC that
RFC 3454 §4 fixes (the current ``unicodedata`` would drift with every Python release). This is
the complete profile, not a subset: mapping, normalisation, prohibition, the bidi check, and
unassigned code points (forbidden for stored strings, allowed for queries, RFC 3454 §7).

Used by SCRAM (RFC 5802 §2.2: ``Normalize(str)``) on both halves and in :func:`scram_keys`. The
account store should apply the same function to PLAIN/LOGIN passwords before hashing and
verifying (RFC 4616 §2 recommends SASLprep), so one password works with every mechanism.

Must not: do I/O; it raises ``ValueError`` (with a message free of the input) on failure.
"""

from __future__ import annotations

import stringprep
import unicodedata

_PROHIBITED = (
    stringprep.in_table_c12,  # non-ASCII space (already mapped, kept for completeness)
    stringprep.in_table_c21,  # ASCII control
    stringprep.in_table_c22,  # non-ASCII control
    stringprep.in_table_c3,  # private use
    stringprep.in_table_c4,  # non-character code points
    stringprep.in_table_c5,  # surrogate codes
    stringprep.in_table_c6,  # inappropriate for plain text
    stringprep.in_table_c7,  # inappropriate for canonical representation
    stringprep.in_table_c8,  # change display properties / deprecated
    stringprep.in_table_c9,  # tagging characters
)


def saslprep(text: str, *, allow_unassigned: bool = False) -> str:
    """Prepare ``text`` with the SASLprep profile (RFC 4013 §2).

    Args:
        text: a user name or password.
        allow_unassigned: True for "query" strings (e.g. a user name a client sends),
            False for "stored" strings (passwords, names being provisioned), RFC 3454 §7.

    Returns:
        The prepared string (possibly empty; callers decide whether empty is acceptable).

    Raises:
        ValueError: a prohibited or (stored) unassigned code point, or a bidi violation.
    """
    # RFC 4013 §2.1: non-ASCII spaces (C.1.2) map to SPACE; B.1 maps to nothing.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    # RFC 4013 §2.2: Unicode normalisation form KC (Unicode 3.2, RFC 3454 §4).
    normalized = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for ch in normalized:
        # RFC 4013 §2.3: prohibited output.
        if any(table(ch) for table in _PROHIBITED):
            raise ValueError("SASLprep: prohibited character")
        # RFC 4013 §2.5 / RFC 3454 §7: unassigned code points.
        if not allow_unassigned and stringprep.in_table_a1(ch):
            raise ValueError("SASLprep: unassigned code point in a stored string")
    _check_bidi(normalized)
    return normalized


def _check_bidi(text: str) -> None:
    # RFC 4013 §2.4 / RFC 3454 §6: a string with any RandALCat character has no LCat
    # character, and starts and ends with a RandALCat character.
    rand_al = [stringprep.in_table_d1(ch) for ch in text]
    if not any(rand_al):
        return
    if any(stringprep.in_table_d2(ch) for ch in text):
        raise ValueError("SASLprep: mixed bidirectional text")
    if not (rand_al[0] and rand_al[-1]):
        raise ValueError("SASLprep: bidirectional text must start and end right-to-left")
