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
import importlib
import sys
from typing import Any

from ..config import ConfigError, default_config, load_config, render_sample
from ..config.schema import Config
from ..observability import logging as pg_logging
from ..observability.events import ServerEvent
from ..observability.logging import log_event
from ..queue.fsync import make_directories
from ..queue.store.base import StoreUnavailable
from ..server.app import MailServer
from ..server.privileges import PrivilegeError, drop_privileges
from ..tls.certstore import CertificateError
from .common import (
    DEFAULT_DATA_DIR,
    add_location_arguments,
    data_dir_argument,
    describe_error,
)
from .main import EX_CANTCREAT, EX_CONFIG, EX_IOERR, EX_OK, EX_UNAVAILABLE
from .workers import Workers, start_spawner

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
    make_directories(data_dir)
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
    except OSError as exc:  # the data directory cannot be created or written
        print(f"postguard: {describe_error(exc)}", file=sys.stderr)
        return EX_CANTCREAT
    pg_logging.configure(config.log.format, config.log.level)
    try:
        server = MailServer(config)
    except CertificateError as exc:
        print(f"postguard: {exc}", file=sys.stderr)
        return EX_CONFIG
    except OSError as exc:  # e.g. the development certificates cannot be written
        print(f"postguard: {describe_error(exc)}", file=sys.stderr)
        return EX_CANTCREAT
    try:
        server.bind()
    except StoreUnavailable as exc:
        print(f"postguard: {exc.strerror}", file=sys.stderr)
        return EX_IOERR
    except OSError as exc:  # a listener's address (named in the message), or a directory
        print(f"postguard: {describe_error(exc)}", file=sys.stderr)
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
    workers: Workers | None = None
    if config.server.workers > 1:
        spawner, channel = start_spawner(
            lambda owner, slot: _serve_as_worker(server, owner, slot), config.server.hostname
        )
        workers = Workers(server, spawner, channel, wanted=config.server.workers - 1)
    _run_loop(server, workers=workers)
    return _exit_status(server)


def _serve_as_worker(server: MailServer, owner: str, slot: int) -> int:
    """A worker process (forked by the spawner): serve until told to stop."""
    _run_loop(server, primary=False, owner=owner, slot=slot)
    return _exit_status(server)


def _exit_status(server: MailServer) -> int:
    """EX_IOERR when storage failed for good (``queue.store_failed`` says why): a
    supervisor restarts the server, and the queue is recovered from the disk."""
    return EX_IOERR if server.failure is not None else EX_OK


def _preload_modules() -> None:
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):  # uvloop is optional
            importlib.import_module(name)


def _run_loop(
    server: MailServer,
    *,
    primary: bool = True,
    owner: str | None = None,
    slot: int = 0,
    workers: Workers | None = None,
) -> None:
    async def main() -> None:
        server.install_signal_handlers(forward_to=workers.live if workers else None)
        await server.start(primary=primary, lease_owner=owner, slot=slot)
        watcher = await workers.start() if workers else None
        if primary:
            print("postguard: ready", flush=True)
        await server.wait_stopped()
        if workers is not None:
            await workers.stop(server.config.server.shutdown_grace)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    uvloop = sys.modules.get("uvloop")
    if uvloop is None:
        asyncio.run(main())
    else:
        uvloop.run(main())


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
