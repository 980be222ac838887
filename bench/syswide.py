"""Where the machine's CPU goes during a run: a system-wide ``perf`` profile, summarised.

py-spy (``--profile``) sees the Python frames of one server; it cannot see the kernel work
behind a syscall (a loopback ``write`` runs the receiver's TCP path), the cost of waking
threads, the load generator or the idle time. ``perf record -a -g`` samples every CPU, so
its shares add up to the whole machine, and the summary splits it as a capacity plan needs:

* by process kind: the server under test (``python``), the load generator, idle, kernel
  threads (writeback, journal);
* inside the server, user space by library (interpreter, uvloop, OpenSSL, SQLite, libc)
  and kernel time by what the server asked for (the syscall on the sample's kernel stack):
  socket I/O, flushes, file data, file names (create, link, rename, unlink), thread waits
  and wake-ups (futex, epoll), plus interrupts and scheduling outside any syscall.

Needs ``perf`` (Debian: linux-perf) and ``kernel.perf_event_paranoid`` ≤ 1 or root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

SERVER_COMM = "python"  # both servers under test run under the interpreter
SOCKET_FRAMES = ("sock_write_iter", "sock_read_iter", "tcp_sendmsg", "tcp_recvmsg", "__sys_")
SYSCALL_KIND = {
    "futex": "thread waits and wake-ups",
    "epoll_wait": "thread waits and wake-ups",
    "epoll_pwait": "thread waits and wake-ups",
    "epoll_ctl": "thread waits and wake-ups",
    "sched_yield": "thread waits and wake-ups",
    "fsync": "flushes (fsync, fdatasync, syncfs)",
    "fdatasync": "flushes (fsync, fdatasync, syncfs)",
    "syncfs": "flushes (fsync, fdatasync, syncfs)",
    "pwrite64": "file data (read, write)",
    "pread64": "file data (read, write)",
    "openat": "file names (open, create, link, rename, unlink)",
    "link": "file names (open, create, link, rename, unlink)",
    "linkat": "file names (open, create, link, rename, unlink)",
    "rename": "file names (open, create, link, rename, unlink)",
    "renameat2": "file names (open, create, link, rename, unlink)",
    "unlink": "file names (open, create, link, rename, unlink)",
    "unlinkat": "file names (open, create, link, rename, unlink)",
    "newfstatat": "file names (open, create, link, rename, unlink)",
    "close": "file names (open, create, link, rename, unlink)",
}
LIBRARY_KIND = (
    ("libpython", "Python interpreter"),
    ("loop.cpython", "uvloop"),
    ("libssl", "OpenSSL"),
    ("libcrypto", "OpenSSL"),
    ("_ssl.cpython", "OpenSSL"),
    ("sqlite3", "SQLite"),
    ("libc.so", "libc"),
)
SYSCALL = re.compile(r"\s(?:__x64_sys|__ia32_sys|ksys)_(\w+)\s")
SAMPLE_HEAD = re.compile(r"^(\S.*?)\s+(\d+)(?:/\d+)?\s+\[\d+\]")


def available() -> str | None:
    """The ``perf`` binary, or None."""
    return shutil.which("perf")


def start(perf: str, data: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Sample every CPU (with call chains) for ``seconds`` into ``data``."""
    return subprocess.Popen(
        [perf, "record", "-a", "-g", "-q", "-o", str(data), "--", "sleep", f"{seconds:g}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kernel_kind(stack: list[str]) -> str:
    """What a kernel sample of the server was doing, from its (leaf-first) stack."""
    for frame in stack:
        if m := SYSCALL.search(frame):
            name = m.group(1)
            if name in ("read", "write", "readv", "writev", "sendto", "recvfrom", "sendmsg"):
                if any("eventfd" in line for line in stack):  # a loop woken by a thread
                    return "thread waits and wake-ups"
                if any(f in line for line in stack for f in SOCKET_FRAMES):
                    return "socket I/O (TCP over loopback, both ends' kernel work)"
                return "file data (read, write)"
            if name in ("recvmsg",):
                return "socket I/O (TCP over loopback, both ends' kernel work)"
            return SYSCALL_KIND.get(name, f"other syscalls ({name})")
    return "interrupts and scheduling outside syscalls"


def _user_kind(leaf: str) -> str:
    for needle, kind in LIBRARY_KIND:
        if needle in leaf:
            return kind
    return "other user space"


def summarise(perf: str, data: Path) -> dict[str, Any]:
    """Shares (percent of all samples, so of the whole machine) by process kind, and
    the server's samples by library or kernel activity."""
    done = subprocess.run(
        [perf, "script", "-i", str(data), "-F", "comm,pid,tid,cpu,time,ip,sym,dso"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:]}
    processes: Counter[str] = Counter()
    server: Counter[str] = Counter()
    stack: list[str]
    total = 0

    def account(comm: str, stack: list[str]) -> None:
        nonlocal total
        if not stack:
            return
        total += 1
        if comm == "swapper":
            processes["idle"] += 1
        elif comm.startswith(("kworker", "jbd2", "ksoftirqd", "kswapd", "rcu")):
            processes["kernel threads (writeback, journal, softirq)"] += 1
        elif comm == SERVER_COMM:
            processes["server under test"] += 1
            if "[kernel.kallsyms]" in stack[0]:
                server[f"kernel: {_kernel_kind(stack)}"] += 1
            else:
                server[f"user: {_user_kind(stack[0])}"] += 1
        else:
            processes[comm if comm in ("smtpload", "perf") else "other processes"] += 1

    comm, stack = "", []  # the sample being read: its process name, its frames leaf first
    for line in done.stdout.splitlines():
        if not line.strip():
            account(comm, stack)
            comm, stack = "", []
        elif not line[0].isspace():
            account(comm, stack)
            m = SAMPLE_HEAD.match(line)
            comm, stack = (m.group(1).strip() if m else line.split()[0]), []
        else:
            stack.append(line.strip())
    account(comm, stack)
    if total == 0:
        return {"error": "no samples"}

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v / total * 100, 1)) for k, v in counter.most_common()]

    return {"samples": total, "machine": shares(processes), "server": shares(server)}


def lines(summary: dict[str, Any], per_message_us: float | None = None) -> list[str]:
    """The summary as indented text lines; with ``per_message_us`` (machine CPU µs per
    message), each server share also in µs per message."""
    if "error" in summary:
        return [f"  perf: {summary['error']}"]
    out = [f"  whole machine ({summary['samples']} samples):"]
    out += [f"    {pct:5.1f}%  {kind}" for kind, pct in summary["machine"]]
    out.append("  inside the server (percent of the machine):")
    for kind, pct in summary["server"]:
        if pct < 0.3:
            continue
        cost = f"  {per_message_us * pct / 100:6.0f} µs/msg" if per_message_us else ""
        out.append(f"    {pct:5.1f}%{cost}  {kind}")
    return out
