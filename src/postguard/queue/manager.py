"""The queue manager (Postfix's qmgr): leases due recipients and drives delivery agents.

Theory of operation
-------------------
Work reaches the manager two ways. New mail is handed over from memory:
intake asks :meth:`QueueManager.reserve` for a lease before it commits, the
store commits the recipients already leased to this manager, and
:meth:`QueueManager.committed` puts the message (content included) straight
into the ready area, as Postfix's qmgr moves new mail into its active queue.
No claim transaction, no read of the body back from storage. Everything else
(deferred recipients falling due, messages committed when the ready area was
full, operator retries, leases recovered after a crash) is leased from the
store with ``claim_due``.

Ready work waits per destination (a mailbox for Maildir, the server for
LMTP). A delivery starts for a destination with nothing in flight; while one
is in flight, new work for it waits and joins the next batch, so a loaded
destination gets few large deliveries (a Maildir batch is made durable with
one file-system flush) rather than many small ones. A second delivery to a
busy destination starts only once a full batch (``claim_batch``) is waiting,
up to ``per_destination`` at once and ``concurrency`` in total, so one slow
destination cannot take every slot. Agents run in worker threads and return
per-recipient outcomes (copies an agent left unflushed, ``NeedsFlush``, are
made durable in the store's next sync round before anything is recorded); the
manager turns them into new states:

* Delivered → ``delivered``; a SUCCESS DSN if the recipient asked (NOTIFY).
* PermanentFailure → ``bounced``, with a failure DSN to the sender.
* TemporaryFailure → ``deferred`` until the next attempt of the
  :class:`~postguard.queue.schedule.RetrySchedule`; once the message has
  outlived ``max_lifetime`` → ``bounced`` (4.4.7, "delivery time expired"),
  and a delay warning DSN once it has waited ``delay_warning_after``.
* An exception from an agent counts as a temporary failure (maddy's rule).

Outcomes and the DSNs they cause are recorded in one store transaction, so
a crash never loses a bounce nor sends it twice. The manager wakes when
intake commits a message, when a delivery finishes, when the next deferred
recipient falls due, and every ``scan_interval`` (to see operator changes
made with the CLI).

Delivery is at-least-once: leases of a crashed process are released at its
restart and those recipients are delivered again, marked as redeliveries so
that an agent that can recognise a copy it already stored (Maildir) does not
store it twice. The ready area is bounded (``handoff_limit`` messages, each
at most ``handoff_max_octets``); when it is full, or for a larger message, new
mail is committed unleased and claimed from the store later.

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

from ..delivery.base import (
    Delivered,
    DeliveryAgent,
    DeliveryItem,
    NeedsFlush,
    Outcome,
    PermanentFailure,
    TemporaryFailure,
)
from ..observability.events import QueueEvent
from ..observability.logging import log_event
from ..protocol import replies
from .bounce import Action, RecipientReport, build_dsn, status_from_reply, wants_report
from .ids import new_queue_id
from .schedule import RetrySchedule
from .store.base import (
    CLAIM_MAX_OCTETS,
    Claim,
    Lease,
    MessageRow,
    NewMessage,
    NewRecipient,
    QueueStore,
    RecipientOutcome,
    RecipientRow,
    RecipientState,
    StoreFailed,
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
    handoff_limit: int = 1000  # messages leased and waiting in memory, at most
    handoff_max_octets: int = 64 * 1024  # larger messages are claimed from the store
    claim_max_octets: int = CLAIM_MAX_OCTETS  # content claimed into memory, at most


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
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._recover = True
        self._running = False
        self._recovered = asyncio.Event()
        self._stopped = False
        # Leased work waiting for a delivery, by destination; and counts that bound it.
        self._ready: dict[str, list[_Job]] = {}
        self._ready_messages = 0  # jobs (a message's recipients on one route) in _ready
        self._ready_octets = 0  # their content (a message on two routes counts twice)
        self._reserved = 0  # leases given to intake whose commit has not finished
        self._in_flight: dict[str, int] = {}  # deliveries running, by destination
        self._store_due = True  # the store may hold due work not yet claimed
        self._next_due: float | None = None  # earliest deferred recipient (cached)
        self.delivered = 0

    # --------------------------------------------------------------- control

    def wake(self) -> None:
        """The store may hold new due work (a commit without lease, an operator action)."""
        self._store_due = True
        self._wakeup.set()

    async def wait_recovered(self) -> None:
        """Until start-up recovery is over (at once for a process that does none). The
        parent starts its workers only then: recovery releases every lease in the
        store, and must not take back a worker's new mail."""
        await self._recovered.wait()

    @property
    def accepting(self) -> bool:
        """Whether :meth:`reserve` may hand out leases (after start-up recovery, until stop)."""
        return self._running

    def reserve(self, size: int) -> Lease | None:
        """A lease for a message of ``size`` octets about to be committed, if the ready
        area has room for it (at most ``handoff_limit`` messages of at most
        ``handoff_max_octets`` each: 64 MiB by default).

        Intake commits the message with this lease and then calls :meth:`committed`
        (or :meth:`abandoned` if the commit failed). None: commit it unleased.
        """
        if (
            not self._running
            or size > self.settings.handoff_max_octets
            or self._ready_messages + self._reserved >= self.settings.handoff_limit
        ):
            return None
        self._reserved += 1
        return Lease(self.owner, self._clock() + self.settings.lease_seconds)

    def committed(self, message: NewMessage, lease: Lease | None) -> None:
        """Intake made ``message`` durable; leased to us, it is delivered from memory."""
        if lease is None or message.body is None:
            self.wake()
            if lease is not None:
                self._reserved -= 1
            return
        self._reserved -= 1
        if self._stopped:  # the commit finished after stop(): give the lease back
            task = asyncio.get_running_loop().create_task(self._give_back())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._add_ready(_claim_of(message))
        self._wakeup.set()

    async def _give_back(self) -> None:
        try:
            await self.store.release_leases(owner=self.owner, now=self._clock())
        except StoreFailed:
            pass  # logged where it happened; the restart recovers every lease
        except Exception:  # a restart recovers them anyway
            logging.getLogger("postguard").exception("releasing leases at stop failed")

    def abandoned(self, lease: Lease) -> None:
        """The commit that :meth:`reserve` gave ``lease`` to failed: nothing was stored."""
        self._reserved -= 1

    def start(self, *, recover: bool = True, owner: str | None = None) -> None:
        """Start the scan loop.

        Args:
            recover: release every lease first (the process that held them is gone).
                Only the first process of a server does this; worker processes that
                start beside it must not take their siblings' leases.
            owner: the name to lease under (default: host, PID and a random token).
                The parent of worker processes names them, to recover a dead one's
                leases (:meth:`recover_leases_of`).
        """
        # The owner names this process: forked workers must not share one.
        self.owner = owner or lease_owner(self.hostname, os.getpid())
        self._recover = recover
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop scanning; wait for deliveries in flight (their outcomes are recorded), and
        give back the leases of work that never started (due again at once)."""
        self._running = False
        self._stopped = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ready:
            self._ready.clear()
            self._ready_messages = self._ready_octets = 0
            await self._give_back()
        if self._tasks:  # give-backs for commits that ended while we waited
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """One scan: deliver what is due now and wait for those deliveries to finish.

        Returns the number of messages claimed. (The loop started by :meth:`start`
        does the same continuously; this is for tests and one-shot flushes.)
        """
        self._store_due = True
        claimed = await self._claim_from_store()
        self._start_ready()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            self._start_ready()
        return claimed

    async def recover_leases_of(self, owner: str) -> int:
        """Make a dead process's leased recipients due again, as redeliveries."""
        released = await self.store.release_leases(owner=owner, now=self._clock(), lost=True)
        if released:
            log_event(QueueEvent.RECOVERED, recipients=released, owner=owner)
        self.wake()
        return released

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
        try:
            if self._recover:
                await self.recover_leases()
        finally:
            self._recovered.set()
        self._running = True  # only now: recovery must not take back new mail's leases
        while True:
            try:
                started = await self._scan()
            except StoreFailed:
                return  # nothing can be claimed or recorded; the server is stopping
            except Exception:
                logging.getLogger("postguard").exception("queue scan failed")
                started = 0
            if started:
                continue
            await self._sleep_until_due()

    async def _scan(self) -> int:
        """Claim due work from the store if it may have some; start what can start.

        Returns how many messages were claimed plus deliveries started (0: idle).
        """
        claimed = await self._claim_from_store()
        return claimed + self._start_ready()

    def _claim_room(self) -> int:
        """How many jobs a claim may bring into the ready area now.

        A full batch while the ready area is below ``handoff_limit`` (new mail handed
        over in memory must not starve retries that fall due) and holds less content
        than ``claim_max_octets``; nothing otherwise. (A claim always brings one
        message, however large, so the ready area holds at most that budget plus one
        message from the store, plus the hand-off's bounded share.)
        """
        s = self.settings
        if self._ready_messages and self._ready_octets >= s.claim_max_octets:
            return 0
        room = s.handoff_limit + s.claim_batch - self._ready_messages - self._reserved
        return max(0, min(s.claim_batch, room))

    async def _claim_from_store(self) -> int:
        room = self._claim_room()
        if not self._store_due or room <= 0:
            return 0
        claims = await self.store.claim_due(
            now=self._clock(),
            owner=self.owner,
            lease_seconds=self.settings.lease_seconds,
            limit=room,
            max_octets=max(1, self.settings.claim_max_octets - self._ready_octets),
        )
        if len(claims) < room:  # drained: look again when woken or when due
            self._store_due = False
            self._next_due = await self.store.next_due_time()
        for claim in claims:
            self._add_ready(claim)
        return len(claims)

    def _add_ready(self, claim: Claim) -> None:
        # One delivery per destination: a Maildir agent then stores a whole batch
        # with one file-system flush, an LMTP agent could reuse its connection.
        for route, rcpts in _by_route(claim.recipients).items():
            key = route if route != "maildir" else f"maildir:{rcpts[0].mailbox}"
            self._ready.setdefault(key, []).append(_Job(claim, route, rcpts))
            self._ready_messages += 1
            self._ready_octets += len(claim.content)

    def _start_ready(self) -> int:
        """Start deliveries for ready destinations that may take one; return how many."""
        batch = self.settings.claim_batch
        started = 0
        loop = asyncio.get_running_loop()
        for destination in list(self._ready):
            if len(self._tasks) >= self.settings.concurrency:
                break
            jobs = self._ready[destination]
            running = self._in_flight.get(destination, 0)
            if running >= self.settings.per_destination or (running and len(jobs) < batch):
                continue  # joins the next batch when the running delivery finishes
            taken, rest = jobs[:batch], jobs[batch:]
            if rest:
                self._ready[destination] = rest
            else:
                del self._ready[destination]
            self._ready_messages -= len(taken)
            self._ready_octets -= sum(len(job.claim.content) for job in taken)
            self._in_flight[destination] = running + 1
            task = loop.create_task(self._deliver(destination, taken))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _sleep_until_due(self) -> None:
        timeout = self.settings.scan_interval
        # With the ready area full nothing more is claimed: wait for a delivery to end
        # (it wakes us) rather than spin on a due time that is already past.
        if self._next_due is not None and self._claim_room() > 0:
            timeout = max(0.0, min(timeout, self._next_due - self._clock()))
        self._wakeup.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        except TimeoutError:
            self._store_due = True  # something may have fallen due, or an operator acted

    # -------------------------------------------------------------- delivery

    async def _deliver(self, destination: str, jobs: list[_Job]) -> None:
        try:
            results = await self._flushed(jobs, await self._call_agent(jobs))
            try:
                await self._settle(jobs, results)
            except StoreFailed:
                pass  # logged once by the store; the restart delivers these again
            except Exception:
                logging.getLogger("postguard").exception("recording delivery outcomes failed")
        finally:
            left = self._in_flight.get(destination, 1) - 1
            if left > 0:
                self._in_flight[destination] = left
            else:
                self._in_flight.pop(destination, None)
            self._wakeup.set()

    async def _flushed(
        self, jobs: list[_Job], results: list[dict[str, Outcome]]
    ) -> list[dict[str, Outcome]]:
        """Make copies an agent left to us durable (one flush round shared with the
        queue's log sync), before any outcome is recorded: Delivered, or 451 if the
        flush failed; the agent then discards those copies (their data may be lost, and
        a later flush could wrongly succeed), so the retry stores them afresh."""
        unflushed = [o for r in results for o in r.values() if isinstance(o, NeedsFlush)]
        if not unflushed:
            return results
        done: Outcome
        try:
            await self.store.flush(sorted({o.path for o in unflushed}))
            done = Delivered()
        except OSError as exc:
            done = TemporaryFailure(replies.R451_LOCAL_ERROR, f"flushing copies failed: {exc}")
            discard = getattr(self.agents.get(jobs[0].route), "discard", None)
            if discard is not None:
                copies = [o.copy for o in unflushed if o.copy]
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        self._executor, discard, copies
                    )
                except Exception:
                    logging.getLogger("postguard").exception("discarding unflushed copies failed")
        return [
            {m: done if isinstance(o, NeedsFlush) else o for m, o in r.items()} for r in results
        ]

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
            DeliveryItem(
                job.claim.content,
                [r.mailbox for r in job.rcpts],
                job.claim.message.reverse_path,
                key=job.claim.message.queue_id,
                received_at=job.claim.message.received_at,
                redelivery=any(r.redelivery for r in job.rcpts),
            )
            for job in jobs
        ]

        def run() -> list[dict[str, Outcome]]:
            batch = getattr(agent, "deliver_batch", None)
            if batch is not None:
                return list(batch(items))
            return [
                agent.deliver(i.content, i.mailboxes, reverse_path=i.reverse_path) for i in items
            ]

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
        for r in results:
            if r.state is RecipientState.DEFERRED and (
                self._next_due is None or r.next_attempt < self._next_due
            ):
                self._next_due = r.next_attempt
        if bounces:
            self._store_due = True  # the DSNs are queued for delivery

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
        if isinstance(outcome, NeedsFlush):  # never recorded unflushed (see _flushed)
            outcome = TemporaryFailure(replies.R451_LOCAL_ERROR, "copy not flushed")
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


