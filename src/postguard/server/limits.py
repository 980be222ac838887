"""Connection budgets: in total and per client IP (421 4.7.0 past either).

Every count has a limit (STYLE.md §1). The limiter is shared by all
listeners of one server process.
"""

from __future__ import annotations

from collections import Counter


class ConnectionLimiter:
    """Counts open connections; refuses past ``max_total`` or ``max_per_ip``."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: Counter[str] = Counter()

    def try_acquire(self, ip: str) -> bool:
        """Take a slot for ``ip``; False when a limit is reached."""
        if self.total >= self.max_total or self._per_ip[ip] >= self.max_per_ip:
            return False
        self.total += 1
        self._per_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        """Give back a slot taken with :meth:`try_acquire`."""
        self.total -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
