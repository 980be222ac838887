"""The queue manager (Postfix's qmgr): leases due recipients and drives delivery agents.

Theory of operation
-------------------
A loop asks the store for due recipients (``claim_due``), leasing them to
this process, and starts one delivery per (message, route, destination)
group, with bounded concurrency: ``concurrency`` deliveries in flight in
total and ``per_destination`` per destination (a mailbox for Maildir, the
server for LMTP), so one slow destination cannot take every slot. Agents
run in worker threads and return per-recipient outcomes; the manager turns
them into new states:

* Delivered → ``delivered``; a SUCCESS DSN if the recipient asked (NOTIFY).
* PermanentFailure → ``bounced``, with a failure DSN to the sender.
* TemporaryFailure → ``deferred`` until the next attempt of the
  :class:`~postguard.queue.schedule.RetrySchedule`; once the message has
  outlived ``max_lifetime`` → ``bounced`` (4.4.7, "delivery time expired"),
  and a delay warning DSN once it has waited ``delay_warning_after``.
* An exception from an agent counts as a temporary failure (maddy's rule).

Outcomes and the DSNs they cause are recorded in one store transaction, so
a crash never loses a bounce nor sends it twice. The manager wakes when
intake commits a message, when the next deferred recipient falls due, and
every ``scan_interval`` (to see operator changes made with the CLI).

Delivery is at-least-once: leases of a crashed process expire (or are
released at its restart) and those recipients are delivered again.

Must not: speak SMTP, or write mailboxes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from ..delivery.base import Delivered, DeliveryAgent, Outcome, PermanentFailure, TemporaryFailure
from ..observability.events import QueueEvent
from ..observability.logging import log_event
from ..protocol import replies
from .bounce import Action, RecipientReport, build_dsn, status_from_reply, wants_report
from .ids import new_queue_id
from .schedule import RetrySchedule
from .store.base import (
    Claim,
    NewMessage,
    NewRecipient,
    QueueStore,
    RecipientOutcome,
    RecipientRow,
    RecipientState,
)

_R_NO_ROUTE = replies.Reply.of(451, "4.4.0", "No route to destination configured yet")
_R_EXPIRED = "4.4.7"  # RFC 3463: delivery time expired


@dataclass(frozen=True, slots=True)
class _Job:
    """One message's recipients on one route, leased for delivery."""

    claim: Claim
    route: str
    rcpts: list[RecipientRow]


@dataclass(frozen=True, slots=True)
class ManagerSettings:
    """How hard the manager pushes, and when it retries."""

    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    concurrency: int = 20
    per_destination: int = 5
    lease_seconds: float = 600.0
    scan_interval: float = 1.0
    claim_batch: int = 100


