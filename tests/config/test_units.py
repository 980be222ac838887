"""Sizes and durations with units: strict parsing, exact formatting, and the round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postguard.config.units import (
    DAYS,
    GB,
    HOURS,
    KB,
    MAX_DURATION,
    MB,
    MILLISECONDS,
    MINUTES,
    SECONDS,
    GiB,
    KiB,
    MiB,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

SIZE_UNITS = "B, KB, KiB, MB, MiB, GB, GiB"
DURATION_UNITS = "ms, s, m, h, d"


def test_unit_constants_carry_their_arithmetic() -> None:
    assert (SECONDS, MILLISECONDS, MINUTES, HOURS, DAYS) == (1.0, 0.001, 60.0, 3600.0, 86400.0)
    assert (KiB, MiB, GiB) == (1024, 1024**2, 1024**3)
    assert (KB, MB, GB) == (1000, 1000**2, 1000**3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("50MiB", 50 * MiB, id="mebibytes"),
        pytest.param("1KB", 1000, id="kilobytes-are-decimal"),
        pytest.param("1KiB", 1024, id="kibibytes-are-binary"),
        pytest.param("2GB", 2 * GB, id="gigabytes"),
        pytest.param("3GiB", 3 * GiB, id="gibibytes"),
        pytest.param("7B", 7, id="bytes"),
        pytest.param("1024", 1024, id="digits-are-bytes"),
        pytest.param(1024, 1024, id="integer-is-bytes"),
        pytest.param("10 MB", 10 * MB, id="space-before-unit"),
        pytest.param("0", 0, id="zero"),
    ],
)
def test_parse_size_accepts(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "50M", f'unknown size unit "M" in "50M" (expected one of: {SIZE_UNITS})', id="50M"
        ),
        pytest.param(
            "50mib",
            f'unknown size unit "mib" in "50mib" (expected one of: {SIZE_UNITS})',
            id="lowercase-unit",
        ),
        pytest.param(
            "1.5GiB",
            f'invalid size "1.5GiB" (expected a whole number and one of: {SIZE_UNITS})',
            id="fraction",
        ),
        pytest.param(
            "-1KiB",
            f'invalid size "-1KiB" (expected a whole number and one of: {SIZE_UNITS})',
            id="negative-string",
        ),
        pytest.param(-1, "invalid size -1 (expected 0 to 999999999999999999)", id="negative-int"),
        pytest.param(
            "MiB",
            f'invalid size "MiB" (expected a whole number and one of: {SIZE_UNITS})',
            id="unit",
        ),
        pytest.param(
            "", f'invalid size "" (expected a whole number and one of: {SIZE_UNITS})', id="empty"
        ),
        pytest.param(
            "1" * 19 + "B",
            f'invalid size "{"1" * 19}B" (expected a whole number and one of: {SIZE_UNITS})',
            id="too-many-digits",
        ),
    ],
)
def test_parse_size_rejects(text: str | int, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("5m", 300.0, id="minutes"),
        pytest.param("2h", 7200.0, id="hours"),
        pytest.param("1d", 86400.0, id="days"),
        pytest.param("1500ms", 1.5, id="milliseconds"),
        pytest.param("100ms", 0.1, id="tenth"),
        pytest.param("45", 45.0, id="digits-are-seconds"),
        pytest.param(45, 45.0, id="integer-is-seconds"),
    ],
)
def test_parse_duration_accepts(text: str | int, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "30sec",
            f'unknown duration unit "sec" in "30sec" (expected one of: {DURATION_UNITS})',
            id="long-unit",
        ),
        pytest.param(
            "5M",
            f'unknown duration unit "M" in "5M" (expected one of: {DURATION_UNITS})',
            id="uppercase-unit",
        ),
        pytest.param(
            "1.5s",
            f'invalid duration "1.5s" (expected a whole number and one of: {DURATION_UNITS})',
            id="fraction",
        ),
        pytest.param(
            "1m30s",
            f'invalid duration "1m30s" (expected a whole number and one of: {DURATION_UNITS})',
            id="compound",
        ),
        pytest.param(-5, "invalid duration -5 (expected 0 to 999999999999999999)", id="negative"),
    ],
)
def test_parse_duration_rejects(text: str | int, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("size", "text"),
    [
        pytest.param(50 * MiB, "50MiB", id="mebibytes"),
        pytest.param(1000 * 1000, "1MB", id="megabytes"),
        pytest.param(2 * GiB, "2GiB", id="gibibytes"),
        pytest.param(2048, "2KiB", id="kibibytes"),
        pytest.param(1500, "1500B", id="odd-bytes"),
        pytest.param(3000, "3KB", id="kilobytes"),
        pytest.param(0, "0B", id="zero"),
    ],
)
def test_format_size_uses_the_largest_exact_unit(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(300.0, "5m", id="minutes"),
        pytest.param(30.0, "30s", id="seconds"),
        pytest.param(90.0, "90s", id="not-whole-minutes"),
        pytest.param(7200.0, "2h", id="hours"),
        pytest.param(86400.0, "1d", id="days"),
        pytest.param(1.5, "1500ms", id="milliseconds"),
        pytest.param(0.0, "0s", id="zero"),
    ],
)
def test_format_duration_uses_the_largest_exact_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.0001, -1.0], ids=["sub-millisecond", "negative"])
def test_format_duration_refuses_what_it_cannot_write_exactly(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


def test_format_size_refuses_negative() -> None:
    with pytest.raises(ValueError):
        format_size(-1)


@given(st.integers(min_value=0, max_value=10**18 - 1), st.sampled_from([1, KB, KiB, GiB]))
def test_size_round_trips(number: int, factor: int) -> None:
    size = number * factor
    assert parse_size(format_size(size)) == size


def test_format_size_refuses_what_parse_size_would_not_read() -> None:
    with pytest.raises(ValueError):
        format_size(10**18 + 1)


_UNIT_SECONDS = {"ms": MILLISECONDS, "s": SECONDS, "m": MINUTES, "h": HOURS, "d": DAYS}
_DURATION_TEXTS = st.sampled_from(sorted(_UNIT_SECONDS)).flatmap(
    lambda unit: st.integers(0, round(MAX_DURATION / _UNIT_SECONDS[unit])).map(
        lambda number: f"{number}{unit}"
    )
)


@given(_DURATION_TEXTS)
def test_duration_round_trips(text: str) -> None:
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == seconds


def test_durations_have_a_ceiling() -> None:
    assert parse_duration("10000d") == MAX_DURATION
    with pytest.raises(ValueError) as caught:
        parse_duration("10001d")
    assert str(caught.value) == 'duration "10001d" is too long (at most 10000d)'
    with pytest.raises(ValueError):
        format_duration(MAX_DURATION + 1)
