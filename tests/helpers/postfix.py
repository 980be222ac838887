"""A private, throw-away Postfix instance that relays through a postguard server.

Postfix plays the part it plays in real deployments: a site's MTA whose ``relayhost`` is a
submission service, authenticating with SASL (Cyrus, ``smtp_sasl_auth_enable``) over
STARTTLS. The instance is entirely its own: a config directory, queue directory, data
directory and log file under one temporary directory; ``postfix -c <config dir>`` drives it.
The system's Postfix (``/etc/postfix``, ``/var/spool/postfix``) is neither read nor started.

Layout (``root`` must be traversable by the ``postfix`` user: pytest's ``tmp_path`` is
not, so callers pass a directory like the ``traversable_dir`` fixture)::

    root/etc/main.cf, master.cf   the configuration (below)
    root/etc/sasl_passwd          texthash: "[host]:port user:password" (no postmap needed)
    root/etc/ca.pem               postguard's development CA, copied where postfix can read
    root/spool/                   queue_directory: root-owned, subdirectories postfix-owned
    root/data/                    data_directory (TLS session cache...), postfix-owned
    root/maillog                  maillog_file (Postfix >= 3.4): every daemon logs here

``master.cf`` is written here rather than copied from ``/etc/postfix``: Debian's marks most
services ``chroot = y``, and a chroot in a private queue directory would need copies of
``/etc/resolv.conf``, ``/etc/hosts`` and the CA inside it. Ours lists only the services a
relay needs, none chrooted, and one ``smtpd`` on ``127.0.0.1:<port>``. That port is found
by binding port 0 and closing the socket before Postfix binds it (Postfix cannot report a
port it chose itself); the window is a few milliseconds on loopback.

Requirements: the ``postfix`` and ``libsasl2-modules`` Debian packages (Cyrus SASL
plugins for the client side; preseed ``postfix/main_mailer_type`` to "No configuration"
so the install neither prompts nor configures the system instance), and root: ``master``
must start as root (it binds and drops to ``mail_owner``). :func:`require_postfix`
applies the interop rule: a loud skip locally, a failure under CI.

Must not: touch the system instance, or leave a ``master`` process behind (``stop`` waits
for it to exit, and kills it if it does not).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTFIX = "/usr/sbin/postfix"
COMMAND_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.05
MYHOSTNAME = "postfix.client.test"
APT_INSTALL = (
    "echo 'postfix postfix/main_mailer_type select No configuration' | "
    "debconf-set-selections && apt-get install -y --no-install-recommends "
    "postfix libsasl2-modules"
)

# Everything a relay-only instance runs; chroot column "n" throughout (see module doc).
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet   n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def require_postfix() -> str:
    """The postfix command, or skip (fail under CI) when it or root is missing."""
    problem = None
    if shutil.which("postfix", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", "")) is None:
        problem = f"'postfix' is not installed (Debian, as root: {APT_INSTALL})"
    elif os.geteuid() != 0:
        problem = "a private Postfix instance must be started as root (master binds, drops)"
    else:
        try:
            pwd.getpwnam("postfix")
        except KeyError:
            problem = "the 'postfix' user is missing (the Debian package creates it)"
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {problem}; .ci/run must install it", pytrace=False)
        pytest.skip(f"INTEROP TOOL MISSING - {problem}; the Postfix relay test did NOT run")
    return POSTFIX


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (see the module docstring)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostfixInstance:
    """One private Postfix: configure with :meth:`create`, then :meth:`start`/:meth:`stop`."""

    root: Path
    smtpd_port: int
    started: bool = False
    _master_pid: int | None = None

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.root / "spool"

    @property
    def maillog(self) -> Path:
        return self.root / "maillog"

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        relayhost: str,
        ca_file: Path,
        sasl_user: str,
        sasl_password: str,
        tls_level: str = "encrypt",
        extra: Mapping[str, str] | None = None,
    ) -> PostfixInstance:
        """Write the configuration and make the queue and data directories.

        Args:
            root: An empty directory the ``postfix`` user can traverse.
            relayhost: ``relayhost``, e.g. ``[127.0.0.1]:2587`` (the SASL password entry
                uses the same key, as ``smtp_sasl_password_maps`` looks it up).
            ca_file: The CA that signed the relay's certificate (copied into ``etc``).
            sasl_user: The SASL user name Postfix logs in with.
            sasl_password: Its password.
            tls_level: ``smtp_tls_security_level``: ``encrypt`` (TLS, no name check) or
                ``secure`` (the certificate must match the next hop).
            extra: More ``main.cf`` parameters (override the defaults written here).

        Returns:
            The instance, not started.
        """
        instance = cls(root=root, smtpd_port=free_loopback_port())
        etc, spool, data = instance.config_dir, instance.queue_dir, root / "data"
        for directory in (etc, spool, data):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(data, postfix_user.pw_uid, postfix_user.pw_gid)

        shutil.copyfile(ca_file, etc / "ca.pem")
        (etc / "ca.pem").chmod(0o644)
        secrets = etc / "sasl_passwd"
        secrets.write_text(f"{relayhost} {sasl_user}:{sasl_password}\n", encoding="utf-8")
        os.chown(secrets, 0, postfix_user.pw_gid)
        secrets.chmod(0o640)

        params = {
            "compatibility_level": "3.6",
            "queue_directory": str(spool),
            "data_directory": str(data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": MYHOSTNAME,
            "mydomain": "client.test",
            "myorigin": "$myhostname",
            "mydestination": "",  # nothing is local: every recipient goes to the relayhost
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "relayhost": relayhost,
            "smtp_host_lookup": "native",  # /etc/hosts: there is no DNS here
            "smtp_sasl_auth_enable": "yes",
            "smtp_sasl_password_maps": f"texthash:{secrets}",
            "smtp_sasl_security_options": "noanonymous",
            "smtp_sasl_tls_security_options": "noanonymous",
            "smtp_tls_security_level": tls_level,
            "smtp_tls_CAfile": str(etc / "ca.pem"),
            "smtp_tls_loglevel": "1",
            "maillog_file": str(instance.maillog),
            "maillog_file_prefixes": str(root),
            "biff": "no",
            # A failed relay attempt must show at once, not after minutes of backoff.
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "queue_run_delay": "1s",
        }
        params.update(extra or {})
        (etc / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in params.items()), encoding="utf-8"
        )
        listen = f"127.0.0.1:{instance.smtpd_port}"
        (etc / "master.cf").write_text(_MASTER_CF.format(listen=listen), encoding="utf-8")
        # Postfix's own installer creates the queue subdirectories with their owners.
        instance._postfix("post-install", "create-missing")
        return instance

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"postfix {' '.join(args)} failed ({done.returncode}): "
                f"{done.stdout}{done.stderr}\n--- maillog ---\n{self.log()[-3000:]}"
            )
        return done

    def check(self) -> None:
        """``postfix check``: configuration and file permissions (raises on failure)."""
        self._postfix("check")

    def start(self) -> None:
        """``postfix start``; returns once master has initialised (``master -w``)."""
        self.check()
        self._postfix("start")
        self.started = True
        self._master_pid = self.master_pid()

    def master_pid(self) -> int | None:
        """The PID in ``spool/pid/master.pid``, if that process is alive."""
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def stop(self) -> None:
        """``postfix stop``, then wait until this instance's master has exited.

        If it is still there after :data:`STOP_TIMEOUT_SECONDS`, it gets SIGKILL (by
        PID: only our master, never another Postfix).
        """
        if not self.started:
            return
        self.started = False
        pid = self._master_pid or self.master_pid()
        with contextlib.suppress(RuntimeError):  # master may be gone; the PID check decides
            self._postfix("stop")
        if pid is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_SECONDS)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        assert not _alive(pid) or _wait_reaped(pid), f"postfix master {pid} survived SIGKILL"

    def log(self) -> str:
        """The instance's maillog so far."""
        try:
            return self.maillog.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, pattern: str) -> list[str]:
        """Maillog lines matching the regular expression ``pattern``."""
        regex = re.compile(pattern)
        return [line for line in self.log().splitlines() if regex.search(line)]


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rpartition(")")[2].split()[0] != "Z"


def _wait_reaped(pid: int) -> bool:
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_SECONDS)
    return not _alive(pid)
