"""Where the benchmarked servers keep their data: a journaled ext4 of the bench's own.

Why: what a durable write costs depends on the file system more than on either server.
The development VM's root file system is ext4 *without a journal* (no ``/proc/fs/jbd2``
entry for it): there an fsync writes the file's blocks and inode and returns (about
0.1 ms), and creating a file in a block group where many files were deleted in the last
12 hours scans past every recently deleted inode (ext4's ``recently_deleted()``, used
only without a journal) and costs hundreds of µs of CPU. A server's data directory
belongs on a journaling file system (postguard's README says so: without a journal, an
fdatasync that returned 0 did not survive a crash in our tests), where every fsync that
changed metadata waits for a journal commit, and the commits of concurrent fsyncs are
shared. The issue's baseline figure (about 400 msg/s) is what the aiosmtpd baseline does
on such a file system here.

:func:`journaled_ext4` makes one: a sparse image file, a loop device with direct I/O (so
the loop device does not add a second page cache: a flush on it costs what the writes
since the last flush cost the disk beneath, as on a disk with a write cache), ``mkfs.ext4``
with its defaults (journal, ``data=ordered``), mounted on a fresh directory. Needs root,
util-linux (losetup, mount) and e2fsprogs (mkfs.ext4).

:func:`describe` says what file system a path is on, for the results.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

IMAGE_BYTES = 8 * 1024**3  # sparse; a 60 s run writes a few hundred MB
TOOLS = ("losetup", "mkfs.ext4", "mount", "umount")


def unavailable() -> str | None:
    """Why :func:`journaled_ext4` cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (losetup, mount)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (Debian: util-linux, mount, e2fsprogs)"
    return None


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def journaled_ext4(parent: Path | None = None) -> Iterator[Path]:
    """A fresh journaled ext4 on a loop device (module docstring), mounted; yields the
    mount point (mode 0755, enterable by the user postguard drops to). Unmounted, the
    loop device detached and the image deleted on exit."""
    base = Path(tempfile.mkdtemp(prefix="pg-bench-disk-", dir=parent))
    base.chmod(0o755)  # mkdtemp's 0700 would shut out the user postguard drops to
    image, mount = base / "ext4.img", base / "mnt"
    mount.mkdir()
    device = ""
    mounted = False
    try:
        with open(image, "wb") as f:
            f.truncate(IMAGE_BYTES)
        _run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image))
        device = _run("losetup", "--find", "--show", "--direct-io=on", str(image))
        _run("mount", device, str(mount))
        mounted = True
        mount.chmod(0o755)
        yield mount
    finally:
        if mounted:
            _run("umount", str(mount))
        if device:
            _run("losetup", "-d", device)
        shutil.rmtree(base, ignore_errors=True)


def describe(path: Path) -> str:
    """The file system ``path`` is on: type, device, and for ext4 whether it has a journal."""
    target = os.path.realpath(path)
    best = ("", "", "")
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            device, point, fstype = line.split()[:3]
            point = point.replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[1]):
                best = (device, point, fstype)
    device, point, fstype = best
    if fstype != "ext4":
        return f"{fstype or 'unknown'} ({device} on {point})"
    name = os.path.basename(os.path.realpath(device))
    journaled = (
        any(entry.startswith(f"{name}-") for entry in os.listdir("/proc/fs/jbd2"))
        if os.path.isdir("/proc/fs/jbd2")
        else False
    )
    kind = "with a journal" if journaled else "WITHOUT a journal"
    return f"ext4 {kind} ({device} on {point})"
