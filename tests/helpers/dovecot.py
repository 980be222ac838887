"""A private Dovecot (LMTP + IMAPS) on loopback, for delivery integration tests.

:func:`start_dovecot` writes a minimal ``dovecot.conf`` into a fresh directory
(``base_dir``, ``state_dir``, the log, the mail store, a passwd-file and a
trustme certificate all live inside it), starts ``dovecot -F -c <conf>`` as a
child process, waits until both listeners accept (bounded by
:data:`START_TIMEOUT_SECONDS`), and returns a :class:`DovecotServer`. Its
:meth:`~DovecotServer.stop` ends that one process by its PID. The system's
Dovecot service (if the package started one) is never used or touched.

Listeners: LMTP on 127.0.0.1 (TCP, STARTTLS offered with the test certificate)
and on a Unix socket ``<base_dir>/lmtp``; IMAP only as IMAPS on 127.0.0.1 (the
plaintext IMAP listener is off). Ports are picked by binding port 0 and
closing the socket: another process could take the port in between, a small
race accepted for tests.

Users live in a passwd-file (passdb and userdb), so an unknown recipient gets
``550 5.1.1`` at RCPT. ``auth_username_format = %Ln`` makes
``alice@example.test`` (LMTP) and ``alice`` (IMAP login) the same user.

Mail is stored under the uid/gid of :func:`mail_owner`: the current user, or
``nobody`` when we run as root (Dovecot refuses to deliver mail as uid 0: its
``first_valid_uid`` is 500 by default, and a root mail process would be a
privilege hazard anyway). As root the test directory is made traversable and
the mail store is owned by ``nobody``. Dovecot's own helper processes run as
its packaged users (``dovecot``, ``dovenull``) as root, and as the current user
otherwise.

Header additions: LMTP prepends ``Return-Path: <sender>`` to every stored
message (RFC 5321 §4.4 says the final delivery adds it); the ``Received:``
header and the ``Delivered-To:`` header (added for single-recipient deliveries)
are switched off here (``lmtp_add_received_header = no``,
``lmtp_hdr_delivery_address = none``) so a test can compare the stored bytes
exactly: ``Return-Path`` line + delivered content.

Must not: install packages, use fixed ports, sleep to wait, or signal any
process but the one it started.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from postguard.tls.contexts import client_context

DEBIAN_PACKAGES = ("dovecot-core", "dovecot-lmtpd", "dovecot-imapd")
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.05  # the wait between connect attempts is a wait on the child's exit
USERS = {"alice": "alice-secret", "bob": "bob-secret"}
MAIL_DOMAIN = "example.test"


def require_dovecot() -> str:
    """The path of the ``dovecot`` binary, or skip (locally) / fail (under ``CI``)."""
    path = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)),
        None,
    )
    lmtp_ok = path is not None and any(
        Path(d, "lmtp").exists() for d in ("/usr/lib/dovecot", "/usr/libexec/dovecot")
    )
    if path is None or not lmtp_ok:
        what = (
            f"Dovecot with LMTP is not installed "
            f"(Debian: apt-get install {' '.join(DEBIAN_PACKAGES[1:])})"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI: {what}; .ci/run must install it", pytrace=False)
        pytest.skip(f"DOVECOT MISSING - {what}; the Dovecot LMTP tests did NOT run")
    assert path is not None
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def mail_owner() -> tuple[int, int]:
    """(uid, gid) that stores mail: ourselves, or ``nobody`` when we are root."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


