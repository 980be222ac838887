"""Queue IDs: short, unique, sortable by time, safe as file names.

Format: 10 characters of base-32 time in milliseconds, then 6 random
characters (Crockford alphabet, upper case): ``0G5XK2M3Q1ABCDEF``.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ID_CHARS = frozenset(_ALPHABET)
QUEUE_ID_LENGTH = 16


def new_queue_id() -> str:
    """A fresh queue ID."""
    ms = time.time_ns() // 1_000_000
    head = "".join(_ALPHABET[(ms >> (5 * i)) & 31] for i in range(9, -1, -1))
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return head + tail


def is_queue_id(text: str) -> bool:
    """Whether ``text`` is a well-formed queue ID (validate before using as a path)."""
    return len(text) == QUEUE_ID_LENGTH and set(text) <= _ID_CHARS
