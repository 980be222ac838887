"""Connection budgets: in total and per client IP (421 4.7.0 past either).

Every count has a limit (STYLE.md §1). The limiter is shared by all
listeners of one server process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class ConnectionLimiter:
    """Counts open connections; refuses past ``max_total`` or ``max_per_ip``.

    ``on_change(total)`` is told every new total (the accept balance publishes it).
    """

    def __init__(
        self, max_total: int, max_per_ip: int, on_change: Callable[[int], None] | None = None
    ) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: Counter[str] = Counter()
        self._on_change = on_change

    def try_acquire(self, ip: str) -> bool:
        """Take a slot for ``ip``; False when a limit is reached."""
        if self.total >= self.max_total or self._per_ip[ip] >= self.max_per_ip:
            return False
        self.total += 1
        self._per_ip[ip] += 1
        if self._on_change is not None:
            self._on_change(self.total)
        return True

    def release(self, ip: str) -> None:
        """Give back a slot taken with :meth:`try_acquire`."""
        self.total -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        if self._on_change is not None:
            self._on_change(self.total)
