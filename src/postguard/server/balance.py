"""Spreading SMTP sessions evenly over the processes of ``[server] workers``.

The processes share their listening sockets, and the kernel gives a new connection to
whichever process accepts first; an event loop's accept loop can take a whole burst.
SMTP sessions can be long (a relay keeps its connection open for many messages), so an
imbalance made at connect time lasts: one process saturates while another idles.

Each process publishes how many connections it holds in a page of shared memory mapped
before the fork (one slot per process, written only by its owner, or by the parent once
the owner is dead). Before accepting, a process compares its count with the least
loaded live process: within :data:`SLACK` it accepts at once; beyond, it first waits
:data:`DEFER_STEP_SECONDS` per connection of excess, at most
:data:`MAX_DEFER_SECONDS`, so the less loaded processes take the next connections. The
wait is bounded so that a sibling that is stuck (holding few connections, accepting
none) never stops the others from accepting (nginx's ``accept_disabled``, in spirit).

Must not: refuse a connection (limits are ``limits.py``'s job); only delay accepting.
"""

from __future__ import annotations

import mmap

from ..config.schema import MAX_WORKERS

MAX_SLOTS = MAX_WORKERS  # one slot per process
# Connections a process may hold above the least loaded before it waits. Counts move all
# the time when clients send one message per connection; a slack of 1 (with 5 ms steps up
# to 50 ms) made processes wait on such passing differences and halved that throughput
# (bench, 2026-11-28 18:00: 708 against 1105 msg/s with these values), while 20 long
# sessions arriving at once still split 10/10 or 9/11.
SLACK = 2
DEFER_STEP_SECONDS = 0.002
MAX_DEFER_SECONDS = 0.02
_INACTIVE = -1
_SLOT_OCTETS = 4


class AcceptBalance:
    """The shared connection counts (see the module docstring).

    Created before the processes fork; each process then :meth:`join` s its slot.
    """

    def __init__(self, processes: int) -> None:
        if not 1 <= processes <= MAX_SLOTS:
            raise ValueError(f"processes must be 1 to {MAX_SLOTS}")
        self.processes = processes
        self._page = mmap.mmap(-1, MAX_SLOTS * _SLOT_OCTETS)
        self._counts = memoryview(self._page).cast("i")
        for slot in range(MAX_SLOTS):
            self._counts[slot] = _INACTIVE
        self.slot = 0

    @property
    def enabled(self) -> bool:
        return self.processes > 1

    def join(self, slot: int) -> None:
        """This process serves as ``slot`` (0 is the first process), with no connection."""
        if not 0 <= slot < self.processes:
            raise ValueError(f"slot {slot} out of range")
        self.slot = slot
        self._counts[slot] = 0

    def leave(self, slot: int) -> None:
        """``slot``'s process is gone (called by the parent): it is not counted."""
        self._counts[slot] = _INACTIVE

    def publish(self, connections: int) -> None:
        """This process now holds ``connections`` connections."""
        self._counts[self.slot] = connections

    def count(self, slot: int) -> int | None:
        """The connections ``slot`` holds, or None if no live process serves it."""
        value = self._counts[slot]
        return None if value == _INACTIVE else value

    def defer_seconds(self) -> float:
        """How long to wait before the next accept (0: now)."""
        if not self.enabled:
            return 0.0
        live = [c for c in self._counts[: self.processes] if c != _INACTIVE]
        mine = self._counts[self.slot]
        if not live or mine == _INACTIVE:
            return 0.0
        excess = mine - min(live) - SLACK
        if excess <= 0:
            return 0.0
        return min(MAX_DEFER_SECONDS, excess * DEFER_STEP_SECONDS)
