"""The accept balance: shared connection counts decide who accepts next (server/balance.py).

Processes are simulated by slots of one AcceptBalance; the processes themselves (a
real `postguard serve` with workers) are in tests/integration/test_serve_subprocess.py.
"""

from __future__ import annotations

import os

import pytest

from postguard.server.balance import (
    DEFER_STEP_SECONDS,
    MAX_DEFER_SECONDS,
    SLACK,
    AcceptBalance,
)


def test_one_process_never_waits() -> None:
    balance = AcceptBalance(1)
    balance.join(0)
    balance.publish(1000)
    assert not balance.enabled
    assert balance.defer_seconds() == 0.0


def test_a_process_ahead_of_the_least_loaded_waits_in_proportion() -> None:
    balance = AcceptBalance(3)
    for slot in range(3):
        balance.join(slot)
    balance.join(1)
    balance.publish(SLACK)  # within the slack: accept at once
    assert balance.defer_seconds() == 0.0
    balance.publish(SLACK + 2)
    assert balance.defer_seconds() == pytest.approx(2 * DEFER_STEP_SECONDS)
    balance.publish(1000)  # bounded: a stuck sibling cannot stop us for long
    assert balance.defer_seconds() == MAX_DEFER_SECONDS


def test_a_dead_process_is_not_the_least_loaded() -> None:
    balance = AcceptBalance(2)
    balance.join(0)
    balance.join(1)
    balance.publish(5)  # slot 1 holds 5, slot 0 none
    assert balance.defer_seconds() > 0
    balance.leave(0)  # slot 0's process died: nobody to leave the connections to
    assert balance.count(0) is None
    assert balance.defer_seconds() == 0.0


def test_the_counts_are_shared_with_forked_processes() -> None:
    balance = AcceptBalance(2)
    balance.join(0)
    pid = os.fork()
    if pid == 0:  # the "worker": publishes in its own slot
        balance.join(1)
        balance.publish(7)
        os._exit(0)
    os.waitpid(pid, 0)
    assert balance.count(1) == 7
    assert balance.count(0) == 0


def test_slots_are_bounded() -> None:
    with pytest.raises(ValueError):
        AcceptBalance(0)
    balance = AcceptBalance(2)
    with pytest.raises(ValueError):
        balance.join(2)
