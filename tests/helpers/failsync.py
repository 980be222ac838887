"""Fault injection for storage tests: fsync(2), fdatasync(2) and syncfs(2) failing with EIO.

``failsync.c`` (beside this file) is an LD_PRELOAD shim, built here with gcc (CI
installs it). A process started with :meth:`FailSync.env` fails those calls, for the
files whose path contains ``match``, while the trigger file exists; the data itself is
written (the real call is made first). This is how a disk's writeback error reaches a
program, without a device-mapper target (the test VM's kernel has none).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("failsync.c")


def build_failsync(directory: Path) -> Path:
    """Compile the shim into ``directory``; returns the shared object's path.

    Raises:
        RuntimeError: gcc is missing or the build failed (the message says which).
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build tests/helpers/failsync.c (apt-get install gcc)")
    target = directory / "failsync.so"
    done = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(target), str(SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"building failsync.so failed:\n{done.stderr}")
    return target


@dataclass
class FailSync:
    """One injection: ``arm()`` makes matching syncs fail, ``disarm()`` stops it.

    The trigger and log live in a directory every user can write (the server drops to
    ``nobody``, and with ``once`` the shim removes the trigger itself).
    """

    library: Path
    match: str
    calls: str = "fsync,fdatasync,syncfs"
    once: bool = False

    def __post_init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="pg-failsync-", dir="/tmp"))
        self.directory.chmod(0o777)
        self.trigger = self.directory / "trigger"
        self.log = self.directory / "failures.log"

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(self.library),
            "FAILSYNC_TRIGGER": str(self.trigger),
            "FAILSYNC_MATCH": self.match,
            "FAILSYNC_CALLS": self.calls,
            "FAILSYNC_ONCE": "1" if self.once else "0",
            "FAILSYNC_LOG": str(self.log),
        }

    def arm(self) -> None:
        self.trigger.touch()
        self.trigger.chmod(0o666)

    def disarm(self) -> None:
        self.trigger.unlink(missing_ok=True)

    @property
    def armed(self) -> bool:
        return self.trigger.exists()

    def failures(self) -> list[str]:
        """The calls that were made to fail, as "<call> <path>" lines."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