@dataclass
class DovecotServer:
    """A running private Dovecot.

    Attributes:
        root: the directory holding its configuration, state, log and mail.
        lmtp_port: LMTP over TCP on 127.0.0.1.
        lmtp_socket: LMTP over the Unix socket.
        imaps_port: IMAPS on 127.0.0.1.
        ca: the trustme CA that issued the server certificate.
        process: the ``dovecot -F`` master process.
    """

    root: Path
    lmtp_port: int
    lmtp_socket: Path
    imaps_port: int
    ca: trustme.CA
    process: subprocess.Popen[bytes]
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def log(self) -> str:
        """Dovecot's log so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    @property
    def ca_path(self) -> Path:
        """The test CA's certificate (PEM)."""
        return self.root / "tls" / "ca.pem"

    def client_ssl_context(self) -> ssl.SSLContext:
        """postguard's strict client context, trusting only the test CA."""
        return client_context(self.ca_path)

    def fetch_inbox(self, user: str) -> list[bytes]:
        """Every message in ``user``'s INBOX, as IMAP ``RFC822`` bytes, over IMAPS."""
        with imaplib.IMAP4_SSL(
            "127.0.0.1", self.imaps_port, ssl_context=self.client_ssl_context(), timeout=30
        ) as imap:
            imap.login(user, self.users[user])
            status, data = imap.select("INBOX", readonly=True)
            assert status == "OK", data
            count = int(data[0] or b"0")
            messages: list[bytes] = []
            for number in range(1, count + 1):
                status, parts = imap.fetch(str(number), "(RFC822)")
                assert status == "OK", parts
                first = parts[0]
                assert isinstance(first, tuple), parts
                messages.append(first[1])
            imap.logout()
        return messages

    def stop(self) -> None:
        """Stop the master process (it stops its children) by its PID; wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _config(root: Path, lmtp_port: int, imaps_port: int) -> str:
    uid, gid = mail_owner()
    if os.getuid() == 0:
        internal_user, login_user = "dovecot", "dovenull"
        internal_group = grp.getgrgid(pwd.getpwnam("dovecot").pw_gid).gr_name
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        internal_user = login_user = me
        internal_group = grp.getgrgid(os.getgid()).gr_name
    # Without root, the login process cannot chroot; and Dovecot must not try to
    # change to the packaged users.
    chroot = "" if os.getuid() == 0 else "  chroot =\n"
    return f"""\
# Written by tests/helpers/dovecot.py; a private instance for one test module.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = postguard-test-{os.getpid()}-{lmtp_port}
protocols = lmtp imap
listen = 127.0.0.1
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {min(uid, 500)}

ssl = required
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
ssl_min_protocol = TLSv1.2

auth_mechanisms = plain
auth_username_format = %Ln
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
  default_fields = uid={uid} gid={gid} home={root}/mail/%n
}}
mail_location = maildir:{root}/mail/%n/Maildir

lmtp_add_received_header = no
lmtp_hdr_delivery_address = none

service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service imap-login {{
{chroot}  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"""


def _wait_until_listening(process: subprocess.Popen[bytes], ports: list[int], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    pending = list(ports)
    while pending:
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=1):
                pending.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"dovecot did not listen on {pending} in time:\n{_read(log)}")
        # Waiting on the child's exit doubles as the pause between attempts, so a
        # Dovecot that dies on a bad configuration is reported at once.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=POLL_SECONDS)
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"dovecot exited with {process.returncode}:\n{out}\n{_read(log)}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running_dovecot(
    *, lmtp_port: int | None = None, ca: trustme.CA | None = None
) -> Iterator[DovecotServer]:
    """Start a private Dovecot; stop it and remove its directory afterwards.

    Args:
        lmtp_port: the LMTP TCP port to listen on (default: a free one). A test
            that points postguard at a port first and starts Dovecot there
            later (an LMTP server that comes back) passes it.
        ca: the trustme CA to issue the server certificate from (default: a new
            one), so a client can be configured to trust it before Dovecot runs.
    """
    binary = require_dovecot()
    root = Path(tempfile.mkdtemp(prefix="pg-dovecot-", dir="/tmp"))
    # Dovecot's unprivileged processes (and the mail owner) must traverse it.
    root.chmod(0o755)
    server: DovecotServer | None = None
    try:
        ca = ca or trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        (root / "tls").mkdir(mode=0o700)
        cert.private_key_pem.write_to_path(str(root / "tls" / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(root / "tls" / "cert.pem"))
        ca.cert_pem.write_to_path(str(root / "tls" / "ca.pem"))
        users = root / "users"
        users.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in USERS.items()))
        users.chmod(0o644)
        mail = root / "mail"
        mail.mkdir()
        uid, gid = mail_owner()
        if os.getuid() == 0:
            os.chown(mail, uid, gid)
        lmtp_port, imaps_port = lmtp_port or free_port(), free_port()
        conf = root / "dovecot.conf"
        conf.write_text(_config(root, lmtp_port, imaps_port))
        process = subprocess.Popen(
            [binary, "-F", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        server = DovecotServer(
            root=root,
            lmtp_port=lmtp_port,
            lmtp_socket=root / "run" / "lmtp",
            imaps_port=imaps_port,
            ca=ca,
            process=process,
        )
        _wait_until_listening(process, [lmtp_port, imaps_port], root / "dovecot.log")
        yield server
    finally:
        if server is not None:
            server.stop()
            if server.process.stdout is not None:
                server.process.stdout.close()
        shutil.rmtree(root, ignore_errors=True)
