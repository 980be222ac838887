"""MailServer: builds the running server from a Config and owns its lifecycle.

Order of start-up: load certificates (generating development ones when none
are configured) → bind every listener socket → (as root) drop privileges →
recover the spool → start delivery → start accepting. Shutdown (SIGTERM):
stop accepting, let open transactions finish within ``shutdown_grace``, send
421 to the rest, then stop delivery. SIGHUP reloads certificates; they are
also reloaded when their files change. Live sessions are never dropped by a
reload.

Must not: parse SMTP or decide policy; it wires the parts together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..accounts.file_store import FileCredentialStore
from ..accounts.oauth import build_validator
from ..config.schema import Config, ListenerSettings, TlsMode
from ..config.weakenings import find_weakenings
from ..delivery.base import DeliveryAgent
from ..delivery.lmtp import LmtpAgent
from ..delivery.maildir import MaildirAgent
from ..intake.intake import Intake
from ..observability.events import AuthEvent, ServerEvent, TlsEvent
from ..observability.logging import log_event
from ..policy.auth_throttle import AuthThrottle, ThrottleSettings
from ..policy.decision import Accept
from ..policy.relay import LocalRecipients
from ..policy.submission import ListenerRules
from ..protocol.grammar import GrammarError, parse_mailbox
from ..protocol.options import ServerOptions
from ..queue.bodies import BodyFiles
from ..queue.fsync import make_directories, write_file_durably
from ..queue.manager import ManagerSettings, QueueManager
from ..queue.schedule import RetrySchedule
from ..queue.store.sqlite import SqliteQueueStore
from ..tls.certstore import CertificatePair, CertificateStore, server_name_of
from ..tls.contexts import client_context
from ..tls.devcerts import DevCertificates, ensure_dev_certificates
from .authenticator import AuthSettings
from .balance import AcceptBalance
from .connection import Timeouts
from .limits import ConnectionLimiter
from .listeners import Listener, bind_socket
from .session import SessionContext

IO_THREADS = 16  # fsync-bound work; several in flight let the disk batch them
MOCK_SEED_OCTETS = 32


def listener_rules(settings: ListenerSettings) -> ListenerRules:
    """The security rules of a configured listener."""
    if settings.name == "mx":
        return ListenerRules(
            name="mx",
            mail_requires_tls=settings.tls is TlsMode.REQUIRED,
            auth_offered=settings.auth,
        )
    plaintext_ok = settings.allow_plaintext
    return ListenerRules(
        name=settings.name,
        implicit_tls=settings.tls is TlsMode.IMPLICIT,
        starttls_required=not plaintext_ok,
        auth_required=True,
        auth_offered=True,
        auth_requires_tls=not plaintext_ok,
    )


def load_mock_seed(path: Path) -> bytes:
    """The persistent secret behind SCRAM's unknown-user answers (created on first start).

    It must survive restarts: otherwise an attacker could tell unknown users by
    their salt changing between two connections across a restart.
    """
    try:
        seed = path.read_bytes()
        if len(seed) >= MOCK_SEED_OCTETS:
            return seed
    except FileNotFoundError:
        pass
    seed = secrets.token_bytes(MOCK_SEED_OCTETS)
    write_file_durably(path, seed)
    return seed


class MailServer:
    """One postguard server process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.server.data_dir
        self.executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="pg-io")
        self.dev_certificates: DevCertificates | None = None
        self.certificates = self._load_certificates()
        self.listeners: list[Listener] = []
        self.store: SqliteQueueStore | None = None
        self.bodies: BodyFiles | None = None
        self.queue: QueueManager | None = None
        self._stopping = asyncio.Event()
        self._workers: list[int] = []
        # Connection counts shared with the worker processes forked later.
        self.balance = AcceptBalance(config.server.workers)
        # Why this process is stopping on its own, if it is (the CLI maps it to an exit
        # status): the queue's log could not be synced, so nothing may be written.
        self.failure: OSError | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._accounts_task: asyncio.Task[None] | None = None
        self.auth: AuthSettings | None = None

    def _load_certificates(self) -> CertificateStore:
        tls = self.config.tls
        if tls.certificates:
            pairs = [CertificatePair(c.cert, c.key) for c in tls.certificates]
        else:
            hostnames = sorted({"localhost", self.config.server.hostname})
            self.dev_certificates = ensure_dev_certificates(
                self.data_dir / "tls", hostnames=hostnames
            )
            pairs = [CertificatePair(self.dev_certificates.cert, self.dev_certificates.key)]
        return CertificateStore(pairs, min_version=tls.min_version)  # type: ignore[arg-type]

    def bind(self) -> None:
        """Bind every enabled listener's sockets (before dropping privileges).

        Raises:
            OSError: an address could not be bound; the message names it.
        """
        make_directories(self.data_dir)
        config = self.config
        queue_dir = self.data_dir / "queue"
        self.store = SqliteQueueStore(queue_dir, group_commit=config.queue.group_commit)
        bodies = BodyFiles(queue_dir / "bodies", self.executor)
        self.bodies = bodies
        local = config.local
        recipients = LocalRecipients(local.domains, local.mailboxes, local.aliases)
        self.auth = self._auth_settings()
        q = config.queue
        self.queue = QueueManager(
            self.store,
            self._delivery_agents(),
            hostname=config.server.hostname,
            settings=ManagerSettings(
                schedule=RetrySchedule(
                    first_retry=q.first_retry,
                    max_backoff=q.max_backoff,
                    max_lifetime=q.max_lifetime,
                    delay_warning_after=q.delay_warning,
                ),
                concurrency=q.concurrency,
                per_destination=q.per_destination_concurrency,
                lease_seconds=q.lease,
                scan_interval=q.scan_interval,
            ),
            executor=self.executor,
            route_for_sender=lambda sender: _local_route(recipients, config, sender),
        )
        intake = Intake(
            self.store,
            bodies,
            config.server.hostname,
            route_for=config.delivery.route_for,
            handoff=self.queue,
            min_free_disk=q.min_free_disk,
            received_shows_identity=config.auth.received_shows_identity,
        )
        limits = self.config.limits
        limiter = ConnectionLimiter(
            limits.max_connections, limits.max_connections_per_ip, self.balance.publish
        )
        timeouts = Timeouts(
            idle=limits.idle_timeout, command=limits.command_timeout, data=limits.data_timeout
        )
        for settings in self.config.listeners:
            if not settings.enabled:
                continue
            rules = listener_rules(settings)
            options = ServerOptions(
                max_message_size=limits.max_message_size,
                max_recipients=limits.max_recipients,
                starttls=not rules.implicit_tls,
                require_tls=rules.starttls_required,
                implicit_tls=rules.implicit_tls,
                auth=rules.auth_offered,
            )
            ctx = SessionContext(
                hostname=self.config.server.hostname,
                rules=rules,
                options=options,
                recipients=recipients,
                intake=intake,
                tls_available=True,
                auth=self.auth,
            )
            sockets: list[socket.socket] = []
            try:
                for host, port in settings.addresses:
                    sockets += bind_socket(host, port)
            except OSError as exc:
                for s in sockets:
                    s.close()
                self.close_sockets()
                where = f"listener.{settings.name}: cannot bind {host}:{port}"
                raise OSError(exc.errno, f"{where}: {exc.strerror}") from None
            self.listeners.append(
                Listener(
                    ctx,
                    sockets=sockets,
                    limiter=limiter,
                    timeouts=timeouts,
                    tls_context=self.certificates.ssl_context,
                    server_name_of=server_name_of,
                    balance=self.balance,
                )
            )

    def close_sockets(self) -> None:
        """Close bound sockets of listeners that never started."""
        for listener in self.listeners:
            for sock in listener.sockets:
                sock.close()

    def log_weakenings(self) -> None:
        """Log every security-weakening setting in force, as a WARNING."""
        for weakening in find_weakenings(self.config):
            log_event(ServerEvent.WEAKENING, logging.WARNING, setting=str(weakening))

    def _auth_settings(self) -> AuthSettings:
        auth = self.config.auth
        self.accounts = FileCredentialStore(auth.accounts_file)
        for warning in self.accounts.warnings():
            log_event(AuthEvent.ACCOUNTS_WARNING, logging.WARNING, warning=warning)
        validator = None
        if auth.oauth is not None:
            o = auth.oauth
            validator = build_validator(
                jwks_file=o.jwks_file,
                jwks_url=o.jwks_url,
                issuer=o.issuer,
                audience=o.audience,
                algorithms=o.algorithms,
                identity_claim=o.identity_claim,
                introspection_url=o.introspection_url,
                introspection_client_id=o.introspection_client_id,
                introspection_client_secret_file=o.introspection_client_secret_file,
                cache_ttl=o.cache_ttl,
                allow_insecure_jwks_url=o.allow_insecure_jwks_url,
            )
        throttle = AuthThrottle(
            ThrottleSettings(
                max_failures_per_ip=auth.max_failures_per_ip,
                max_failures_per_account=auth.max_failures_per_account,
                window=auth.failure_window,
                lockout=auth.lockout,
                base_delay=auth.base_delay,
                max_delay=auth.max_delay,
            )
        )
        return AuthSettings(
            hostname=self.config.server.hostname,
            enabled=auth.mechanisms,
            store=self.accounts,
            throttle=throttle,
            mock_seed=load_mock_seed(self.data_dir / "auth-mock-seed"),
            validator=validator,
        )

    def _delivery_agents(self) -> dict[str, DeliveryAgent]:
        local = self.config.local
        agents: dict[str, DeliveryAgent] = {
            "maildir": MaildirAgent(
                local.maildir_root, quota=local.mailbox_quota, flush_by_caller=True
            )
        }
        lmtp = self.config.delivery.lmtp
        if lmtp is not None:
            host, port = lmtp.address if lmtp.address is not None else (None, 24)
            agents["lmtp"] = LmtpAgent(
                host=host,
                port=port,
                path=str(lmtp.socket) if lmtp.socket is not None else None,
                tls=lmtp.tls,
                ssl_context=client_context(lmtp.ca_file) if lmtp.tls != "none" else None,
                server_hostname=lmtp.server_name or host,
                lhlo_domain=lmtp.lhlo_domain,
            )
        return agents

    async def start(
        self, *, primary: bool = True, lease_owner: str | None = None, slot: int = 0
    ) -> None:
        """Start delivery (recovering leases from a crash) and start accepting connections.

        Args:
            primary: this is the first (or only) process; worker processes forked
                beside it skip the start-up recovery and orphan clean-up.
            lease_owner: the name this process leases queue work under (given by the
                parent to its workers, so it can recover a dead worker's leases).
            slot: this process's place in the accept balance (0: the first process).
        """
        assert self.queue is not None, "bind() first"
        assert self.store is not None
        recovered = (await self.store.stats()).messages
        # Body files of messages that never got their 250 (a crash between the file's
        # rename and the store commit) are orphans.
        if self.bodies is not None and primary:
            self.bodies.remove_orphans(await self.store.body_paths())
        self.store.on_failure(self.fail)
        self.queue.start(recover=primary, owner=lease_owner)
        for listener in self.listeners:
            await listener.start()
            for address in listener.addresses:
                log_event(
                    ServerEvent.LISTENING,
                    listener=listener.name,
                    address=address.url(listener.ctx.rules.implicit_tls),
                )
        self.balance.join(slot)  # serving: siblings may now leave connections to us
        loop = asyncio.get_running_loop()
        interval = self.config.tls.watch_interval
        # A replacement worker starts from the state of boot: catch up with files
        # changed since (certificates rotated, accounts added).
        self.certificates.catch_up()
        self.accounts.maybe_reload()
        self._watch_task = loop.create_task(self.certificates.watch(interval))
        self._accounts_task = loop.create_task(self.accounts.watch(interval))
        log_event(ServerEvent.STARTED, recovered=recovered)

    def reload_certificates(self) -> bool:
        """Reload certificate files now (SIGHUP); the old ones stay on failure."""
        ok = self.certificates.reload()
        log_event(
            TlsEvent.CERTIFICATES_RELOADED if ok else TlsEvent.CERTIFICATE_RELOAD_FAILED,
            logging.INFO if ok else logging.ERROR,
        )
        return ok

    def install_signal_handlers(self, forward_to: list[int] | None = None) -> None:
        """SIGTERM/SIGINT: graceful shutdown; SIGHUP: reload certificates.

        ``forward_to``: worker PIDs that get the same signal (the parent's job). The list
        is used as it changes: the parent removes a worker once it has reaped it, so a
        recycled PID never gets our signals.
        """
        loop = asyncio.get_running_loop()
        if forward_to is not None:
            self._workers = forward_to

        def reload() -> None:
            self._signal_workers(signal.SIGHUP)
            self.reload_certificates()

        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, reload)

    def _signal_workers(self, signum: int) -> None:
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    @property
    def stopping(self) -> bool:
        """Whether a graceful stop has been requested."""
        return self._stopping.is_set()

    def request_stop(self) -> None:
        """Begin graceful shutdown (idempotent); worker processes are told to stop too."""
        if not self._stopping.is_set():
            log_event(ServerEvent.SHUTDOWN_REQUESTED)
            self._signal_workers(signal.SIGTERM)
            self._stopping.set()

    def fail(self, error: OSError) -> None:
        """Stop because storage failed for good (the queue's log could not be synced):
        open sessions get 451/421, nothing more is written, and the process exits with
        an error status so that a supervisor restarts it (the restart recovers the queue
        from what is on disk)."""
        if self.failure is None:
            self.failure = error
        self.request_stop()

    async def wait_stopped(self) -> None:
        """Block until :meth:`request_stop`, then shut down gracefully."""
        await self._stopping.wait()
        await self.shutdown()

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, finish or 421 open sessions, stop delivery."""
        grace = self.config.server.shutdown_grace if grace is None else grace
        for listener in self.listeners:
            listener.stop_accepting()
        for listener in self.listeners:
            listener.request_shutdown()
        await asyncio.gather(*(lst.wait_closed(grace) for lst in self.listeners))
        for task in (self._watch_task, self._accounts_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.auth is not None and self.auth.validator is not None:
            await self.auth.validator.aclose()
        if self.queue is not None:
            await self.queue.stop()
        if self.store is not None:
            await self.store.close()
        self.executor.shutdown(wait=True)
        log_event(ServerEvent.STOPPED)

    def maildir_of(self, mailbox: str) -> Path:
        """Where ``mailbox``'s Maildir lives (for the start-up hint and tests)."""
        local, _, domain = mailbox.lower().rpartition("@")
        return self.config.local.maildir_root / domain / local


def _local_route(
    recipients: LocalRecipients, config: Config, address: str
) -> tuple[str, str] | None:
    """Where a DSN to ``address`` goes: (mailbox, route) if local, else None (relay)."""
    try:
        parsed = parse_mailbox(address, utf8=True)
    except GrammarError:
        return None
    decision = recipients.check_recipient(parsed)
    if isinstance(decision, Accept) and decision.mailbox is not None:
        return decision.mailbox, config.delivery.route_for(decision.mailbox)
    return None
