"""Brute-force defence for AUTH: slow down, then cut off, per client IP and per account.

Each failed authentication is recorded against the client's IP and against
the account name that was tried (whether or not it exists, so probing
unknown names costs the same). Within ``window`` seconds:

* the reply to a failed attempt is delayed ``base_delay * 2**(failures-1)``
  seconds, capped at ``max_delay`` (exponential slowdown);
* once an IP reaches ``max_failures_per_ip``, or an account reaches
  ``max_failures_per_account``, further attempts from that IP (or for that
  account) are refused with 421 4.7.0 and the connection is closed, until
  ``lockout`` seconds have passed since the last failure.

A success clears nothing for the IP (an attacker with one valid account must
not reset his budget) but clears the account's count.

The clock is injected (``now`` arguments); this module does no I/O and keeps a
bounded number of entries (oldest evicted first), so a flood of random IPs
cannot grow memory without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_TRACKED_KEYS = 100_000  # ~100 bytes each: ~10 MB at most per table


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    """Limits, in failures and seconds."""

    max_failures_per_ip: int = 10
    max_failures_per_account: int = 20
    window: float = 15 * 60.0
    lockout: float = 15 * 60.0
    base_delay: float = 0.25
    max_delay: float = 10.0


@dataclass(slots=True)
class _Record:
    failures: int
    last: float


class _Counter:
    def __init__(self, limit: int) -> None:
        self._entries: OrderedDict[str, _Record] = OrderedDict()
        self._limit = limit

    def failures(self, key: str, now: float, window: float, lockout: float, maximum: int) -> int:
        record = self._entries.get(key)
        if record is None:
            return 0
        age = now - record.last
        if (record.failures >= maximum and age > lockout) or (
            record.failures < maximum and age > window
        ):
            del self._entries[key]
            return 0
        return record.failures

    def add(self, key: str, now: float) -> int:
        record = self._entries.pop(key, None)
        record = _Record(1, now) if record is None else _Record(record.failures + 1, now)
        self._entries[key] = record
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
        return record.failures

    def clear(self, key: str) -> None:
        self._entries.pop(key, None)


class AuthThrottle:
    """Counts AUTH failures and says how long to wait, or whether to cut off."""

    def __init__(self, settings: ThrottleSettings, *, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.settings = settings
        self._ips = _Counter(max_keys)
        self._accounts = _Counter(max_keys)

    def is_blocked(self, ip: str, account: str | None, now: float) -> bool:
        """Whether an attempt from ``ip`` (for ``account``) must be refused now."""
        s = self.settings
        if self._ips.failures(ip, now, s.window, s.lockout, s.max_failures_per_ip) >= (
            s.max_failures_per_ip
        ):
            return True
        if account is None:
            return False
        key = account.lower()
        return (
            self._accounts.failures(key, now, s.window, s.lockout, s.max_failures_per_account)
            >= s.max_failures_per_account
        )

    def record_failure(self, ip: str, account: str | None, now: float) -> float:
        """Count a failure; return the delay (seconds) before answering it."""
        s = self.settings
        self._ips.failures(ip, now, s.window, s.lockout, s.max_failures_per_ip)  # expire old
        failures = self._ips.add(ip, now)
        if account is not None:
            key = account.lower()
            self._accounts.failures(key, now, s.window, s.lockout, s.max_failures_per_account)
            failures = max(failures, self._accounts.add(key, now))
        delay: float = s.base_delay * 2.0 ** (failures - 1)
        return min(delay, s.max_delay)

    def record_success(self, account: str) -> None:
        """A successful login clears the account's count (not the IP's)."""
        self._accounts.clear(account.lower())
