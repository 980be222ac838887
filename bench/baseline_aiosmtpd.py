"""The aiosmtpd baseline for ``bench/run.py``: an SMTP server that stores durably before 250.

It answers 250 to DATA only after the message is in a Maildir the same way postguard
promises: written to ``tmp/``, fsync'd, renamed into ``new/``, and ``new/`` fsync'd (one
directory fsync per message; no group commit). Two ways, ``--io``:

* ``pool`` (default): the file work runs in a thread pool of the same size as postguard's
  I/O pool, so slow fsyncs do not stall the event loop and the fsyncs of concurrent
  sessions overlap (the journal then commits them together);
* ``inline``: the file work runs in ``handle_DATA`` itself, the way a handler is first
  written (aiosmtpd's own ``Mailbox`` handler writes inline too): the event loop waits for
  each message's fsyncs, one message at a time.

STARTTLS is offered with the certificate given (the bench passes postguard's development
certificate), and it runs on uvloop when installed, as ``postguard serve`` does, so the
comparison is about the SMTP servers and not the event loop.

What it does not do, unlike postguard: no queue (it writes the Maildir directly, once;
postguard writes a spool file and then delivers it into the Maildir, two durable writes),
no Received header, no recipient checks (every RCPT is accepted), no per-IP limits.

Prints ``listening on <port>`` and then ``ready`` on stdout; stops on SIGTERM or SIGINT.

    python bench/baseline_aiosmtpd.py --maildir /tmp/m --cert cert.pem --key key.pem [--io inline]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import os
import signal
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

IO_THREADS = 16  # the same as postguard's server/app.py IO_THREADS


class DurableMaildirHandler:
    """handle_DATA stores the message in a Maildir (tmp → fsync → rename → fsync new/)."""

    def __init__(self, maildir: Path, executor: ThreadPoolExecutor | None) -> None:
        self.maildir = maildir
        self.executor = executor
        self.counter = itertools.count()
        self.host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if self.executor is None:
            self.store(content)  # inline: the event loop waits for the disk
        else:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, self.store, content)
        return "250 2.0.0 OK"

    def store(self, content: bytes) -> None:
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self.counter)}.{self.host}"
        tmp = self.maildir / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.maildir / "new" / name)
        dfd = os.open(self.maildir / "new", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


async def serve(args: argparse.Namespace) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)
    executor = (
        ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="baseline-io")
        if args.io == "pool"
        else None
    )
    handler = DurableMaildirHandler(Path(args.maildir), executor)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="localhost",
            tls_context=tls,
            require_starttls=False,
            command_call_limit=None,  # the default (20 MAILs per session) ends long sessions
        ),
        host=args.host,
        port=args.port,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()
    if executor is not None:
        executor.shutdown(wait=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--maildir", required=True, help="the Maildir to store messages in")
    parser.add_argument("--cert", required=True, help="PEM certificate chain for STARTTLS")
    parser.add_argument("--key", required=True, help="PEM private key for STARTTLS")
    parser.add_argument(
        "--io",
        choices=("pool", "inline"),
        default="pool",
        help="pool: file work in a thread pool (default); inline: in handle_DATA itself",
    )
    parser.add_argument(
        "--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="event loop"
    )
    args = parser.parse_args()
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    use_uvloop = args.loop == "uvloop" or (args.loop == "auto" and has_uvloop)
    if use_uvloop:
        import uvloop

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
