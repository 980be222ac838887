"""Worker processes for ``[server] workers = N``: started, watched, and replaced.

Model (Postfix's master; the pre-fork "zygote" of Android and Chromium): right after
binding and dropping privileges, while it is still one thread with no event loop, the
first process forks a *spawner*. The spawner never serves. It keeps that pristine state
and forks every worker from it, at start and whenever one must be replaced: forking the
first process later (threads, a running loop, open SQLite connections) would not be safe,
and starting a fresh interpreter would need the configuration and keys that only root
could read. The spawner reports each worker's start and exit (with its wait status) over
a socket pair.

The first process (the *parent*) names each worker's lease owner, forwards SIGTERM and
SIGHUP to the workers, and when one dies on its own:

* logs ``server.worker_died`` (ERROR, with how it died);
* gives the mail that worker had leased back to the queue, as redeliveries;
* asks for a replacement (``server.worker_started``): at once if the dead worker had run
  for :data:`STEADY_SECONDS`, otherwise after a delay that doubles from
  :data:`FIRST_RESPAWN_DELAY` up to :data:`MAX_RESPAWN_DELAY`, so that a worker dying at
  start does not become a fork loop;
* but a worker that exits with EX_IOERR (the queue's storage failed, see
  ``queue/store/base.py``) stops the whole server instead.

Lifetimes: the spawner gets SIGKILL when the parent dies, and each worker when the
spawner dies (``PR_SET_PDEATHSIG``), so ``kill -9`` of the parent ends them all. The
spawner ignores SIGTERM, SIGINT and SIGHUP (a service manager may signal every process
of the group; the workers must not lose their parent mid-shutdown): it leaves when the
parent closes the socket pair, after the workers are gone. If the spawner itself dies,
its workers die with it; the parent logs it, recovers their mail, and serves alone.

Must not: serve connections or touch the queue in the spawner.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import secrets
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from ..observability.events import ServerEvent
from ..observability.logging import log_event
from ..queue.manager import lease_owner
from ..server.app import MailServer
from .main import EX_IOERR, EX_SOFTWARE

STEADY_SECONDS = 10.0  # a worker that ran this long is replaced at once
FIRST_RESPAWN_DELAY = 1.0
MAX_RESPAWN_DELAY = 60.0
START_TIMEOUT_SECONDS = 30.0  # for the spawner to fork the first workers
STOP_MARGIN_SECONDS = 10.0  # beyond shutdown_grace, before stragglers get SIGKILL
_LINE_MAX = 4096


def respawn_delay(uptime: float, previous: float) -> float:
    """Seconds to wait before replacing a worker that died after ``uptime`` seconds,
    when the delay before the last replacement was ``previous`` (0: none)."""
    if uptime >= STEADY_SECONDS:
        return 0.0
    return min(MAX_RESPAWN_DELAY, max(FIRST_RESPAWN_DELAY, previous * 2))


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


def exit_description(status: int) -> str:
    """ "killed by SIGKILL", "exited with status 1", ... from a wait status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


# ------------------------------------------------------------------ the spawner


def start_spawner(
    run_worker: Callable[[str, int], int], hostname: str
) -> tuple[int, socket.socket]:
    """Fork the spawner (the caller must still be single-threaded, with no loop).

    ``run_worker(owner, slot)`` runs in each forked worker and returns its exit status;
    the owner is :func:`worker_owner` of the worker's PID and the token the parent chose,
    the slot its place in the accept balance (``server/balance.py``).
    Returns the spawner's PID and the parent's end of the socket pair.
    """
    parent_end, spawner_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        parent_end.close()
        try:
            _spawner_main(spawner_end, run_worker, hostname)
        finally:
            os._exit(EX_SOFTWARE)
    spawner_end.close()
    return pid, parent_end


def worker_owner(hostname: str, pid: int, token: str) -> str:
    """The lease owner of the worker ``pid`` (the parent names it after the report)."""
    return lease_owner(hostname, pid, token)


