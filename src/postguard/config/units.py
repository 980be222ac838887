"""Sizes and durations with units: the constants, and their text form in the config file.

Owns the unit constants the rest of postguard writes limits with (``50 * MiB``,
``5 * MINUTES``, STYLE.md §7) and the two-way conversion between those numbers and the
strings an operator writes in `postguard.toml` (``"50MiB"``, ``"30s"``).

The accepted syntax is deliberately strict: a non-negative whole number, optional spaces, then
one unit from a closed list, spelled exactly (``"50M"``, ``"50mib"`` and ``"1.5GiB"`` are
rejected, and the error lists what is accepted). A bare integer means bytes or seconds. Whole
numbers only, so every value round-trips exactly through `format_size` / `format_duration`;
use a smaller unit for fractions (``"1500ms"``).

Must not: know about config keys or files. The parsers raise `ValueError` with a one-line
message; the loader adds the file and key.
"""

from __future__ import annotations

import re
from typing import TypeVar

from postguard.config.syntax import quote

__all__ = [
    "DAYS",
    "GB",
    "HOURS",
    "KB",
    "MAX_DURATION",
    "MB",
    "MILLISECONDS",
    "MINUTES",
    "SECONDS",
    "B",
    "GiB",
    "KiB",
    "MiB",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

SECONDS = 1.0
MILLISECONDS = SECONDS / 1000
MINUTES = 60 * SECONDS
HOURS = 60 * MINUTES
DAYS = 24 * HOURS

B = 1
KB = 1000 * B
MB = 1000 * KB
GB = 1000 * MB
KiB = 1024 * B
MiB = 1024 * KiB
GiB = 1024 * MiB

# Ordered largest first: formatting picks the first unit that divides the value exactly.
_SIZE_UNITS: dict[str, int] = {
    "GiB": GiB,
    "GB": GB,
    "MiB": MiB,
    "MB": MB,
    "KiB": KiB,
    "KB": KB,
    "B": B,
}

# Durations are parsed as whole numbers of the unit; milliseconds are divided (not multiplied
# by 0.001) so that parse(format(x)) == x holds bit for bit.
_DURATION_UNITS: dict[str, tuple[int, int]] = {  # unit -> (numerator, denominator) in seconds
    "d": (86400, 1),
    "h": (3600, 1),
    "m": (60, 1),
    "s": (1, 1),
    "ms": (1, 1000),
}

# No timeout needs more; the cap keeps every duration a whole number of milliseconds below
# 10**12, where float seconds and their millisecond count convert exactly both ways.
MAX_DURATION = 10_000 * DAYS
MAX_DURATION_TEXT = "10000d"

# 18 digits keep every product exact in an int and finite as a float (10**18 d < 1e24 s).
_QUANTITY = re.compile(r"([0-9]{1,18}) *([A-Za-z]*)")
_MAX_NUMBER = 10**18 - 1

U = TypeVar("U")


def _parse(value: str | int, kind: str, units: dict[str, U], bare: U) -> tuple[int, U]:
    """Split ``"50MiB"`` into ``(50, <MiB's factor>)``; a bare number gets ``bare``."""
    accepted = ", ".join(reversed(units))
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= _MAX_NUMBER:
            raise ValueError(f"invalid {kind} {value} (expected 0 to {_MAX_NUMBER})")
        return value, bare
    text = str(value)
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid {kind} {quote(text)} (expected a whole number and one of: {accepted})"
        )
    number, unit = int(match.group(1)), match.group(2)
    if not unit:
        return number, bare
    if unit not in units:
        raise ValueError(
            f"unknown {kind} unit {quote(unit)} in {quote(text)} (expected one of: {accepted})"
        )
    return number, units[unit]


def parse_size(value: str | int) -> int:
    """Parse a size such as ``"50MiB"`` or ``1024`` into bytes.

    Args:
        value: A string of a whole number and a unit (B, KB, KiB, MB, MiB, GB, GiB; decimal
            units are powers of 1000, binary ones powers of 1024), or a bare non-negative
            integer (or string of digits) meaning bytes.

    Returns:
        The size in bytes.

    Raises:
        ValueError: The value is negative, fractional, or uses an unknown unit.
    """
    number, factor = _parse(value, "size", _SIZE_UNITS, B)
    return number * factor


def parse_duration(value: str | int) -> float:
    """Parse a duration such as ``"30s"`` or ``"5m"`` into seconds.

    Args:
        value: A string of a whole number and a unit (ms, s, m, h, d), or a bare
            non-negative integer (or string of digits) meaning seconds.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: The value is negative, fractional, longer than `MAX_DURATION`, or uses
            an unknown unit.
    """
    number, (numerator, denominator) = _parse(value, "duration", _DURATION_UNITS, (1, 1))
    seconds = number * numerator / denominator
    if seconds > MAX_DURATION:
        raise ValueError(f"duration {quote(str(value))} is too long (at most {MAX_DURATION_TEXT})")
    return seconds


def _checked(number: int, value: int) -> int:
    """Refuse to write a number `_parse` would not read back (more than 18 digits)."""
    if number > _MAX_NUMBER:
        raise ValueError(f"cannot format {value!r}: too large")
    return number


def format_size(size: int) -> str:
    """Format a byte count with the largest unit that represents it exactly.

    Args:
        size: A non-negative number of bytes.

    Returns:
        A string `parse_size` reads back to the same number, e.g. ``"50MiB"``, ``"1MB"``,
        ``"1500B"``.

    Raises:
        ValueError: The size is negative or too large to write (over 18 digits in any unit).
    """
    if size < 0:
        raise ValueError(f"invalid size {size} (must not be negative)")
    if size == 0:
        return "0B"
    unit, factor = next((unit, f) for unit, f in _SIZE_UNITS.items() if size % f == 0)
    return f"{_checked(size // factor, size)}{unit}"


def format_duration(seconds: float) -> str:
    """Format a duration with the largest unit that represents it exactly.

    Args:
        seconds: A non-negative duration that is a whole number of milliseconds.

    Returns:
        A string `parse_duration` reads back to the same number, e.g. ``"5m"``, ``"30s"``,
        ``"1500ms"``.

    Raises:
        ValueError: The duration is negative, not a whole number of milliseconds, or longer
            than `MAX_DURATION`.
    """
    if seconds > MAX_DURATION:
        raise ValueError(f"cannot format {seconds!r} s: longer than {MAX_DURATION_TEXT}")
    millis = round(seconds * 1000)
    if seconds < 0 or millis / 1000 != seconds:
        raise ValueError(f"cannot format {seconds!r} s as a whole number of milliseconds")
    if millis == 0:
        return "0s"
    unit, unit_millis = next(
        (unit, n * 1000 // d)
        for unit, (n, d) in _DURATION_UNITS.items()
        if millis % (n * 1000 // d) == 0
    )
    return f"{millis // unit_millis}{unit}"
