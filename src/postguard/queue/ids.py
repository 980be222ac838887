"""Queue IDs: short, unique, sortable by time, safe as file names.

Format: 16 characters (Crockford base 32, upper case) of one 80-bit number:
the time in milliseconds, then 30 random bits: ``01M8H2Z36AATPC19``. IDs of
one millisecond differ only by their random bits (1 in 10^9 collision odds per
pair; the store's primary key refuses a duplicate and the message gets 451).
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_queue_id() -> str:
    """A fresh queue ID."""
    ms = time.time_ns() // 1_000_000
    rnd = int.from_bytes(secrets.token_bytes(4), "big")  # 30 of its 32 bits are used
    value = (ms << 30) | (rnd & ((1 << 30) - 1))
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in range(15, -1, -1))
