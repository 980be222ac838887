"""The replacement policy for dead workers (the processes themselves: tests/integration)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys

from postguard.cli.workers import (
    FIRST_RESPAWN_DELAY,
    MAX_RESPAWN_DELAY,
    STEADY_SECONDS,
    _parse,
    exit_description,
    respawn_delay,
)


def test_a_worker_that_ran_a_while_is_replaced_at_once() -> None:
    assert respawn_delay(STEADY_SECONDS, previous=0.0) == 0.0
    assert respawn_delay(STEADY_SECONDS * 100, previous=MAX_RESPAWN_DELAY) == 0.0


def test_a_worker_dying_young_is_replaced_ever_more_slowly() -> None:
    delays = []
    previous = 0.0
    for _ in range(10):
        previous = respawn_delay(0.5, previous)
        delays.append(previous)
    assert delays[0] == FIRST_RESPAWN_DELAY
    assert all(b == min(MAX_RESPAWN_DELAY, a * 2) for a, b in itertools.pairwise(delays))
    assert delays[-1] == MAX_RESPAWN_DELAY  # a fork loop is capped at one a minute


def test_exit_descriptions_name_the_signal_or_the_status() -> None:
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.send_signal(signal.SIGKILL)
    _, status = os.waitpid(killed.pid, 0)
    assert exit_description(status) == "killed by SIGKILL"
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(74)"])
    _, status = os.waitpid(done.pid, 0)
    assert exit_description(status) == "exited with status 74"


def test_the_spawners_reports_are_parsed_strictly() -> None:
    assert _parse(b"started 123 ab12cd34 1") == ("started", 123, "ab12cd34 1")
    assert _parse(b"exited 123 9") == ("exited", 123, "9")
    assert _parse(b"failed 0 1 Resource temporarily unavailable") == (
        "failed",
        0,
        "1 Resource temporarily unavailable",
    )
    for junk in (b"", b"started", b"started x 1", b"spawn ab 1", b"exited -1 0"):
        assert _parse(junk) is None, junk
