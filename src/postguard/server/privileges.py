"""Dropping root after binding (Postfix's model: bind privileged ports, then run unprivileged).

When started as root, postguard binds its sockets, hands the data directory
to the service user, and switches to that user and its group for good
(``setgroups``, ``setgid``, ``setuid``, in that order). Started as any other
user, nothing changes.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

DEFAULT_USER = "nobody"


class PrivilegeError(Exception):
    """The service user or group cannot be used."""


def drop_privileges(
    user: str | None, group: str | None, data_dir: Path, *, maildir_root: Path | None = None
) -> str | None:
    """Switch to ``user`` (default "nobody") if running as root.

    Returns:
        The user name switched to, or None when not running as root.

    Raises:
        PrivilegeError: the user or group does not exist, or the switch failed.
    """
    if os.geteuid() != 0:
        return None
    name = user or DEFAULT_USER
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"server.user: no such user {name!r}") from None
    if pw.pw_uid == 0:
        raise PrivilegeError("server.user: refusing to keep running as root")
    try:
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError:
        raise PrivilegeError(f"server.group: no such group {group!r}") from None
    _hand_over(data_dir, pw.pw_uid, gid, skip=maildir_root)
    try:
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(pw.pw_uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot switch to user {name!r}: {exc}") from None
    if os.getuid() == 0 or os.geteuid() == 0:
        raise PrivilegeError("privileges were not dropped")
    if not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        raise PrivilegeError(
            f"user {name!r} cannot use the data directory {data_dir} "
            "(it, or one of its parent directories, is not accessible to that user)"
        )
    return name


def _hand_over(data_dir: Path, uid: int, gid: int, *, skip: Path | None) -> None:
    """chown what root created in the data directory to the service user.

    Mailboxes can hold millions of files, all written by the service user
    already, so the Maildir root is handed over at its top only.
    """
    for dirpath, dirnames, filenames in os.walk(data_dir):
        if skip is not None and Path(dirpath) == skip:
            dirnames[:] = []
            filenames = []
        for entry in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            if os.lstat(entry).st_uid != uid:
                os.chown(entry, uid, gid, follow_symlinks=False)
