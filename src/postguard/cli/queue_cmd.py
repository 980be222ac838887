"""``postguard queue``: see and steer what is waiting, against the live store, safely.

    postguard queue list [--json] [--limit N]
    postguard queue show ID [--json]
    postguard queue retry ID | --all
    postguard queue hold ID... | -
    postguard queue release ID... | -
    postguard queue delete ID... | -        ("-": the IDs from standard input)
    postguard queue stats [--json]

Every action is one transaction on the same SQLite database the server uses
(WAL mode lets both work at once); the server's queue manager picks changes up
at its next scan. Exit status: 0 ok, 67 (EX_NOUSER) when a queue ID does not
exist (the others given are still acted on), 74 (EX_IOERR) when the queue
database cannot be opened or a write to it fails (the message names the file),
78 configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..queue.store.base import MessageRow, QueueStats
from ..queue.store.sqlite import SqliteQueueStore
from .common import add_location_arguments, describe_error, resolve_config
from .main import EX_CONFIG, EX_IOERR, EX_OK

EX_NOUSER = 67  # sysexits: "addressee unknown"; here: no such queue ID
DEFAULT_LIST_LIMIT = 1000


def _limit(text: str) -> int:
    """``--limit``: a count, 0 for no limit."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (all) or a positive count, not {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Register ``queue`` and its actions."""
    parser = sub.add_parser("queue", help="inspect and manage the mail queue")
    actions = parser.add_subparsers(dest="queue_action", metavar="ACTION", required=True)
    for name, help_text in (("list", "list queued messages"), ("stats", "counts and ages")):
        p = actions.add_parser(name, help=help_text)
        add_location_arguments(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "list":
            p.add_argument(
                "--limit",
                type=_limit,
                default=DEFAULT_LIST_LIMIT,
                metavar="N",
                help=f"at most N messages, the oldest first (default {DEFAULT_LIST_LIMIT}; 0: all)",
            )
        p.set_defaults(run=run)
    show = actions.add_parser("show", help="one message: envelope, recipients, replies")
    add_location_arguments(show)
    show.add_argument("queue_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=run)
    retry = actions.add_parser("retry", help="retry deferred recipients now")
    add_location_arguments(retry)
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("queue_id", nargs="?")
    target.add_argument("--all", action="store_true", help="every deferred message")
    retry.set_defaults(run=run)
    for name, help_text in (
        ("hold", "keep a message from being delivered"),
        ("release", "undo hold"),
        ("delete", "remove a message without delivering or bouncing it"),
    ):
        p = actions.add_parser(name, help=help_text)
        add_location_arguments(p)
        p.add_argument(
            "queue_ids",
            nargs="+",
            metavar="ID",
            help='queue IDs, or "-" to read them from standard input (as postsuper does)',
        )
        p.set_defaults(run=run)


def queue_directory(args: argparse.Namespace) -> Path:
    """Where the queue lives (see ``cli/common.py`` for how the data directory is found).

    Raises:
        ConfigError: the configuration file is invalid.
    """
    return resolve_config(args).server.data_dir / "queue"


def run(args: argparse.Namespace) -> int:
    """Dispatch one queue action."""
    try:
        directory = queue_directory(args)
    except ConfigError as exc:
        print(f"postguard: {exc}", file=sys.stderr)
        return EX_CONFIG
    if not (directory / "queue.db").exists():
        # No queue yet (the server never ran here): an empty queue, not an error.
        action = args.queue_action
        if action == "list":
            print("[]" if args.json else "queue is empty")
        elif action == "stats":
            _print_stats(QueueStats(0, {}, 0, None, 0), args.json)
        elif action == "retry" and args.all:
            print("0 recipient(s) scheduled for immediate retry")
        elif action in ("hold", "release", "delete"):
            for queue_id in _queue_ids(args.queue_ids):
                _unknown(queue_id)
            return EX_NOUSER
        else:
            return _unknown(args.queue_id)
        return EX_OK
    try:
        return asyncio.run(_run(args, SqliteQueueStore(directory)))
    except (OSError, sqlite3.Error) as exc:  # unusable, or a failed write (disk, I/O)
        print(f"postguard: {describe_error(exc)}", file=sys.stderr)
        return EX_IOERR


async def _run(args: argparse.Namespace, store: SqliteQueueStore) -> int:
    try:
        action = args.queue_action
        if action == "list":
            limit = args.limit or sys.maxsize
            messages = await store.list_messages(limit)
            left_out = (await store.stats()).messages - len(messages) if args.limit else 0
            _print_list(messages, args.json, left_out=max(0, left_out))
        elif action == "stats":
            _print_stats(await store.stats(), args.json)
        elif action == "show":
            message = await store.get_message(args.queue_id)
            if message is None:
                return _unknown(args.queue_id)
            _print_show(message, args.json)
        elif action == "retry":
            count = await store.retry(None if args.all else args.queue_id, now=time.time())
            if not args.all and await store.get_message(args.queue_id) is None:
                return _unknown(args.queue_id)
            print(f"{count} recipient(s) scheduled for immediate retry")
        else:
            operations: dict[str, Callable[[str], Awaitable[int]]] = {
                "hold": store.hold,
                "release": store.release,
                "delete": store.delete,
            }
            status = EX_OK
            for queue_id in _queue_ids(args.queue_ids):
                if await operations[action](queue_id) == 0:
                    status = _unknown(queue_id)
                else:
                    print(f"{queue_id}: {action} done")
            return status
        return EX_OK
    finally:
        await store.close()


def _queue_ids(given: list[str]) -> list[str]:
    """The IDs given, with "-" replaced by those on standard input (whitespace-separated),
    each once, in order."""
    ids: list[str] = []
    for item in given:
        ids += sys.stdin.read().split() if item == "-" else [item]
    return list(dict.fromkeys(ids))


def _unknown(queue_id: str) -> int:
    print(f"postguard: no message {queue_id} in the queue", file=sys.stderr)
    return EX_NOUSER


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def message_dict(m: MessageRow) -> dict[str, Any]:
    """A message as JSON-ready data (the --json format)."""
    return {
        "queue_id": m.queue_id,
        "received_at": _iso(m.received_at),
        "reverse_path": m.reverse_path,
        "size": m.size,
        "held": m.held and not m.quarantined,
        "quarantined": m.quarantined,
        "envelope": m.envelope,
        "recipients": [
            {
                "address": r.address,
                "mailbox": r.mailbox,
                "route": r.route,
                "state": _shown_state(m, r),
                "attempts": r.attempts,
                "next_attempt": _iso(r.next_attempt),
                "last_reply": r.last_reply,
                "redelivery": r.redelivery,
            }
            for r in m.recipients
        ],
    }


def _shown_state(m: MessageRow, r: Any) -> str:
    if r.state.is_final:
        return str(r.state.value)
    if m.quarantined:
        return "quarantined"
    return "held" if m.held else str(r.state.value)


def _print_list(messages: Any, as_json: bool, *, left_out: int = 0) -> None:
    more = f"{left_out} more (postguard queue list --limit 0 lists all)"
    if as_json:
        print(json.dumps([message_dict(m) for m in messages], indent=2))
        if left_out:
            print(f"postguard: listed {len(messages)} messages, {more}", file=sys.stderr)
        return
    if not messages:
        print("queue is empty")
        return
    print(f"{'QUEUE ID':<17} {'RECEIVED':<20} {'SIZE':>8} {'STATE':<10} SENDER → RECIPIENTS")
    for m in messages:
        states = {r.state.value for r in m.recipients if not r.state.is_final}
        state = (
            "quarantined"
            if m.quarantined
            else "held"
            if m.held
            else ",".join(sorted(states)) or "done"
        )
        rcpts = ", ".join(r.address for r in m.recipients if not r.state.is_final)
        print(
            f"{m.queue_id:<17} {_iso(m.received_at):<20} {m.size:>8} {state:<10} "
            f"<{m.reverse_path}> → {rcpts}"
        )
    if left_out:
        print(f"... and {more}")


def _print_show(m: MessageRow, as_json: bool) -> None:
    if as_json:
        print(json.dumps(message_dict(m), indent=2))
        return
    data = message_dict(m)
    print(f"Queue ID:    {m.queue_id}{'  (HELD)' if m.held else ''}")
    print(f"Received:    {data['received_at']}")
    print(f"Sender:      <{m.reverse_path}>")
    print(f"Size:        {m.size} octets")
    provenance = m.envelope.get("provenance", {})
    if provenance:
        tls = provenance.get("tls")
        tls_text = f"{tls['version']} {tls['cipher']}" if tls else "none (plaintext)"
        print(
            f"From client: {provenance.get('client_ip')} ({provenance.get('ehlo')}) "
            f"via {provenance.get('listener')}"
        )
        print(f"TLS:         {tls_text}")
        print(f"Auth:        {provenance.get('auth') or 'none'}")
    print("Recipients:")
    for r in data["recipients"]:
        print(
            f"  {r['address']:<30} {r['state']:<10} attempts={r['attempts']} "
            f"next={r['next_attempt']} via {r['route']}"
        )
        if r["last_reply"]:
            print(f"    last reply: {r['last_reply']}")
        if r["redelivery"]:
            print("    redelivery: leased by a process that died; a copy may exist already")


def _print_stats(stats: QueueStats, as_json: bool) -> None:
    oldest = None if stats.oldest_received_at is None else time.time() - stats.oldest_received_at
    data = {
        "messages": stats.messages,
        "held_messages": stats.held_messages,
        "recipients_by_state": stats.recipients_by_state,
        "oldest_age_seconds": None if oldest is None else round(oldest, 1),
        "bytes": stats.bytes,
    }
    if as_json:
        print(json.dumps(data, indent=2))
        return
    print(f"messages:  {stats.messages} ({stats.held_messages} held)")
    for state, count in sorted(stats.recipients_by_state.items()):
        print(f"  {state:<11} {count}")
    print(f"oldest:    {'-' if oldest is None else f'{oldest:.0f} s'}")
    print(f"disk use:  {stats.bytes} octets of content")
