"""Real file systems that fail like disks, on loop devices, with no fault injection in
the program under test.

* :func:`failing_disk`: ext4 whose writeback fails on demand. Its image lives on a
  small tmpfs; filling the tmpfs makes later writes of new blocks fail, so the kernel records
  writeback errors exactly as for a dying disk (the errseq counters that fsync(2) and
  syncfs(2) report from).
* :func:`power_cut_disk`: ext4 (with its journal) that can lose power. The loop device
  writes into the image file as the disk would receive the writes; a power cut copies the
  image as it is at that moment (what the page cache still holds dirty is not in it) and
  mounts the copy in place of the file system: what a server finds after restarting is
  what had reached the disk. Pages are written back on their own only after 30 s
  (``vm.dirty_expire_centisecs``), so within a test what reached the disk is what was
  flushed.

Needs root, a loop device and mkfs.ext4 (e2fsprogs; CI installs it). Where the loop
device cannot be set up (a container without /dev/loop*), the tests skip loudly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postguard.queue.fsync import FILE_SYSTEMS

UMOUNT_ATTEMPTS = 50
UMOUNT_RETRY_SECONDS = 0.1
POWER_CUT_IMAGE_SIZE = 512 * 1024 * 1024  # sparse; above the default min_free_disk
BACKING_SIZE = "32m"  # the tmpfs holding the image: the most the image can ever use
IMAGE_SIZE = 64 * 1024 * 1024  # sparse: larger than its backing, so writes can fail


@dataclass
class FailingDisk:
    mount: Path  # the ext4 file system
    backing: Path  # the tmpfs holding its image
    image: Path

    def fail_writes(self) -> None:
        """Fill the backing tmpfs: from now on writeback to ``mount`` fails wherever it
        needs a part of the image not written before (a block written before, the
        tmpfs already holds: rewriting it still works). New data usually goes to fresh
        blocks, but not always: a test must not expect the very next sync to fail."""
        filler = self.backing / "filler"
        chunk = b"\0" * (1 << 20)
        with open(filler, "ab") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def heal(self) -> None:
        (self.backing / "filler").unlink(missing_ok=True)

    def remount(self) -> None:
        """Unmount while writes still fail, heal, check, and mount again, as after a
        crash: the page cache of the file system is dropped (what it could not write back
        is lost), so what is read from now on is what reached the image; ``e2fsck``
        checks it first, as the boot after such a crash would. Nothing may be using the
        file system."""
        _release_and_unmount(self.mount)
        self.heal()
        checked = _run("e2fsck", "-f", "-y", str(self.image))
        assert checked.returncode in (0, 1, 2), checked.stdout + checked.stderr  # 1, 2: fixed
        _mount_image(self.image, self.mount)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True)


def _mkfs_or_skip() -> str:
    """mkfs.ext4, after checking that a loop mount can be tried here (else skip loudly)."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: a loop-mounted file system needs root (CI runs as root)")
    mkfs = shutil.which("mkfs.ext4")
    if mkfs is None:
        pytest.skip("SKIPPED LOUDLY: mkfs.ext4 is missing (apt-get install e2fsprogs)")
    return mkfs


def _make_and_mount(image: Path, size: int, mount: Path, *, journal: bool) -> None:
    """A sparse ext4 image of ``size`` octets, loop-mounted at ``mount`` (skip loudly if
    the loop device cannot be set up). Inode tables and journal are written now, so that
    those regions of the image exist (a full backing tmpfs fails only new blocks)."""
    mkfs = _mkfs_or_skip()
    with open(image, "wb") as f:
        f.truncate(size)
    extended = "nodiscard,lazy_itable_init=0,lazy_journal_init=0"
    features = [] if journal else ["-O", "^has_journal"]
    done = _run(mkfs, "-q", "-F", *features, "-E", extended, str(image))
    assert done.returncode == 0, done.stderr
    try:
        _mount_image(image, mount)
    except OSError as exc:
        pytest.skip(f"SKIPPED LOUDLY: {exc}")


def _release_and_unmount(mount: Path) -> None:
    """Drop this process's syncfs descriptor there (fsync.FileSystemHandles), unmount."""
    with contextlib.suppress(OSError):
        FILE_SYSTEMS.release(mount)
    _unmount(mount)


def _mount_image(image: Path, mount: Path) -> None:
    """Loop-mount ``image`` at ``mount``.

    Raises:
        OSError: the loop device could not be set up (the message is mount's).
    """
    done = _run("mount", "-o", "loop,errors=continue", str(image), str(mount))
    if done.returncode != 0:
        raise OSError(f"cannot loop-mount {image}: {done.stderr.strip()}")


def failing_disk(base: Path, *, journal: bool = True) -> Iterator[FailingDisk]:
    """Mount the failing file system under ``base`` for the duration of the generator.

    With ``journal`` (the default, as in production), a failed metadata write aborts the
    journal and the file system turns read-only: every later call fails, and a remount
    finds a consistent file system. Without, only the failed data is lost and each
    descriptor is told of it once (the errseq behaviour itself, for tests of how errors
    are reported), but ext4 then gives no durability after a crash: seen here, data whose
    fdatasync had returned 0 read back as zeros after the remount (its extents never
    marked written on disk)."""
    _mkfs_or_skip()
    backing, mount = base / "backing", base / "ext4"
    backing.mkdir(parents=True)
    mount.mkdir()
    done = _run("mount", "-t", "tmpfs", "-o", f"size={BACKING_SIZE}", "tmpfs", str(backing))
    if done.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        image = backing / "ext4.img"
        _make_and_mount(image, IMAGE_SIZE, mount, journal=journal)
        try:
            yield FailingDisk(mount=mount, backing=backing, image=image)
        finally:
            # Dirty pages that cannot be written must not keep the mount busy.
            (backing / "filler").unlink(missing_ok=True)
            _release_and_unmount(mount)
    finally:
        subprocess.run(["umount", str(backing)], check=True)


@dataclass
class PowerCutDisk:
    mount: Path
    image: Path

    def power_cut(self) -> None:
        """Keep only what reached the disk (module docstring). Every process using the
        file system must have been killed already."""
        snapshot = self.image.with_name(self.image.name + ".cut")
        subprocess.run(["cp", "--sparse=always", str(self.image), str(snapshot)], check=True)
        _release_and_unmount(self.mount)
        os.replace(snapshot, self.image)
        _mount_image(self.image, self.mount)  # replays the journal, as after a reboot


def _unmount(mount: Path) -> None:
    """umount, waiting briefly for a killed process's descriptors to be closed."""
    for _ in range(UMOUNT_ATTEMPTS):
        done = _run("umount", str(mount))
        if done.returncode == 0:
            return
        time.sleep(UMOUNT_RETRY_SECONDS)
    raise AssertionError(f"cannot unmount {mount}: {done.stderr.strip()}")


def power_cut_disk(base: Path, *, size: int = POWER_CUT_IMAGE_SIZE) -> Iterator[PowerCutDisk]:
    """Mount a journaled ext4 at ``base / "ext4"`` (its image beside it, sparse) for the
    duration of the generator; see :class:`PowerCutDisk`."""
    base.mkdir(parents=True, exist_ok=True)
    image, mount = base / "ext4.img", base / "ext4"
    mount.mkdir()
    _make_and_mount(image, size, mount, journal=True)
    try:
        yield PowerCutDisk(mount=mount, image=image)
    finally:
        _release_and_unmount(mount)
