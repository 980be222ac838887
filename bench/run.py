"""Throughput benchmark: postguard against an aiosmtpd baseline, under the same load.

    python bench/run.py                      # plain and STARTTLS, 20 sessions, 4 KiB, 15 s + 3 s
    python bench/run.py --record             # ... and append the results to bench/RESULTS.md
    python bench/run.py --modes starttls --duration 30 --concurrency 50 --size 65536
    python bench/run.py --profile            # ... then profile postguard under load (py-spy)
    python bench/run.py --perf               # ... and split the machine's CPU (perf, system-wide)

Options:
    --duration SEC      measured seconds per run (default 15)
    --warmup SEC        seconds of load before measuring starts (default 3)
    --concurrency N     concurrent SMTP sessions (default 20)
    --size BYTES        message size including headers (default 4096)
    --modes LIST        comma-separated: plain, starttls (default both)
    --rounds N          repeat every (mode, server) run N times (default 1)
    --baselines LIST    comma-separated aiosmtpd baselines (default both): pool (the file
                        work in a 16-thread pool, so 20 sessions' fsyncs overlap) and inline
                        (the file work in handle_DATA itself, the event loop waiting for the
                        disk: the plain reading of "a handler that writes a Maildir file
                        with fsync before answering 250"); the table gives postguard's
                        msgs/s divided by each
    --no-pipelining     lockstep: one command, then wait for its reply (default: smtpload
                        uses PIPELINING where the server advertises it, RFC 2920, as MTAs and
                        mail libraries do, and as shared/README.md runs this very load;
                        aiosmtpd does not advertise it, so the baselines are always driven in
                        lockstep)
    --record            append a dated section to bench/RESULTS.md
    --profile           after measuring, profile postguard with py-spy in each mode
    --keep              keep the servers' data directories (printed) instead of deleting them
    --perf              sample the whole machine with ``perf record -a -g`` for 8 s inside each
                        measured run and print where the CPU went: server, load generator,
                        idle; inside the server, interpreter, uvloop, OpenSSL, SQLite, and
                        kernel time by activity (socket I/O, flushes, file data, file names,
                        thread wake-ups), also in µs per message (bench/syswide.py)
    --flush-latency MS  give both servers' fsync, fdatasync and syncfs MS more latency, as
                        on a slower disk (an LD_PRELOAD shim, bench/slowflush/slowflush.c:
                        one flush at a time per process, concurrent callers covered by the
                        next flush, as ext4's journal merges them; the real call is still
                        made). One process each (--workers 1).
    --workers N         postguard's [server] workers (default: one per CPU; 1 with
                        --flush-latency)
    --disk KIND         where the servers' data directories live: "journaled" (a fresh
                        ext4 with its journal on a loop device, made for the run and
                        removed after it: bench/disk.py; needs root and e2fsprogs),
                        "workdir" (a directory under --workdir, on whatever file system that
                        is), or "auto" (the default: journaled where possible, else workdir,
                        said on stderr). The file system used is printed and recorded.
    --workdir DIR       where the data directories (or, with --disk journaled, the disk
                        image) go (default: $TMPDIR or /tmp). On the development VM the root
                        file system has no journal: fsync is about 0.1 ms there, and file
                        creation costs up to 770 µs of CPU in inode groups that test suites
                        churn (bench/disk.py explains both).

What it does: builds the C load generator ``<repo>/../shared/tools/smtpload.c`` into
``bench/out/smtpload``; starts ``python -m postguard serve`` (mx listener only, port 0,
``[log] level = "warning"``, delivering to a Maildir) and ``bench/baseline_aiosmtpd.py``
(aiosmtpd, Maildir with fsync before 250, the same development certificate; once per
``--baselines`` entry); then runs smtpload against each, alternating which server goes
first from one mode to the next; and prints msgs/s, p50 and p99 latency, each server's CPU
use and postguard's msgs/s divided by each baseline's.
Raw smtpload JSON and the table go to ``bench/out/results-<timestamp>.json``.

Between runs it waits until postguard's queue has drained into the Maildir, so a run does
not inherit the previous run's delivery backlog; every message counted as sent must be
found in the server's Maildir by the end (reported as "stored").

STARTTLS runs verify the server certificate (smtpload ``--cafile`` with the development CA,
SNI ``localhost``); without ``--cafile`` smtpload does not verify.

Benchmarks only: nothing here asserts a timing (STYLE.md §5).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import disk  # bench/ is sys.path[0] when run as python bench/run.py
import syswide

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SHARED = REPO.parent / "shared"
OUT = BENCH / "out"
RESULTS_MD = BENCH / "RESULTS.md"
PERF_SECONDS = 8.0  # --perf: length of the system-wide sample, inside the measured window
READY_TIMEOUT_SECONDS = 60.0
DRAIN_TIMEOUT_SECONDS = 300.0
MODES = ("plain", "starttls")
SERVERS = ("postguard", "aiosmtpd", "aiosmtpd-inline")
BASELINES = {"pool": "aiosmtpd", "inline": "aiosmtpd-inline"}  # --baselines: --io → name
RCPT = "test@localhost"
LISTENER_LINE = re.compile(r"^\s+mx\s+smtp://(\S+):(\d+)\s")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_ENV: dict[str, str] = {}  # extra environment of both servers (--flush-latency)


PIPELINING_NOTE = "PIPELINING where advertised (postguard; aiosmtpd does not)"


def _descendants(pid: int) -> list[int]:
    """PIDs of the live descendants of ``pid`` (Linux /proc): postguard's workers are
    children of its spawner, which is a child of the first process."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *_descendants(int(child))]
    return found