def lease_owner(hostname: str, pid: int, token: str | None = None) -> str:
    """The lease owner name of one process: host, PID and a random token (PIDs recur)."""
    return f"{hostname}:{pid}:{token or secrets.token_hex(4)}"


def _claim_of(message: NewMessage) -> Claim:
    """The claim the store would return for a message just committed with our lease."""
    assert message.body is not None
    rcpts = tuple(
        RecipientRow(
            message_id=message.queue_id,
            index=index,
            address=r.address,
            mailbox=r.mailbox,
            route=r.route,
            state=RecipientState.DELIVERING,
            attempts=0,
            next_attempt=message.received_at,
            last_reply=None,
            notify=r.notify,
            orcpt=r.orcpt,
            delay_warned=False,
        )
        for index, r in enumerate(message.recipients)
    )
    row = MessageRow(
        message.queue_id,
        message.received_at,
        message.reverse_path,
        message.size,
        message.envelope,
        False,
        message.body_path,
        rcpts,
    )
    return Claim(row, rcpts, message.prepend + message.body)


def _by_route(rcpts: tuple[RecipientRow, ...]) -> dict[str, list[RecipientRow]]:
    """Group a message's leased recipients: one delivery per route."""
    groups: dict[str, list[RecipientRow]] = {}
    for r in rcpts:
        groups.setdefault(r.route, []).append(r)
    return groups