class QueueManager:
    """Feeds due recipients to delivery agents; records outcomes and DSNs."""

    def __init__(
        self,
        store: QueueStore,
        agents: Mapping[str, DeliveryAgent],
        *,
        hostname: str,
        settings: ManagerSettings | None = None,
        executor: Executor | None = None,
        route_for_sender: Callable[[str], tuple[str, str] | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.agents = dict(agents)
        self.hostname = hostname
        self.settings = settings or ManagerSettings()
        self.owner = f"{hostname}:{secrets.token_hex(4)}"
        self._executor = executor
        self._route_for_sender = route_for_sender or (lambda address: None)
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._per_destination: dict[str, asyncio.Semaphore] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._recover = True
        self.delivered = 0

    # --------------------------------------------------------------- control

    def wake(self) -> None:
        """New work may be due (intake committed a message)."""
        self._wakeup.set()

    def start(self, *, recover: bool = True) -> None:
        """Start the scan loop.

        Args:
            recover: release every lease first (the process that held them is gone).
                Only the first process of a server does this; worker processes that
                start beside it must not take their siblings' leases.
        """
        # The owner names this process: forked workers must not share one.
        self.owner = f"{self.hostname}:{os.getpid()}:{secrets.token_hex(4)}"
        self._recover = recover
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop scanning; wait for deliveries in flight (their outcomes are recorded)."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """One scan: deliver what is due now and wait for those deliveries to finish.

        Returns the number of messages claimed. (The loop started by :meth:`start`
        does the same continuously; this is for tests and one-shot flushes.)
        """
        claimed = await self._scan()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        return claimed

    async def recover_leases(self) -> int:
        """Make every leased recipient due again (at start-up: leases of a dead process)."""
        released = await self.store.release_leases(owner=None, now=float("inf"))
        if released:
            log_event(QueueEvent.RECOVERED, recipients=released)
        return released

    # ------------------------------------------------------------------ loop

    async def _run(self) -> None:
        # Leases from before a crash or restart belong to no one now: deliver them again.
        # (With several nodes on one store this becomes "expired leases only".)
        if self._recover:
            await self.recover_leases()
        while True:
            try:
                started = await self._scan()
            except Exception:
                logging.getLogger("postguard").exception("queue scan failed")
                started = 0
            if started:
                continue
            await self._sleep_until_due()

    async def _scan(self) -> int:
        free = self.settings.concurrency - len(self._tasks)
        if free <= 0:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
            return 1
        claims = await self.store.claim_due(
            now=self._clock(),
            owner=self.owner,
            lease_seconds=self.settings.lease_seconds,
            limit=self.settings.claim_batch,
        )
        # One delivery task per destination: a Maildir agent then stores a whole
        # batch with one directory fsync, an LMTP agent could reuse its connection.
        batches: dict[str, list[_Job]] = {}
        for claim in claims:
            for route, rcpts in _by_route(claim.recipients).items():
                key = route if route != "maildir" else f"maildir:{rcpts[0].mailbox}"
                batches.setdefault(key, []).append(_Job(claim, route, rcpts))
        loop = asyncio.get_running_loop()
        for destination, jobs in batches.items():
            task = loop.create_task(self._deliver(destination, jobs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claims)

    async def _sleep_until_due(self) -> None:
        timeout = self.settings.scan_interval
        due = await self.store.next_due_time()
        if due is not None:
            timeout = max(0.0, min(timeout, due - self._clock()))
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    # -------------------------------------------------------------- delivery

    async def _deliver(self, destination: str, jobs: list[_Job]) -> None:
        limit = self._per_destination.setdefault(
            destination, asyncio.Semaphore(self.settings.per_destination)
        )
        async with self._slots, limit:
            results = await self._call_agent(jobs)
        try:
            await self._settle(jobs, results)
        except Exception:
            logging.getLogger("postguard").exception("recording delivery outcomes failed")
        self._wakeup.set()

    async def _call_agent(self, jobs: list[_Job]) -> list[dict[str, Outcome]]:
        route = jobs[0].route
        agent = self.agents.get(route)
        if agent is None:
            return [
                {
                    r.mailbox: TemporaryFailure(_R_NO_ROUTE, f"no delivery agent for {route!r}")
                    for r in job.rcpts
                }
                for job in jobs
            ]
        items = [
            (job.claim.content, [r.mailbox for r in job.rcpts], job.claim.message.reverse_path)
            for job in jobs
        ]

        def run() -> list[dict[str, Outcome]]:
            batch = getattr(agent, "deliver_batch", None)
            if batch is not None:
                return list(batch(items))
            return [agent.deliver(c, m, reverse_path=rp) for c, m, rp in items]

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, run)
        except Exception as exc:  # an unknown error in delivery is temporary (maddy)
            logging.getLogger("postguard").exception("delivery agent %s failed", agent.name)
            return [
                {
                    r.mailbox: TemporaryFailure(replies.R451_LOCAL_ERROR, f"agent error: {exc}")
                    for r in job.rcpts
                }
                for job in jobs
            ]

    async def _settle(self, jobs: list[_Job], outcomes: list[dict[str, Outcome]]) -> None:
        now = self._clock()
        results: list[RecipientOutcome] = []
        bounces: list[NewMessage] = []
        for job, job_outcomes in zip(jobs, outcomes, strict=True):
            message = job.claim.message
            reports: dict[Action, list[RecipientReport]] = {}
            for rcpt in job.rcpts:
                outcome = job_outcomes.get(rcpt.mailbox) or TemporaryFailure(
                    replies.R451_LOCAL_ERROR, "agent returned no outcome"
                )
                result, report = self._judge(message.received_at, rcpt, outcome, now)
                results.append(result)
                if report is not None and wants_report(rcpt.notify, report.action):
                    reports.setdefault(report.action, []).append(report)
                self._log(message.queue_id, rcpt, result, outcome)
            for group in reports.values():
                dsn = self._dsn(job.claim, group, now)
                if dsn is not None:
                    bounces.append(dsn)
        # Outcomes and the DSNs they cause commit together: never lost, never twice.
        await self.store.record(results, owner=self.owner, bounces=bounces)

    def _judge(
        self, received_at: float, rcpt: RecipientRow, outcome: Outcome, now: float
    ) -> tuple[RecipientOutcome, RecipientReport | None]:
        orcpt = rcpt.orcpt
        if isinstance(outcome, Delivered):
            reply = "250 2.0.0 delivered"
            report = RecipientReport(rcpt.address, Action.DELIVERED, "2.0.0", reply, now, orcpt)
            return (
                RecipientOutcome(rcpt.message_id, rcpt.index, RecipientState.DELIVERED, reply),
                report,
            )
        reply = f"{outcome.reply} ({outcome.detail})" if outcome.detail else str(outcome.reply)
        wire_reply = str(outcome.reply)
        schedule = replace(self.settings.schedule, attempts=rcpt.attempts + 1)
        if isinstance(outcome, PermanentFailure) or schedule.is_exhausted(received_at, now):
            status = status_from_reply(wire_reply)
            if isinstance(outcome, TemporaryFailure):
                status = _R_EXPIRED
                wire_reply = f"{wire_reply} (delivery time expired)"
            report = RecipientReport(rcpt.address, Action.FAILED, status, wire_reply, now, orcpt)
            return (
                RecipientOutcome(rcpt.message_id, rcpt.index, RecipientState.BOUNCED, reply),
                report,
            )
        next_attempt = schedule.next_attempt_at(now, jitter=secrets.randbelow(1000) / 1000)
        warn = not rcpt.delay_warned and schedule.is_delay_warning_due(received_at, now)
        warning: RecipientReport | None = None
        if warn:
            until = received_at + schedule.max_lifetime
            warning = RecipientReport(
                rcpt.address,
                Action.DELAYED,
                status_from_reply(wire_reply),
                wire_reply,
                now,
                orcpt,
                will_retry_until=until,
            )
        return (
            RecipientOutcome(
                rcpt.message_id,
                rcpt.index,
                RecipientState.DEFERRED,
                reply,
                next_attempt=next_attempt,
                delay_warned=warn,
            ),
            warning,
        )

    def _dsn(self, claim: Claim, reports: list[RecipientReport], now: float) -> NewMessage | None:
        message = claim.message
        sender = message.reverse_path
        if not sender:
            return None  # RFC 5321 §6.1: never notify the null sender (no bounce loops)
        route = self._route_for_sender(sender)
        mailbox, route_name = route if route is not None else (sender, "relay")
        envelope = message.envelope
        content = build_dsn(
            reporting_mta=self.hostname,
            original_sender=sender,
            original=claim.content,
            arrival_date=message.received_at,
            reports=reports,
            ret_full=envelope.get("ret") == "FULL",
            envid=envelope.get("envid"),
            now=now,
            boundary=f"{new_queue_id()}/{self.hostname}",
        )
        queue_id = new_queue_id()
        log_event(
            QueueEvent.BOUNCED,
            queue_id=message.queue_id,
            dsn=queue_id,
            action=reports[0].action.value,
            to=sender,
        )
        return NewMessage(
            queue_id=queue_id,
            received_at=now,
            reverse_path="",
            recipients=(NewRecipient(sender, mailbox, route_name, ("NEVER",)),),
            prepend=b"",
            size=len(content),
            envelope={"body_type": "8BITMIME", "dsn_for": message.queue_id},
            body=content,
        )

    def _log(
        self, qid: str, rcpt: RecipientRow, result: RecipientOutcome, outcome: Outcome
    ) -> None:
        if result.state is RecipientState.DELIVERED:
            self.delivered += 1
            log_event(QueueEvent.DELIVERED, queue_id=qid, rcpt=rcpt.address, route=rcpt.route)
        elif result.state is RecipientState.BOUNCED:
            log_event(
                QueueEvent.BOUNCED,
                logging.WARNING,
                queue_id=qid,
                rcpt=rcpt.address,
                reply=result.reply,
            )
        else:
            log_event(
                QueueEvent.DEFERRED,
                logging.WARNING,
                queue_id=qid,
                rcpt=rcpt.address,
                reply=result.reply,
                attempts=rcpt.attempts + 1,
            )


def _by_route(rcpts: tuple[RecipientRow, ...]) -> dict[str, list[RecipientRow]]:
    """Group a message's leased recipients: one delivery per route."""
    groups: dict[str, list[RecipientRow]] = {}
    for r in rcpts:
        groups.setdefault(r.route, []).append(r)
    return groups