@dataclass
class Server:
    """A server process under test."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    maildir: Path
    queue_dir: Path | None
    stderr_path: Path
    lines: list[str] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live descendants (worker
        processes), all threads, from /proc."""
        total = 0.0
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    def stored(self) -> int:
        new = self.maildir / "new"
        return sum(1 for _ in new.iterdir()) if new.is_dir() else 0

    def backlog(self) -> int:
        """Messages still in postguard's queue store (read-only, like the queue CLI)."""
        if self.queue_dir is None:
            return 0
        db = self.queue_dir / "queue.db"
        if not db.is_file():
            return 0
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def build_smtpload() -> Path:
    binary = OUT / "smtpload"
    tools = SHARED / "tools"
    if not (tools / "smtpload.c").is_file():
        sys.exit(f"bench: {tools / 'smtpload.c'} not found (shared/ must sit beside the repo)")
    done = subprocess.run(
        ["make", "-s", "-C", str(tools), f"OUT={binary}"], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(
            f"bench: building smtpload failed:\n{done.stderr}\n"
            "It needs a C compiler and OpenSSL headers: apt-get install -y gcc make libssl-dev"
        )
    return binary


def build_slowflush() -> Path:
    """Build the LD_PRELOAD shim that adds flush latency (bench/slowflush/slowflush.c)."""
    library = OUT / "slowflush.so"
    source = BENCH / "slowflush" / "slowflush.c"
    done = subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source), "-ldl", "-lpthread"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"bench: building {source} failed:\n{done.stderr}")
    return library


def _start(
    name: str, argv: list[str], stderr_path: Path, port_of: re.Pattern[str], ready: str
) -> tuple[subprocess.Popen[str], int, list[str]]:
    """Start a server; read its stdout until ``ready``; return the process and its port."""
    err = open(stderr_path, "w")  # noqa: SIM115 - the child writes to it for its lifetime
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **SERVER_ENV),
    )
    err.close()
    lines: list[str] = []
    port: list[int] = []
    is_ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # keep draining so the child never blocks on stdout
            lines.append(line.rstrip("\n"))
            if (m := port_of.match(line)) and not port:
                port.append(int(m.group(m.lastindex or 1)))
            if line.startswith(ready):
                is_ready.set()
        is_ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not is_ready.wait(READY_TIMEOUT_SECONDS) or proc.poll() is not None or not port:
        proc.kill()
        proc.wait()
        sys.exit(f"bench: {name} did not start:\n{stderr_path.read_text()[-3000:]}")
    return proc, port[0], lines


