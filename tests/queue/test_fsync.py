"""Durable directory creation, checked at the system-call level with strace.

A directory's entry lives in its parent: until the parent is fsync'd, a power cut can take
a new directory away with every file made durable inside it. ``make_directories`` must
fsync the parent of each directory it creates, after creating it; and an existing tree
must cost no mkdir and no fsync (the Maildir agent calls it once per Maildir and process).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = (
    "import sys; from pathlib import Path; "
    "from postguard.queue.fsync import make_directories; "
    "make_directories(Path(sys.argv[1])); make_directories(Path(sys.argv[1]))"
)
MKDIR = re.compile(r'^mkdir(?:at)?\((?:AT_FDCWD(?:<[^>]*>)?, )?"([^"]+)", \w+\) = 0')
FSYNC = re.compile(r"^fsync\(\d+<([^>]+)>\) = 0")


def trace(path: Path, out: Path) -> list[tuple[str, str]]:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("SKIPPED LOUDLY: strace is not installed (apt-get install strace)")
    options = ["-f", "-y", "-e", "trace=mkdir,mkdirat,fsync", "-o", str(out)]
    subprocess.run([strace, *options, sys.executable, "-c", CHILD, str(path)], check=True)
    calls: list[tuple[str, str]] = []
    for line in out.read_text().splitlines():
        line = line.split(" ", 1)[1].strip() if line[:1].isdigit() else line
        if m := MKDIR.match(line):
            calls.append(("mkdir", os.path.realpath(m.group(1))))
        elif m := FSYNC.match(line):
            calls.append(("fsync", m.group(1)))
    return calls


def test_each_new_directory_is_followed_by_an_fsync_of_its_parent(tmp_path: Path) -> None:
    base = Path(os.path.realpath(tmp_path))
    leaf = base / "mail" / "example.org" / "bob" / "new"
    calls = trace(leaf, tmp_path / "trace.txt")

    created = [path for call, path in calls if call == "mkdir"]
    assert created == [str(p) for p in (leaf.parents[2], leaf.parents[1], leaf.parents[0], leaf)]
    for directory in created:
        made = calls.index(("mkdir", directory))
        parent = str(Path(directory).parent)
        assert ("fsync", parent) in calls[made + 1 :], f"{parent} not synced after {directory}"
    # The second call found everything in place: nothing more was created or synced.
    assert len(calls) == 2 * len(created), calls
