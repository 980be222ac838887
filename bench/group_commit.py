"""Group commit, measured: postguard with 1, 20 and 100 concurrent sessions, group commit
on vs. forced one-commit-per-message (``[queue] group_commit = false``), in one run.

    python bench/group_commit.py [--duration 10] [--warmup 2] [--sessions 1,20,100] [--record]

Plain SMTP, 4 KiB messages, one message after another per session (no pipelining); the
same smtpload as bench/run.py. Prints msgs/s and p50/p99 latency per cell and the ratio
on/off. Reuses run.py's helpers (server start-up, load, drain check).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--sessions", default="1,20,100")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    args.pipelining = False
    smtpload = bench.build_smtpload()
    rows: list[dict[str, Any]] = []
    for sessions in (int(n) for n in args.sessions.split(",")):
        for group_commit in (True, False):
            args.concurrency = sessions
            with tempfile.TemporaryDirectory(prefix="pg-bench-gc-") as tmp:
                work = Path(tmp)
                work.chmod(0o755)
                server = bench.start_postguard(work, sessions, group_commit=group_commit)
                try:
                    ca = work / "postguard" / "tls" / "ca.pem"
                    result = bench.run_load(smtpload, server, "plain", args, ca)
                finally:
                    server.stop()
            latency = result["latency_ms"]
            rows.append(
                {
                    "sessions": sessions,
                    "group_commit": group_commit,
                    "msgs_per_s": result["msgs_per_s"],
                    "p50": latency["p50"],
                    "p99": latency["p99"],
                    "lost": result["bench"]["sent"] - result["bench"]["stored"],
                }
            )
            print(
                f"  sessions={sessions} group_commit={group_commit}: "
                f"{result['msgs_per_s']:.1f} msg/s",
                file=sys.stderr,
            )
    lines = [
        "| sessions | group commit | msgs/s | p50 ms | p99 ms | on/off |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for on, off in zip(rows[0::2], rows[1::2], strict=True):
        for row in (on, off):
            ratio = f"{on['msgs_per_s'] / off['msgs_per_s']:.2f}" if row is on else ""
            lines.append(
                f"| {row['sessions']} | {'on' if row['group_commit'] else 'off'} | "
                f"{row['msgs_per_s']:.1f} | {row['p50']:.2f} | {row['p99']:.2f} | {ratio} |"
            )
    print("\n".join(lines))
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a", encoding="utf-8") as f:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            f.write(
                f"\n## Group commit, {stamp}\n\n`python bench/group_commit.py "
                f"--duration {args.duration:g} --warmup {args.warmup:g}` (plain, "
                f"{args.size} B messages, no pipelining)\n\n" + "\n".join(lines) + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
