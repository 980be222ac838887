"""RetrySchedule: an immutable retry policy (urllib3's Retry), with Postfix's defaults.

Postfix retries a deferred message after ``minimal_backoff_time`` (300 s),
doubling up to ``maximal_backoff_time`` (4000 s), and gives up after
``maximal_queue_lifetime`` (5 days). Delay warnings (RFC 3461 NOTIFY=DELAY)
go out once a message has waited ``delay_warning_after``.

Pure: no clock (callers pass ``now`` and ``received_at``), no randomness
(callers pass ``jitter`` in [0, 1) if they want to spread retries).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SECONDS = 1.0
MINUTES = 60 * SECONDS
HOURS = 60 * MINUTES
DAYS = 24 * HOURS

DEFAULT_FIRST_RETRY = 5 * MINUTES  # Postfix minimal_backoff_time
DEFAULT_MAX_BACKOFF = 4000 * SECONDS  # Postfix maximal_backoff_time
DEFAULT_MAX_LIFETIME = 5 * DAYS  # Postfix maximal_queue_lifetime
DEFAULT_DELAY_WARNING = 4 * HOURS  # Postfix delay_warning_time when enabled
MAX_JITTER_FRACTION = 0.1  # spread retries by up to 10% so they do not arrive in lockstep


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When to retry a recipient and when to give up.

    Attributes:
        first_retry: delay after the first failed attempt, in seconds.
        max_backoff: the delay doubles per attempt up to this.
        max_lifetime: after this long in the queue, a temporary failure bounces.
        delay_warning_after: when to send a NOTIFY=DELAY warning (0 = never).
        attempts: failed attempts so far.
    """

    first_retry: float = DEFAULT_FIRST_RETRY
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_lifetime: float = DEFAULT_MAX_LIFETIME
    delay_warning_after: float = DEFAULT_DELAY_WARNING
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.first_retry <= 0 or self.max_backoff < self.first_retry:
            raise ValueError("need 0 < first_retry <= max_backoff")
        if self.max_lifetime <= 0 or self.attempts < 0:
            raise ValueError("max_lifetime must be positive and attempts non-negative")

    def increment(self) -> RetrySchedule:
        """The schedule after one more failed attempt."""
        return replace(self, attempts=self.attempts + 1)

    def get_backoff_time(self, *, jitter: float = 0.0) -> float:
        """Seconds to wait after the current number of failed attempts."""
        if self.attempts <= 0:
            return 0.0
        exponent = min(self.attempts - 1, 64)  # 2**64 seconds is past any lifetime
        base = min(self.first_retry * 2.0**exponent, self.max_backoff)
        return base * (1.0 + MAX_JITTER_FRACTION * min(max(jitter, 0.0), 1.0))

    def next_attempt_at(self, now: float, *, jitter: float = 0.0) -> float:
        """Absolute time of the next attempt."""
        return now + self.get_backoff_time(jitter=jitter)

    def is_exhausted(self, received_at: float, now: float) -> bool:
        """Whether a message received at ``received_at`` has outlived its lifetime."""
        return now - received_at >= self.max_lifetime

    def is_delay_warning_due(self, received_at: float, now: float) -> bool:
        """Whether a NOTIFY=DELAY warning is due (at most once: the caller records it)."""
        return 0 < self.delay_warning_after <= now - received_at
