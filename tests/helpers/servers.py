"""Start real postguard servers for tests: in the test's event loop, or as `postguard serve`.

Both kinds write a real ``postguard.toml`` (so the loader is exercised),
listen on 127.0.0.1 port 0 for mx, submission and submissions, use generated
development certificates, and deliver to Maildirs under their data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postguard.config import load_config
from postguard.server.app import MailServer
from postguard.tls import client_context

BASE_TOML = """\
[server]
data_dir = "{data_dir}"
hostname = "localhost"
shutdown_grace = "{grace}"
{server_extra}
[listener.mx]
addresses = [{mx_addresses}]
{mx_tls}{mx_extra}
[listener.submission]
addresses = ["127.0.0.1:0"]
{submission_extra}
[listener.submissions]
addresses = ["127.0.0.1:0"]
{submissions_extra}"""
READY_TIMEOUT_SECONDS = 30.0
LISTENER_LINE = re.compile(r"^\s+(mx|submission|submissions)\s+(smtps?)://(\S+):(\d+)\s")


def write_config(
    data_dir: Path,
    extra_toml: str = "",
    *,
    mx_tls: str = "",
    grace: str = "5s",
    mx_addresses: Sequence[str] = ("127.0.0.1:0",),
    listener_toml: Mapping[str, str] | None = None,
    server_toml: str = "",
) -> Path:
    """Write a test configuration; ``extra_toml`` is appended verbatim.

    TOML forbids defining a table twice, so settings of the tables written here
    go through keywords: ``mx_addresses`` replaces mx's address list, and
    ``listener_toml`` maps a listener name to extra lines for its table
    (``{"submission": "allow_plaintext = true"}``); ``server_toml`` adds lines to
    ``[server]`` (``"workers = 2"``).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "postguard.toml"
    mx = f'tls = "{mx_tls}"\n' if mx_tls else ""
    extra = {name: text.strip() + "\n" for name, text in (listener_toml or {}).items()}
    path.write_text(
        BASE_TOML.format(
            data_dir=data_dir,
            mx_tls=mx,
            grace=grace,
            server_extra=server_toml.strip() + "\n" if server_toml else "",
            mx_addresses=", ".join(f'"{a}"' for a in mx_addresses),
            mx_extra=extra.get("mx", ""),
            submission_extra=extra.get("submission", ""),
            submissions_extra=extra.get("submissions", ""),
        )
        + "\n"
        + extra_toml,
        encoding="utf-8",
    )
    return path


def _is_body(path: Path) -> bool:
    """A queued or arriving message body (not the store's own database files)."""
    if path.parent.name == "bodies":
        return True
    return path.suffix in (".msg", ".tmp")  # the one-file-per-message spool layout


@dataclass
class ServerInfo:
    """What tests need to talk to a server and inspect its results."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    host: str = "127.0.0.1"
    # Every bound (host, port) per listener; ``ports`` holds the first one's port.
    addresses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    @property
    def ca(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def client_tls(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's development CA."""
        return client_context(self.ca)

    def maildir(self, mailbox: str = "test@localhost") -> Path:
        local, _, domain = mailbox.lower().rpartition("@")
        return self.data_dir / "mail" / domain / local

    def messages(self, mailbox: str = "test@localhost") -> list[bytes]:
        """Contents of every message in the mailbox's new/ folder, oldest name first."""
        new = self.maildir(mailbox) / "new"
        if not new.is_dir():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir())]

    def spooled(self) -> list[str]:
        """What the queue still holds: messages not yet finished, and body files.

        Committed messages are rows of ``queue/queue.db`` (read-only here, as the
        queue CLI reads it) and, when large, files in ``queue/bodies``; a ``.tmp``
        body file is a message still arriving. Empty means nothing is queued.
        """
        queue = self.data_dir / "queue"
        found: list[str] = []
        db = queue / "queue.db"
        if db.is_file():
            with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
                found += [f"message:{row[0]}" for row in conn.execute("SELECT id FROM messages")]
        for directory in (queue, queue / "bodies"):
            if directory.is_dir():
                found += [p.name for p in directory.iterdir() if p.is_file() and _is_body(p)]
        return sorted(found)

    async def wait_for_messages(
        self, count: int, mailbox: str = "test@localhost", timeout: float = 20.0
    ) -> list[bytes]:
        """Wait until the mailbox holds at least ``count`` messages (bounded poll)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(mailbox)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.02)


@dataclass
class InProcessServer(ServerInfo):
    """A MailServer running in the test's own event loop."""

    server: MailServer | None = None

    async def stop(self, grace: float = 2.0) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.shutdown(grace)

    async def delivered(self, count: int, mailbox: str = "test@localhost") -> list[bytes]:
        """Wait for the queue to deliver, then return the mailbox's messages."""
        return await self.wait_for_messages(count, mailbox)