def start_postguard(
    work: Path, concurrency: int, *, group_commit: bool = True, workers: int = 1
) -> Server:
    data = work / "postguard"
    data.mkdir(mode=0o755)
    config = work / "postguard.toml"
    config.write_text(
        f"""\
[server]
data_dir = "{data}"
hostname = "localhost"
workers = {workers}

[limits]
max_connections = {max(1000, concurrency * 2)}
max_connections_per_ip = {concurrency + 16}

[listener.mx]
addresses = ["127.0.0.1:0"]

[listener.submission]
enabled = false

[listener.submissions]
enabled = false

[queue]
group_commit = {"true" if group_commit else "false"}

[log]
level = "warning"
""",
        encoding="utf-8",
    )
    proc, port, lines = _start(
        "postguard",
        [sys.executable, "-m", "postguard", "serve", "--config", str(config)],
        work / "postguard.stderr",
        LISTENER_LINE,
        "postguard: ready",
    )
    return Server(
        "postguard",
        proc,
        port,
        maildir=data / "mail" / "localhost" / "test",
        queue_dir=data / "queue",
        stderr_path=work / "postguard.stderr",
        lines=lines,
    )


def start_baseline(work: Path, cert: Path, key: Path, io: str) -> Server:
    """The aiosmtpd baseline with its file work in a thread pool (``io="pool"``, named
    "aiosmtpd") or in ``handle_DATA`` itself (``io="inline"``, "aiosmtpd-inline")."""
    name = BASELINES[io]
    maildir = work / f"{name}-mail"
    stderr = work / f"{name}.stderr"
    proc, port, lines = _start(
        name,
        [
            sys.executable,
            str(BENCH / "baseline_aiosmtpd.py"),
            "--maildir",
            str(maildir),
            "--cert",
            str(cert),
            "--key",
            str(key),
            "--io",
            io,
        ],
        stderr,
        re.compile(r"^listening on (\d+)"),
        "ready",
    )
    return Server(name, proc, port, maildir, None, stderr, lines)


