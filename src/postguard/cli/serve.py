"""``postguard serve``: run the server, on embedded defaults or a configuration file.

With no ``--config``, postguard uses its embedded defaults in the data
directory (``--data-dir``, else ``$POSTGUARD_DATA_DIR``, else
``./postguard-data``): development certificates, a local domain with one
test mailbox, and unprivileged loopback ports. It writes a commented
``postguard.toml`` there to start a real configuration from, and prints one
line per listener and a ready-to-run ``swaks`` command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import importlib
import logging
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, default_config, load_config, render_sample
from ..config.schema import Config
from ..observability import logging as pg_logging
from ..observability.events import ServerEvent
from ..observability.logging import log_event
from ..queue.manager import lease_owner
from ..server.app import MailServer
from ..server.privileges import PrivilegeError, drop_privileges
from ..tls.certstore import CertificateError
from .common import DEFAULT_DATA_DIR, add_location_arguments, data_dir_argument
from .main import EX_CONFIG, EX_IOERR, EX_OK, EX_UNAVAILABLE

# Modules imported lazily at run time. They are imported before privileges are
# dropped: the service user may not be able to read the Python installation
# (e.g. one under /root), and a failed import later would be a crash mid-session.
_PRELOAD = ("uvloop", "encodings.idna", "encodings.punycode", "json", "email.utils")


def add_parser(sub: Any) -> None:
    """Register ``serve``."""
    parser = sub.add_parser("serve", help="run the mail server")
    add_location_arguments(parser)
    parser.set_defaults(run=run)


def load(args: argparse.Namespace) -> Config:
    """The configuration to run: the file given, or the embedded defaults."""
    data_dir = data_dir_argument(args)
    if args.config is not None:
        return load_config(args.config, data_dir_override=data_dir)
    data_dir = data_dir or DEFAULT_DATA_DIR.absolute()
    config = default_config(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    sample = data_dir / "postguard.toml"
    if not sample.exists():
        sample.write_text(render_sample(config), encoding="utf-8")
    return config


def run(args: argparse.Namespace) -> int:
    """Start the server and run until SIGTERM/SIGINT."""
    try:
        config = load(args)
    except ConfigError as exc:
        print(f"postguard: {exc}", file=sys.stderr)
        return EX_CONFIG
    pg_logging.configure(config.log.format, config.log.level)
    try:
        server = MailServer(config)
    except CertificateError as exc:
        print(f"postguard: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        server.bind()
    except OSError as exc:
        print(f"postguard: {exc.strerror or exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    server.log_weakenings()
    _print_banner(server, args.config is None)
    _preload_modules()
    try:
        user = drop_privileges(
            config.server.user,
            config.server.group,
            config.server.data_dir,
            maildir_root=config.local.maildir_root,
        )
    except PrivilegeError as exc:
        print(f"postguard: {exc}", file=sys.stderr)
        server.close_sockets()
        return EX_CONFIG
    if user is not None:
        log_event(ServerEvent.PRIVILEGES_DROPPED, user=user)
    fork = _fork_workers(server, config.server.workers)
    if fork.owner is not None:  # a worker process: serve until the parent tells us to stop
        _run_loop(server, primary=False, owner=fork.owner)
        os._exit(_exit_status(server))
    _run_loop(server, children=fork.children)
    return _exit_status(server)


def _exit_status(server: MailServer) -> int:
    """EX_IOERR when storage failed for good (``queue.store_failed`` says why): a
    supervisor restarts the server, and the queue is recovered from the disk."""
    return EX_IOERR if server.failure is not None else EX_OK


@dataclass(frozen=True)
class _Fork:
    """What :func:`_fork_workers` leaves in each process."""

    children: dict[int, str]  # in the parent: worker PID → the lease owner it uses
    owner: str | None  # in a worker: its lease owner; None in the parent


def _fork_workers(server: MailServer, workers: int) -> _Fork:
    """Fork ``workers - 1`` processes sharing the bound sockets (after privileges dropped).

    The parent names each worker's lease owner before the fork, so that when a worker
    dies it can give that worker's queue leases to the others (:func:`_reap_dead`).
    No thread or event loop exists yet at this point, which is what makes fork() safe.
    """
    hostname = server.config.server.hostname
    children: dict[int, str] = {}
    for _ in range(workers - 1):
        token = secrets.token_hex(4)
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            return _Fork({}, lease_owner(hostname, os.getpid(), token))
        children[pid] = lease_owner(hostname, pid, token)
    return _Fork(children, None)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGKILL when the parent dies, however it dies (kill -9 too).

    Without this, workers of a killed server would keep serving its sockets.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(EX_OK)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _preload_modules() -> None:
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):  # uvloop is optional
            importlib.import_module(name)


def _run_loop(
    server: MailServer,
    *,
    primary: bool = True,
    children: dict[int, str] | None = None,
    owner: str | None = None,
) -> None:
    async def main() -> None:
        live = list(children or {})
        server.install_signal_handlers(forward_to=live)
        await server.start(primary=primary, lease_owner=owner)
        watcher = _watch_workers(server, children, live) if children else None
        if primary:
            print("postguard: ready", flush=True)
        await server.wait_stopped()
        if watcher is not None:
            watcher.cancel()
        for pid in list(live):
            await asyncio.to_thread(_reap, pid)

    uvloop = sys.modules.get("uvloop")
    if uvloop is None:
        asyncio.run(main())
    else:
        uvloop.run(main())


WORKER_POLL_SECONDS = 1.0  # without pidfd_open(2): how often to look for dead workers


def _watch_workers(
    server: MailServer, children: dict[int, str], live: list[int]
) -> asyncio.Task[None]:
    """Notice a worker's death at once (a pidfd per worker; polling where unavailable)."""
    loop = asyncio.get_running_loop()
    exited = asyncio.Event()
    fds: list[int] = []
    for pid in list(live):
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            break  # old kernel or no such call: poll below
        fds.append(fd)
        loop.add_reader(fd, exited.set)

    async def watch() -> None:
        try:
            while live:
                if len(fds) == len(children):
                    await exited.wait()
                    exited.clear()
                else:
                    await asyncio.sleep(WORKER_POLL_SECONDS)
                stopping = server.stopping  # workers exit when told to: not a death
                for pid, status in _reap_dead(live, log=not stopping):
                    if _storage_failed(status):
                        # The queue's log is shared: what this process writes cannot
                        # be trusted either. Stop everything; the restart recovers.
                        server.fail(OSError(errno.EIO, f"worker {pid}: queue storage failed"))
                    elif not stopping and server.queue is not None:
                        await server.queue.recover_leases_of(children[pid])
        finally:
            for fd in fds:
                loop.remove_reader(fd)
                os.close(fd)

    return loop.create_task(watch())