async def start_in_process(data_dir: Path, extra_toml: str = "", **kwargs: Any) -> InProcessServer:
    """Start a server in this event loop on ports 0 (``kwargs`` go to ``write_config``)."""
    path = write_config(data_dir, extra_toml, **kwargs)
    config = load_config(path)
    server = MailServer(config)
    server.bind()
    await server.start()
    ports = {lst.name: lst.addresses[0].port for lst in server.listeners}
    addresses = {lst.name: [(a.host, a.port) for a in lst.addresses] for lst in server.listeners}
    return InProcessServer(
        data_dir=config.server.data_dir, ports=ports, addresses=addresses, server=server
    )


@dataclass
class SubprocessServer(ServerInfo):
    """``python -m postguard serve --config FILE`` in a child process."""

    proc: subprocess.Popen[str] | None = None
    stdout_lines: list[str] = field(default_factory=list)
    stderr_path: Path | None = None
    config_path: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path else ""

    def kill9(self) -> None:
        """SIGKILL, as a crash or power cut would end the process."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop. Returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def restart(self, env: Mapping[str, str] | None = None) -> SubprocessServer:
        """Start a new ``postguard serve`` on the same data directory and configuration file.

        Ports differ from this server's (port 0); its stderr is appended to the same file.
        """
        return start_subprocess(self.data_dir, config=self.config_path, env=env)


def start_subprocess(
    data_dir: Path,
    extra_toml: str = "",
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> SubprocessServer:
    """Run ``postguard serve`` and wait until it prints "postguard: ready".

    ``env`` adds variables to the child's environment (``LD_PRELOAD`` for fault injection).

    Raises:
        RuntimeError: the server exited or did not become ready in time.
    """
    path = config or write_config(data_dir, extra_toml, **kwargs)
    stderr_path = data_dir.parent / f"{data_dir.name}.stderr"
    # Appended, so a restart on the same data directory keeps the earlier server's log.
    err = open(stderr_path, "a")  # noqa: SIM115 - kept open for the child's lifetime
    child_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "postguard", "serve", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        env=child_env,
    )
    srv = SubprocessServer(data_dir=data_dir, proc=proc, stderr_path=stderr_path, config_path=path)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            srv.stdout_lines.append(line.rstrip("\n"))
            match = LISTENER_LINE.match(line)
            if match:
                srv.ports.setdefault(match.group(1), int(match.group(4)))
                host = match.group(3).removeprefix("[").removesuffix("]")
                srv.addresses.setdefault(match.group(1), []).append((host, int(match.group(4))))
            if line.startswith("postguard: ready"):
                said_ready.set()
                ready.set()
        ready.set()  # end of output: the process is gone (poll() may not know it yet)

    said_ready = threading.Event()
    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(READY_TIMEOUT_SECONDS) or not said_ready.is_set() or proc.poll() is not None:
        srv.stop()
        raise RuntimeError(f"postguard did not start: {stderr_path.read_text()[-2000:]}")
    return srv
