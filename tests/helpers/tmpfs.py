"""A small tmpfs mounted for one test, to fill a file system for real (ENOSPC) or remount it.

Needs root (CI runs as root): elsewhere the tests skip loudly, and under CI a failed mount
fails the test.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from postguard.queue.fsync import FILE_SYSTEMS

TMPFS_SIZE = "512k"
FILL_CHUNK_OCTETS = 64 * 1024


class Tmpfs:
    """A small tmpfs mounted for one test; unmounted by the fixture."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write a filler file until the file system reports ENOSPC."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (FILL_CHUNK_OCTETS, 4096, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)


def mount_tmpfs(path: Path, *, mode: str = "0700") -> Iterator[Tmpfs]:
    """Mount a small tmpfs at ``path`` for the duration of the generator."""
    if os.geteuid() != 0:
        pytest.skip(
            "SKIPPED LOUDLY: mounting a tmpfs to fill the disk needs root "
            "(CI runs as root, so this runs there)"
        )
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode={mode}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs at {path}: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"SKIPPED LOUDLY: {message}")
    try:
        yield Tmpfs(path)
    finally:
        # A store or Maildir agent of this test process keeps a syncfs descriptor on
        # every file system it wrote to (postguard.queue.fsync.FileSystemHandles).
        FILE_SYSTEMS.release(path)
        subprocess.run(["umount", str(path)], check=True)
