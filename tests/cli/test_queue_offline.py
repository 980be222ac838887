"""``postguard queue`` against a queue filled directly through the store (no server).

* ``list`` on a queue longer than one listing says what it left out. A listing stops at
  ``--limit`` messages (default 1000, the oldest first); ``--limit 0`` lists them all. A
  shortened text listing ends with a line giving the number left out; a shortened
  ``--json`` listing stays a JSON array and says so on standard error.
* ``hold``, ``release`` and ``delete`` take several queue IDs, or ``-`` to read them from
  standard input, as Postfix's ``postsuper`` does (``... | postguard queue delete -``);
  an unknown ID is named and gives exit status 67, and the others are still acted on.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from helpers.queue_messages import small_message
from postguard.queue.store.sqlite import SqliteQueueStore

QUEUED = 5


def fill(data_dir: Path) -> None:
    async def run() -> None:
        store = SqliteQueueStore(data_dir / "queue")
        try:
            for n in range(QUEUED):
                await store.commit(small_message(f"Q{n:04d}", received_at=1_700_000_000.0 + n))
        finally:
            await store.close()

    asyncio.run(run())


def queue(
    data_dir: Path, *args: str, stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postguard", "queue", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=check,
    )


def queue_list(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return queue(data_dir, "list", *args)


def listed(data_dir: Path) -> dict[str, bool]:
    """Queue ID -> held, for every message in the queue."""
    return {m["queue_id"]: m["held"] for m in json.loads(queue_list(data_dir, "--json").stdout)}


def test_a_shortened_listing_says_how_many_it_left_out(tmp_path: Path) -> None:
    fill(tmp_path)
    text = queue_list(tmp_path, "--limit", "2").stdout.splitlines()
    rows = [line for line in text if line.startswith("Q0")]
    assert [row.split()[0] for row in rows] == ["Q0000", "Q0001"]  # the oldest first
    assert text[-1] == "... and 3 more (postguard queue list --limit 0 lists all)"

    shortened = queue_list(tmp_path, "--json", "--limit", "2")
    assert [m["queue_id"] for m in json.loads(shortened.stdout)] == ["Q0000", "Q0001"]
    assert "3 more" in shortened.stderr


def test_limit_0_lists_everything_and_a_whole_listing_adds_nothing(tmp_path: Path) -> None:
    fill(tmp_path)
    everything = queue_list(tmp_path, "--json", "--limit", "0")
    assert len(json.loads(everything.stdout)) == QUEUED
    assert everything.stderr == ""
    text = queue_list(tmp_path).stdout.splitlines()  # default limit: all five fit
    assert len([line for line in text if line.startswith("Q0")]) == QUEUED
    assert "more" not in text[-1]


def test_a_negative_limit_is_refused_with_a_message(tmp_path: Path) -> None:
    command = ["queue", "list", "--data-dir", str(tmp_path), "--limit", "-1"]
    done = subprocess.run(
        [sys.executable, "-m", "postguard", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 64  # EX_USAGE, as for every command-line error
    assert "--limit" in done.stderr and "Traceback" not in done.stderr


def test_several_ids_and_ids_from_standard_input(tmp_path: Path) -> None:
    fill(tmp_path)
    held = queue(tmp_path, "hold", "Q0000", "Q0001")
    assert held.stdout == "Q0000: hold done\nQ0001: hold done\n"
    assert queue(tmp_path, "release", "-", stdin="Q0001\n").stdout == "Q0001: release done\n"
    assert listed(tmp_path) == {f"Q{n:04d}": n == 0 for n in range(QUEUED)}

    # As after "postguard queue list --json | jq -r '.[].queue_id' | grep ...":
    deleted = queue(tmp_path, "delete", "-", stdin="Q0002\nQ0003 Q0002\n")
    assert deleted.stdout == "Q0002: delete done\nQ0003: delete done\n"  # each once
    assert sorted(listed(tmp_path)) == ["Q0000", "Q0001", "Q0004"]


def test_an_unknown_id_is_named_and_the_others_are_still_acted_on(tmp_path: Path) -> None:
    fill(tmp_path)
    done = queue(tmp_path, "delete", "Q0000", "NOPE", "Q0001", check=False)
    assert done.returncode == 67  # EX_NOUSER
    assert done.stdout == "Q0000: delete done\nQ0001: delete done\n"
    assert done.stderr == "postguard: no message NOPE in the queue\n"
    assert sorted(listed(tmp_path)) == ["Q0002", "Q0003", "Q0004"]
