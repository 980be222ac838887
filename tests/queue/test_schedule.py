"""RetrySchedule: backoff doubling, cap, lifetime and delay warnings, with an injected clock."""

from __future__ import annotations

import pytest

from postguard.queue.schedule import DAYS, HOURS, MINUTES, RetrySchedule


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(0, 0.0), (1, 300.0), (2, 600.0), (3, 1200.0), (4, 2400.0), (5, 4000.0), (40, 4000.0)],
    ids=lambda v: str(v),
)
def test_backoff_doubles_from_five_minutes_up_to_the_cap(attempts: int, delay: float) -> None:
    assert RetrySchedule(attempts=attempts).get_backoff_time() == delay


def test_increment_returns_a_new_schedule_and_leaves_the_old_one() -> None:
    first = RetrySchedule()
    second = first.increment()
    assert (first.attempts, second.attempts) == (0, 1)


def test_jitter_spreads_by_at_most_ten_percent() -> None:
    schedule = RetrySchedule(attempts=1)
    assert schedule.get_backoff_time(jitter=0.999) == pytest.approx(300 * 1.0999)
    assert schedule.get_backoff_time(jitter=5.0) == pytest.approx(330.0)


def test_message_expires_after_five_days() -> None:
    schedule = RetrySchedule()
    assert not schedule.is_exhausted(received_at=0.0, now=5 * DAYS - 1)
    assert schedule.is_exhausted(received_at=0.0, now=5 * DAYS)


def test_delay_warning_after_four_hours_unless_disabled() -> None:
    assert not RetrySchedule().is_delay_warning_due(0.0, 4 * HOURS - 1)
    assert RetrySchedule().is_delay_warning_due(0.0, 4 * HOURS)
    assert not RetrySchedule(delay_warning_after=0).is_delay_warning_due(0.0, 10 * DAYS)


def test_a_full_retry_timeline_gives_up_within_the_lifetime() -> None:
    schedule = RetrySchedule(first_retry=1 * MINUTES, max_backoff=1 * HOURS, max_lifetime=1 * DAYS)
    now = 0.0
    tries = 0
    while not schedule.is_exhausted(0.0, now):
        schedule = schedule.increment()
        now = schedule.next_attempt_at(now)
        tries += 1
    assert 20 < tries < 40  # 1+2+4+...+32 min, then hourly until a day has passed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_retry": 0},
        {"first_retry": 10, "max_backoff": 5},
        {"max_lifetime": 0},
        {"attempts": -1},
    ],
)
def test_invalid_schedules_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetrySchedule(**kwargs)  # type: ignore[arg-type]