def run_load(
    smtpload: Path, server: Server, mode: str, args: argparse.Namespace, ca: Path
) -> dict[str, Any]:
    argv = [
        str(smtpload),
        "-H",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-m",
        mode,
        "-c",
        str(args.concurrency),
        "-s",
        str(args.size),
        "-d",
        str(args.warmup + args.duration),
        "-w",
        str(args.warmup),
        "--from",
        "bench@example.org",
        "--rcpt",
        RCPT,
        "--label",
        f"{server.name}-{mode}",
    ]
    if mode == "starttls":
        argv += ["--cafile", str(ca), "--sni", "localhost"]
    if args.pipelining:
        argv.append("-P")
    stored_before, cpu_before, started = server.stored(), server.cpu_seconds(), time.monotonic()
    depths: list[int] = []  # postguard's queue, once a second while the load runs
    loading = threading.Event()
    loading.set()

    def sample() -> None:
        while loading.is_set():
            with contextlib.suppress(sqlite3.Error):
                depths.append(server.backlog())
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    if server.queue_dir is not None:
        sampler.start()
    load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    perf_data = OUT / f"perf-{server.name}-{mode}.data"
    perf_seconds = max(1.0, min(PERF_SECONDS, args.duration - 2.0))
    if args.perf:  # system-wide samples from inside the measured window
        time.sleep(args.warmup + 1.0)
        syswide.start(args.perf, perf_data, perf_seconds).wait(timeout=perf_seconds + 60)
    stdout, stderr = load.communicate(timeout=args.warmup + args.duration + 120)
    done = subprocess.CompletedProcess(argv, load.returncode, stdout, stderr)
    loading.clear()
    wall = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    if done.returncode != 0:
        sys.exit(f"bench: smtpload failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    drain_started = time.monotonic()
    while server.backlog() and time.monotonic() - drain_started < DRAIN_TIMEOUT_SECONDS:
        time.sleep(0.1)  # a benchmark, not a test: wait for postguard's delivery backlog
    result["bench"] = {
        "server": server.name,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct": round(cpu / wall * 100, 1),
        "drain_s": round(time.monotonic() - drain_started, 2),
        "backlog_left": server.backlog(),
        "queue_depths": depths,
        "sent": result["messages_ok_incl_warmup"],
        "stored": server.stored() - stored_before,
        "smtpload_summary": done.stderr.strip(),
    }
    if args.perf:
        result["bench"]["perf"] = syswide.summarise(args.perf, perf_data)
    return result


def profile_postguard(
    smtpload: Path, server: Server, mode: str, args: argparse.Namespace, ca: Path
) -> dict[str, Any]:
    """Load postguard while py-spy samples it; returns the top frames."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("bench: --profile needs py-spy (pip install py-spy); skipped", file=sys.stderr)
        return {}
    seconds = args.warmup + args.duration
    raw, svg = OUT / f"profile-{mode}.txt", OUT / f"profile-{mode}.svg"
    spies = [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(server.proc.pid),
                "--duration",
                str(seconds),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                fmt,
                "-o",
                str(path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fmt, path in (("raw", raw), ("flamegraph", svg))
    ]
    result = run_load(smtpload, server, mode, args, ca)
    for spy in spies:
        spy.wait(timeout=seconds + 60)
    return {
        "mode": mode,
        "msgs_per_s_under_profiler": result["msgs_per_s"],
        "svg": str(svg.relative_to(REPO)),
        **top_frames(raw),
    }


def top_frames(raw: Path, limit: int = 12) -> dict[str, Any]:
    """Sample shares from py-spy's collapsed stacks, split by thread kind.

    "event-loop" is the thread running the asyncio/uvloop loop (its CPU bounds throughput);
    "io-pool" is the ThreadPoolExecutor doing file work (mostly waiting in fsync: wall time,
    not CPU); "queue-store" the queue store's writer and sync threads. Self entries keep
    the line number, so a syscall shows where it is made.
    """
    if not raw.is_file():
        return {}
    own: dict[str, Counter[str]] = {}
    inclusive: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        short = [_short_frame(f) for f in frames]
        if any(
            f.startswith(("_GroupWriter._write_loop", "_GroupWriter._sync_loop")) for f in short
        ):
            kind = "queue-store"  # the store's writer and sync threads
        elif any(f.startswith("_worker (futures/thread.py") for f in short):
            kind = "io-pool"
        elif any(f.startswith(("Runner.run (", "run (uvloop", "_run_loop (")) for f in short):
            kind = "event-loop"
        else:
            kind = "other"
        kinds[kind] += count
        own.setdefault(kind, Counter())[_short_frame(frames[-1], keep_line=True)] += count
        for frame in set(short):
            inclusive[frame] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(n / total * 100, 1)) for f, n in counter.most_common(limit)]

    return {
        "samples": total,
        "threads": {k: round(n / total * 100, 1) for k, n in kinds.most_common()},
        "self": {kind: share(counter) for kind, counter in own.items()},
        "inclusive": share(inclusive),
    }


def _short_frame(frame: str, *, keep_line: bool = False) -> str:
    """'func (/long/path/pkg/mod.py:12)' -> 'func (pkg/mod.py)' (or with ':12')."""
    m = re.match(r"^(.*) \((.*?):(\d+)\)$", frame)
    if not m:
        return frame
    func, path, line = m.groups()
    where = "/".join(Path(path).parts[-2:])
    return f"{func} ({where}:{line})" if keep_line else f"{func} ({where})"


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import uvloop  # noqa: F401
    except ImportError:
        loop = "asyncio"
    else:
        loop = "uvloop"
    import postguard

    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    imported = Path(postguard.__file__).resolve().parent.parent
    if imported != REPO / "src":
        rev = f"{rev or 'unknown'} (postguard imported from {imported})"
    elif subprocess.run(
        ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "src"]
    ).returncode:
        rev = f"{rev or 'unknown'} with uncommitted changes in src/"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loop": loop,
        "commit": rev or "unknown",
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    header = (
        "| mode | server | msgs/s | p50 ms | p99 ms | server CPU % | CPU µs/msg | failures "
        "| postguard ÷ this |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if row.get("ratio") is not None else ""
        lines.append(
            f"| {row['mode']} | {row['server']} | {row['msgs_per_s']:.1f} | {row['p50']:.2f} "
            f"| {row['p99']:.2f} | {row['cpu_pct']:.0f} | {row['cpu_us_per_msg']:.0f} "
            f"| {row['failures']} | {ratio} |"
        )
    return lines


def summarise(runs: list[dict[str, Any]], modes: list[str]) -> list[dict[str, Any]]:
    rows = []
    for mode in modes:
        by_server: dict[str, dict[str, Any]] = {}
        for name in SERVERS:
            mine = [r for r in runs if r["mode"] == mode and r["bench"]["server"] == name]
            if not mine:
                continue

            def mean(values: list[float]) -> float:
                return sum(values) / len(values)

            by_server[name] = {
                "mode": mode,
                "server": name,
                "msgs_per_s": mean([r["msgs_per_s"] for r in mine]),
                "p50": mean([r["latency_ms"]["p50"] for r in mine]),
                "p99": mean([r["latency_ms"]["p99"] for r in mine]),
                "cpu_pct": mean([r["bench"]["server_cpu_pct"] for r in mine]),
                "cpu_us_per_msg": mean(
                    [
                        r["bench"]["server_cpu_s"] / max(1, r["messages_ok_incl_warmup"]) * 1e6
                        for r in mine
                    ]
                ),
                "failures": sum(r["failures"]["total"] for r in mine),
                "ratio": None,
            }
        if "postguard" in by_server:  # each baseline row: postguard's msgs/s over its own
            for name, row in by_server.items():
                if name != "postguard" and row["msgs_per_s"]:
                    row["ratio"] = by_server["postguard"]["msgs_per_s"] / row["msgs_per_s"]
        rows += list(by_server.values())
    return rows


def round_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Each round's msgs/s and postguard's ratio to each baseline in it: the spread
    between rounds is the measure of how far the table's means can be trusted."""
    lines = []
    for key in sorted({(r["round"], r["mode"]) for r in runs}):
        mine = {
            r["bench"]["server"]: r["msgs_per_s"] for r in runs if (r["round"], r["mode"]) == key
        }
        ours = mine.get("postguard")
        parts = []
        for name in SERVERS:
            if name not in mine:
                continue
            ratio = ""
            if ours and name != "postguard":
                ratio = f" ({ours / mine[name]:.2f}×)"  # noqa: RUF001
            parts.append(f"{name} {mine[name]:.0f}{ratio}")
        lines.append(f"round {key[0]} {key[1]}: " + ", ".join(parts))
    return lines


def queue_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Whether delivery kept up: postguard's queue depth during each run, and the drain."""
    lines = []
    for run in runs:
        b = run["bench"]
        depths = b.get("queue_depths") or []
        if b["server"] != "postguard" or not depths:
            continue
        half = len(depths) // 2
        lines.append(
            f"postguard {run['mode']}: messages in the queue during the load (sampled each "
            f"second): peak {max(depths)}, mean of the first half {mean_of(depths[:half])}, "
            f"of the second half {mean_of(depths[half:])}, at the end {depths[-1]}; "
            f"drained {b['drain_s']} s after the load."
        )
    return lines


def mean_of(values: list[int]) -> str:
    return f"{sum(values) / len(values):.0f}" if values else "-"


def perf_lines(runs: list[dict[str, Any]]) -> list[str]:
    """``--perf`` summaries of the runs (empty without ``--perf``)."""
    out: list[str] = []
    for run in runs:
        if "perf" not in run["bench"]:
            continue
        msgs = run["msgs_per_s"]
        machine_us = (os.cpu_count() or 1) * 1e6 / msgs if msgs else None
        out += [
            "",
            f"where the CPU goes, {run['bench']['server']} {run['mode']} "
            f"(round {run.get('round', 1)}, {msgs:.0f} msgs/s):",
            *syswide.lines(run["bench"]["perf"], machine_us),
        ]
    return out


def record(
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    args: argparse.Namespace,
    runs: list[dict[str, Any]] | None = None,
) -> None:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = [
        "",
        f"## {when}",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, "
        f"Python {info['python']} on {info['loop']}; postguard at {info['commit']}.",
        f"Load: smtpload, {args.concurrency} sessions, {args.size}-byte messages, "
        f"{args.duration} s measured after {args.warmup} s warm-up, {args.rounds} round(s), "
        f"{PIPELINING_NOTE if args.pipelining else 'lockstep (no PIPELINING)'}, "
        "STARTTLS verifying the certificate; "
        f"postguard with workers = {args.workers}; data on {args.data_file_system}"
        + (
            f"; **simulated flush latency {args.flush_latency:g} ms** (bench/slowflush)."
            if args.flush_latency > 0
            else "."
        ),
        "",
        *table(rows),
        "",
    ]
    section += [*(f"* {line}" for line in round_lines(runs or [])), ""]
    queue = queue_lines(runs or [])
    if queue:
        section += [*(f"* {line}" for line in queue), ""]
    perf = perf_lines(runs or [])
    if perf:
        section += ["```", *perf[1:], "```", ""]
    with open(RESULTS_MD, "a", encoding="utf-8") as f:
        f.write("\n".join(section))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="postguard vs aiosmtpd throughput (see the module docstring)"
    )
    parser.add_argument("--duration", type=int, default=15, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per run")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent sessions")
    parser.add_argument("--size", type=int, default=4096, help="message size in bytes")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--rounds", type=int, default=1, help="repetitions of every run")
    parser.add_argument(
        "--baselines",
        default="pool,inline",
        help="comma-separated aiosmtpd baselines: pool (file work in a thread pool), "
        "inline (in handle_DATA, the event loop waits for the disk)",
    )
    parser.add_argument(
        "--pipelining",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use PIPELINING where the server advertises it (default; --no-pipelining: lockstep)",
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--profile", action="store_true", help="py-spy profile of postguard")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument(
        "--perf",
        action="store_true",
        help="sample the whole machine with perf during each run and split its CPU by "
        "process, library and kernel activity (needs perf)",
    )
    parser.add_argument(
        "--flush-latency",
        type=float,
        default=0.0,
        metavar="MS",
        help="give both servers' fsync/fdatasync/syncfs this latency (a slower disk; "
        "needs gcc; one process each)",
    )
    parser.add_argument(
        "--disk",
        choices=("auto", "journaled", "workdir"),
        default="auto",
        help="data on a fresh journaled ext4 (loop device), or under --workdir; auto: "
        "journaled where possible",
    )
    parser.add_argument(
        "--workdir",
        default=None,
        help="where both servers' data directories go (default: the system's temporary "
        "directory; every component must be enterable by the user postguard drops to)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="postguard [server] workers (processes; default: one per CPU, or 1 with "
        "--flush-latency)",
    )
    args = parser.parse_args()
    if args.workers is None:
        args.workers = 1 if args.flush_latency > 0 else (os.cpu_count() or 1)
    if args.disk in ("auto", "journaled"):
        why = disk.unavailable()
        if why is not None:
            if args.disk == "journaled":
                parser.error(f"--disk journaled {why}")
            print(f"bench: no journaled disk ({why}); using --workdir", file=sys.stderr)
            args.disk = "workdir"
        else:
            args.disk = "journaled"
    if args.perf:
        args.perf = syswide.available()
        if args.perf is None:
            parser.error("--perf needs perf (Debian: apt-get install linux-perf)")
    args.baseline_list = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown_baselines = set(args.baseline_list) - set(BASELINES)
    if unknown_baselines or not args.baseline_list:
        parser.error(
            f"--baselines: unknown {sorted(unknown_baselines)}; choose from {', '.join(BASELINES)}"
        )
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.mode_list) - set(MODES)
    if unknown or not args.mode_list:
        parser.error(f"--modes: unknown {sorted(unknown)}; choose from {', '.join(MODES)}")
    return args


