"""The [queue] table: defaults, units, every error with its exact message, and the sample.

Unknown keys are covered table-wide in test_load_errors.py's TABLES, sample keys in
test_sample.py's parametrisation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from postguard.config import (
    ConfigError,
    QueueSettings,
    default_config,
    find_weakenings,
    load_config,
    render_sample,
)
from postguard.config.units import DAYS, HOURS, MINUTES, SECONDS, GiB, MiB

from .conftest import Loader

F = "postguard.toml"


def test_queue_defaults(tmp_path: Path) -> None:
    queue = default_config(tmp_path).queue
    assert queue == QueueSettings()
    assert queue.first_retry == 5 * MINUTES  # Postfix minimal_backoff_time
    assert queue.max_backoff == 4000 * SECONDS  # Postfix maximal_backoff_time
    assert queue.max_lifetime == 5 * DAYS  # Postfix maximal_queue_lifetime
    assert queue.delay_warning == 4 * HOURS
    assert queue.min_free_disk == 100 * MiB
    assert (queue.concurrency, queue.per_destination_concurrency) == (20, 5)
    assert queue.lease == 10 * MINUTES
    assert queue.scan_interval == 1 * SECONDS


def test_queue_values_are_read_with_units(load: Loader) -> None:
    queue = load(
        "[queue]\n"
        'first_retry = "30s"\n'
        'max_backoff = "2h"\n'
        'max_lifetime = "3d"\n'
        'delay_warning = "90m"\n'
        'min_free_disk = "1GiB"\n'
        "concurrency = 50\n"
        "per_destination_concurrency = 50\n"
        'lease = "15m"\n'
        'scan_interval = "250ms"\n'
    ).queue
    assert queue == QueueSettings(
        first_retry=30 * SECONDS,
        max_backoff=2 * HOURS,
        max_lifetime=3 * DAYS,
        delay_warning=90 * MINUTES,
        min_free_disk=1 * GiB,
        concurrency=50,
        per_destination_concurrency=50,
        lease=15 * MINUTES,
        scan_interval=0.25,
    )


def test_bare_integers_are_seconds_and_bytes(load: Loader) -> None:
    queue = load("[queue]\nfirst_retry = 60\nmax_backoff = 60\nmin_free_disk = 1048576\n").queue
    assert (queue.first_retry, queue.max_backoff) == (60.0, 60.0)  # equal is allowed
    assert queue.min_free_disk == 1 * MiB


def test_zero_delay_warning_and_zero_free_disk_are_allowed(load: Loader) -> None:
    queue = load('[queue]\ndelay_warning = "0s"\nmin_free_disk = "0B"\n').queue
    assert (queue.delay_warning, queue.min_free_disk) == (0.0, 0)


def test_queue_settings_weaken_nothing(load: Loader) -> None:
    config = load('[queue]\ndelay_warning = "0s"\nmin_free_disk = 0\nconcurrency = 1\n'
                  "per_destination_concurrency = 1\n")  # fmt: skip
    assert find_weakenings(config) == []


DURATION_UNITS = "ms, s, m, h, d"
QUEUE_ERRORS = [
    # --- types -----------------------------------------------------------------------------
    (
        "first-retry-float",
        "first_retry = 1.5",
        'queue.first_retry: expected a duration such as "5m", got float',
    ),
    (
        "max-backoff-boolean",
        "max_backoff = true",
        'queue.max_backoff: expected a duration such as "4000s", got boolean',
    ),
    (
        "max-lifetime-array",
        'max_lifetime = ["5d"]',
        'queue.max_lifetime: expected a duration such as "5d", got array',
    ),
    (
        "delay-warning-boolean",
        "delay_warning = false",
        'queue.delay_warning: expected a duration such as "4h", got boolean',
    ),
    (
        "min-free-disk-float",
        "min_free_disk = 0.5",
        'queue.min_free_disk: expected a size such as "100MiB", got float',
    ),
    (
        "concurrency-string",
        'concurrency = "20"',
        "queue.concurrency: expected an integer, got string",
    ),
    (
        "per-destination-concurrency-boolean",
        "per_destination_concurrency = true",
        "queue.per_destination_concurrency: expected an integer, got boolean",
    ),
    ("lease-table", "lease = {}", 'queue.lease: expected a duration such as "10m", got table'),
    (
        "scan-interval-float",
        "scan_interval = 0.5",
        'queue.scan_interval: expected a duration such as "1s", got float',
    ),
    # --- values ----------------------------------------------------------------------------
    (
        "first-retry-zero",
        'first_retry = "0s"',
        'queue.first_retry: must be greater than 0, got "0s"',
    ),
    (
        "first-retry-bad-unit",
        'first_retry = "5min"',
        f'queue.first_retry: unknown duration unit "min" in "5min"'
        f" (expected one of: {DURATION_UNITS})",
    ),
    ("max-backoff-zero", "max_backoff = 0", 'queue.max_backoff: must be greater than 0, got "0"'),
    (
        "max-backoff-below-first-retry",
        'first_retry = "10m"\nmax_backoff = "9m"',
        "queue.max_backoff: must not be less than queue.first_retry",
    ),
    (
        "max-backoff-below-default-first-retry",
        'max_backoff = "1m"',
        "queue.max_backoff: must not be less than queue.first_retry",
    ),
    (
        "max-lifetime-zero",
        'max_lifetime = "0d"',
        'queue.max_lifetime: must be greater than 0, got "0d"',
    ),
    (
        "max-lifetime-too-long",
        'max_lifetime = "10001d"',
        'queue.max_lifetime: duration "10001d" is too long (at most 10000d)',
    ),
    (
        "delay-warning-negative",
        "delay_warning = -1",
        "queue.delay_warning: invalid duration -1 (expected 0 to 999999999999999999)",
    ),
    (
        "delay-warning-fraction",
        'delay_warning = "1.5h"',
        'queue.delay_warning: invalid duration "1.5h"'
        f" (expected a whole number and one of: {DURATION_UNITS})",
    ),
    (
        "min-free-disk-abbreviated-unit",
        'min_free_disk = "100M"',
        'queue.min_free_disk: unknown size unit "M" in "100M"'
        " (expected one of: B, KB, KiB, MB, MiB, GB, GiB)",
    ),
    ("concurrency-zero", "concurrency = 0", "queue.concurrency: must be at least 1, got 0"),
    (
        "per-destination-concurrency-zero",
        "per_destination_concurrency = 0",
        "queue.per_destination_concurrency: must be at least 1, got 0",
    ),
    (
        "per-destination-above-concurrency",
        "concurrency = 10\nper_destination_concurrency = 11",
        "queue.per_destination_concurrency: must not exceed queue.concurrency (10)",
    ),
    (
        "default-per-destination-above-lowered-concurrency",
        "concurrency = 3",
        "queue.per_destination_concurrency: must not exceed queue.concurrency (3)",
    ),
    ("lease-zero", 'lease = "0s"', 'queue.lease: must be greater than 0, got "0s"'),
    (
        "scan-interval-zero",
        'scan_interval = "0ms"',
        'queue.scan_interval: must be greater than 0, got "0ms"',
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in QUEUE_ERRORS]
)
def test_bad_queue_setting_names_file_and_key(load: Loader, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(f"[queue]\n{text}\n")
    assert str(caught.value) == f"{F}: {expected}"


def test_queue_table_must_be_a_table(load: Loader) -> None:
    with pytest.raises(ConfigError) as caught:
        load('queue = "fast"\n')
    assert str(caught.value) == f"{F}: queue: expected a table, got string"


def test_sample_with_changed_queue_loads_back(tmp_path: Path) -> None:
    base = default_config(tmp_path / "data")
    queue = QueueSettings(
        first_retry=1.5,
        max_backoff=90 * MINUTES,
        max_lifetime=36 * HOURS,
        delay_warning=0.0,
        min_free_disk=1500,
        concurrency=7,
        per_destination_concurrency=7,
        lease=45 * SECONDS,
        scan_interval=0.1,
    )
    config = dataclasses.replace(base, queue=queue)
    path = tmp_path / "postguard.toml"
    path.write_text(render_sample(config), encoding="utf-8")
    assert load_config(path) == config
    sample = render_sample(config)
    comment = "# First retry this long after a failed attempt; doubles after..."
    assert f'\n[queue]\n{comment}\nfirst_retry = "1500ms"\n' in sample
    assert '\ndelay_warning = "0s"\n' in sample
    assert '\nmin_free_disk = "1500B"\n' in sample