def _spawner_main(
    channel: socket.socket, run_worker: Callable[[str, int], int], hostname: str
) -> NoReturn:
    die_with_parent()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    signal.set_wakeup_fd(wake_write)
    children: set[int] = set()
    pending = b""
    while True:
        try:
            readable, _, _ = select.select([channel.fileno(), wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, 512):
                    pass
        _report_exits(channel, children)
        if channel.fileno() not in readable:
            continue
        data = channel.recv(_LINE_MAX)
        if not data:  # the parent is gone: so must the workers be
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os._exit(0)
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            command, token, slot = [*line.decode().split(" "), "", ""][:3]
            if command != "spawn" or not token.isalnum() or not slot.isdigit():
                continue
            try:
                pid = os.fork()
            except OSError as exc:  # EAGAIN (process limit), ENOMEM: the parent retries
                _send(channel, f"failed 0 {slot} {exc.strerror or exc}")
                continue
            if pid == 0:  # the new worker: its own signal set-up, then serve
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                os.close(wake_read)
                os.close(wake_write)
                channel.close()
                status = EX_SOFTWARE
                try:
                    die_with_parent()
                    status = run_worker(worker_owner(hostname, os.getpid(), token), int(slot))
                except BaseException:
                    logging.getLogger("postguard").exception("worker failed")
                finally:
                    os._exit(status)
            children.add(pid)
            _send(channel, f"started {pid} {token} {slot}")


def _report_exits(channel: socket.socket, children: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(channel, f"exited {pid} {status}")


def _send(channel: socket.socket, line: str) -> None:
    with contextlib.suppress(OSError):  # the parent is gone: EOF tells us next
        channel.sendall(line.encode() + b"\n")


# ------------------------------------------------------------------- the parent


@dataclass
class _Worker:
    owner: str
    slot: int
    started: float


@dataclass
class Workers:
    """The parent's view of its workers (see the module docstring)."""

    server: MailServer
    spawner: int
    channel: socket.socket
    wanted: int
    live: list[int] = field(default_factory=list)  # shared with the signal forwarding
    _workers: dict[int, _Worker] = field(default_factory=dict)
    _pending: bytes = b""
    _delay: float = 0.0
    _events: asyncio.Queue[tuple[str, int, str] | None] | None = None
    _spawner_gone: bool = False
    _answered: int = 0  # spawn requests answered (started or failed)
    _all_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> asyncio.Task[None]:
        """Start the configured workers, once this process's start-up recovery is over
        (it releases every lease in the store: a worker's new mail must not be among
        them), and follow the spawner's reports from then on.

        Returns when every worker has a PID (or the spawner is gone); the task follows.
        """
        if self.server.queue is not None:
            await self.server.queue.wait_recovered()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, int, str] | None] = asyncio.Queue()
        self._events = events
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._readable)
        for slot in range(1, self.wanted + 1):  # slot 0 is this process
            _send(self.channel, f"spawn {secrets.token_hex(4)} {slot}")
        task = loop.create_task(self._follow(events))
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await self._all_started.wait()
                # Ready means every process accepts: each joins the balance once its
                # listeners are started.
                while not self._spawner_gone and any(
                    self.server.balance.count(w.slot) is None for w in self._workers.values()
                ):
                    await asyncio.sleep(0.01)
        except TimeoutError:  # serve with the workers there are; they may still come
            self._log_death(0, f"not started within {START_TIMEOUT_SECONDS:.0f} s")
        return task

    def _log_death(self, pid: int, how: str) -> None:
        """``server.worker_died`` (pid 0: a worker that never started)."""
        log_event(
            ServerEvent.WORKER_DIED,
            logging.ERROR,
            pid=pid,
            how=how,
            workers_left=len(self.live) + 1,
        )

    def _started(self, pid: int, value: str) -> None:
        token, _, slot = value.partition(" ")
        owner = worker_owner(self.server.config.server.hostname, pid, token)
        self._workers[pid] = _Worker(owner, int(slot or 0), time.monotonic())
        self.live.append(pid)
        self._answer()

    def _answer(self) -> None:
        self._answered += 1
        if self._answered >= self.wanted:
            self._all_started.set()

    def _readable(self) -> None:
        assert self._events is not None
        try:
            data = self.channel.recv(_LINE_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
            self._events.put_nowait(None)
            return
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            if (event := _parse(line)) is not None:
                self._events.put_nowait(event)

    async def _follow(self, events: asyncio.Queue[tuple[str, int, str] | None]) -> None:
        while True:
            event = await events.get()
            if event is None:
                self._all_started.set()
                await self._spawner_died()
                return
            kind, pid, value = event
            if kind == "started":
                self._started(pid, value)
                log_event(ServerEvent.WORKER_STARTED, pid=pid, workers=len(self.live) + 1)
                if self.server.stopping:  # started after the stop was forwarded
                    _terminate(pid)
            elif kind == "exited":
                await self._exited(pid, int(value))
            elif kind == "failed":
                self._spawn_failed(value)

    async def _exited(self, pid: int, status: int) -> None:
        worker = self._workers.pop(pid, None)
        if worker is None:
            return
        with contextlib.suppress(ValueError):
            self.live.remove(pid)
        self.server.balance.leave(worker.slot)
        if self.server.stopping:  # told to stop: not a death
            return
        self._log_death(pid, exit_description(status))
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EX_IOERR:
            # The queue's log is shared: what this process writes cannot be trusted
            # either. Stop everything; the restart recovers from the disk.
            self.server.fail(OSError(errno.EIO, f"worker {pid}: queue storage failed"))
            return
        if self.server.queue is not None:
            await self.server.queue.recover_leases_of(worker.owner)
        self._delay = respawn_delay(time.monotonic() - worker.started, self._delay)
        asyncio.get_running_loop().call_later(self._delay, self._respawn, worker.slot)

    def _spawn_failed(self, value: str) -> None:
        """The spawner could not fork (``"<slot> <reason>"``): try again later."""
        slot, _, reason = value.partition(" ")
        self._answer()
        if self.server.stopping:
            return
        self._log_death(0, f"could not be started: {reason}")
        self._delay = respawn_delay(0.0, self._delay)
        asyncio.get_running_loop().call_later(self._delay, self._respawn, int(slot or 0))

    def _respawn(self, slot: int) -> None:
        if self.server.stopping or self._spawner_gone:
            return
        _send(self.channel, f"spawn {secrets.token_hex(4)} {slot}")

    async def _spawner_died(self) -> None:
        """The spawner is gone, and its workers with it (PR_SET_PDEATHSIG)."""
        self._spawner_gone = True
        if self.server.stopping:
            return
        log_event(ServerEvent.SPAWNER_DIED, logging.ERROR, pid=self.spawner)
        for pid, worker in list(self._workers.items()):
            self._workers.pop(pid)
            self.server.balance.leave(worker.slot)
            with contextlib.suppress(ValueError):
                self.live.remove(pid)
            if self.server.queue is not None:
                await self.server.queue.recover_leases_of(worker.owner)

    async def stop(self, grace: float) -> None:
        """After the parent's own shutdown: wait for the workers (told to stop by
        ``request_stop``), kill stragglers, then let the spawner go and reap it."""
        for pid in list(self.live):  # also those that started after the stop was forwarded
            _terminate(pid)
        deadline = time.monotonic() + grace + STOP_MARGIN_SECONDS
        while self.live and not self._spawner_gone and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for pid in list(self.live):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        self.channel.close()  # EOF: the spawner kills what is left and exits
        await asyncio.to_thread(_reap, self.spawner)


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _parse(line: bytes) -> tuple[str, int, str] | None:
    """("started", pid, "<token> <slot>"), ("exited", pid, "<wait status>") or
    ("failed", 0, "<slot> <reason>")."""
    kind, _, rest = line.decode(errors="replace").partition(" ")
    pid_text, _, value = rest.partition(" ")
    if kind not in ("started", "exited", "failed") or not pid_text.isdigit():
        return None
    return kind, int(pid_text), value