def main() -> int:
    args = parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    smtpload = build_smtpload()
    if args.flush_latency > 0:
        if args.workers != 1:
            sys.exit("bench: --flush-latency models one disk per process: use --workers 1")
        SERVER_ENV["LD_PRELOAD"] = str(build_slowflush())
        SERVER_ENV["SLOWFLUSH_US"] = str(int(args.flush_latency * 1000))
    if args.disk != "journaled":
        return bench(args, smtpload, Path(args.workdir) if args.workdir else None)
    with disk.journaled_ext4(args.workdir) as mount:
        return bench(args, smtpload, mount)


def bench(args: argparse.Namespace, smtpload: Path, parent: Path | None) -> int:
    """Run every round with the servers' data under ``parent``; print and record."""
    # postguard started as root drops to "nobody", which must be able to enter its data dir
    work = Path(tempfile.mkdtemp(prefix="pg-bench-", dir=parent))
    work.chmod(0o755)
    args.data_file_system = disk.describe(work)
    print(f"bench: data on {args.data_file_system}", flush=True)
    servers: dict[str, Server] = {}
    try:
        servers["postguard"] = start_postguard(work, args.concurrency, workers=args.workers)
        tls = work / "postguard" / "tls"
        for io in args.baseline_list:
            server = start_baseline(work, tls / "cert.pem", tls / "key.pem", io)
            servers[server.name] = server
        ca = tls / "ca.pem"
        runs: list[dict[str, Any]] = []
        order = [name for name in SERVERS if name in servers]
        for round_no in range(args.rounds):
            for mode in args.mode_list:
                for name in order:
                    print(f"bench: round {round_no + 1} {mode} {name} ...", flush=True)
                    result = run_load(smtpload, servers[name], mode, args, ca)
                    result["mode"] = mode
                    result["round"] = round_no + 1
                    runs.append(result)
                    print(f"  {result['bench']['smtpload_summary']}", flush=True)
                order.reverse()  # alternate who goes first (page cache, CPU boost, journal)
        profiles = []
        if args.profile:
            for mode in args.mode_list:
                print(f"bench: profiling postguard, {mode} ...", flush=True)
                profiles.append(profile_postguard(smtpload, servers["postguard"], mode, args, ca))
    finally:
        for server in servers.values():
            server.stop()
        if args.keep:
            print(f"data directories kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows = summarise(runs, args.mode_list)
    info = machine()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_json = OUT / f"results-{stamp}.json"
    out_json.write_text(
        json.dumps(
            {
                "machine": info,
                "args": vars(args),
                "table": rows,
                "runs": runs,
                "profiles": profiles,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print()
    print("\n".join(table(rows)))
    for line in round_lines(runs):
        print(line)
    for line in queue_lines(runs):
        print(line)
    for run in runs:
        b = run["bench"]
        if b["stored"] < b["sent"] or b["backlog_left"]:
            print(
                f"WARNING: {b['server']} {run['mode']}: {b['sent']} acknowledged, "
                f"{b['stored']} stored, {b['backlog_left']} still queued",
                file=sys.stderr,
            )
    for line in perf_lines(runs):
        print(line)
    for prof in profiles:
        print(f"\nprofile of postguard, {prof.get('mode')} ({prof.get('samples')} samples):")
        print(f"  samples by thread: {prof.get('threads')}")
        for kind, entries in prof.get("self", {}).items():
            print(f"  top self, {kind} thread(s):")
            for frame, pct in entries:
                print(f"    {pct:5.1f}%  {frame}")
        print("  top inclusive:")
        for frame, pct in prof.get("inclusive", []):
            print(f"    {pct:5.1f}%  {frame}")
    print(f"\nraw results: {out_json.relative_to(REPO)}")
    if args.record:
        record(rows, info, args, runs)
        print(f"recorded in {RESULTS_MD.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