def _storage_failed(status: int) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == EX_IOERR


def _reap_dead(live: list[int], *, log: bool) -> list[tuple[int, int]]:
    """Reap workers that have exited; return their PIDs and wait statuses (the PIDs
    are removed from ``live``).

    With ``log`` (the server is not stopping) each is logged at ERROR; the caller then
    makes the mail it had leased due again for the others, as redeliveries, unless the
    worker stopped because the queue's storage failed (the whole server stops). The
    server goes on with one process fewer; a restart brings the configured number back.
    """
    dead: list[tuple[int, int]] = []
    for pid in list(live):
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped, status = pid, 0
        if reaped == 0:
            continue
        live.remove(pid)
        dead.append((pid, status))
        if not log:
            continue
        log_event(
            ServerEvent.WORKER_DIED,
            logging.ERROR,
            pid=pid,
            how=_exit_description(status),
            workers_left=len(live) + 1,
        )
    return dead


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _print_banner(server: MailServer, defaults: bool) -> None:
    config = server.config
    source = "embedded defaults" if defaults else str(config.source)
    lines = [f"postguard serving {config.server.hostname} ({source}); data in {server.data_dir}"]
    mx_address = None
    for listener in server.listeners:
        rules = listener.ctx.rules
        if rules.implicit_tls:
            mode = "implicit TLS (RFC 8314), AUTH required"
        elif rules.name == "mx":
            mode = "STARTTLS " + ("required" if rules.mail_requires_tls else "opportunistic")
        else:
            mode = "STARTTLS required, AUTH required"
            if not rules.starttls_required:
                mode = "STARTTLS optional (allow_plaintext), AUTH required"
        for address in listener.addresses:
            url = address.url(rules.implicit_tls)
            lines.append(f"  {listener.name:<12} {url:<28} {mode}")
            if listener.name == "mx" and mx_address is None:
                mx_address = address
    mailbox = config.local.mailboxes[0] if config.local.mailboxes else None
    if mx_address is not None and mailbox is not None:
        host = f"[{mx_address.host}]" if ":" in mx_address.host else mx_address.host
        ca = server.dev_certificates.ca_cert if server.dev_certificates else None
        tls_flags = f" --tls --tls-verify --tls-ca-path {ca}" if ca else " --tls"
        lines.append("Send a test message over STARTTLS:")
        lines.append(
            f"  swaks --server {host}:{mx_address.port} --from you@example.com "
            f"--to {mailbox}{tls_flags}"
        )
        lines.append(f"It will appear in {server.maildir_of(mailbox) / 'new'}/")
    if defaults:
        lines.append(
            f"A commented configuration is in {server.data_dir / 'postguard.toml'}; "
            "run it with: postguard serve --config FILE"
        )
    print("\n".join(lines), flush=True)
