"""The queue manager (Postfix qmgr, first cut): hands committed messages to delivery.

Committed messages arrive from intake (and from the spool at start-up) and are
delivered by a bounded pool of workers; delivery runs in worker threads so a
slow disk never stalls the listeners. A recipient with a temporary failure is
retried with exponential backoff; when every recipient has reached a final
state the queue file is removed.

Delivery semantics: at-least-once. A crash after a Maildir copy was stored but
before the queue file was removed delivers that copy again after restart; a
crash can never lose a message answered with 250. (The queue issue replaces
this in-memory bookkeeping with per-recipient state in a queue store.)

Must not: speak SMTP; agents never touch the spool.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field

from ..delivery.base import Delivered, DeliveryAgent, Outcome, PermanentFailure, TemporaryFailure
from ..observability.events import QueueEvent
from ..observability.logging import log_event
from ..protocol import replies
from .spool import Spool, SpooledMessage

DEFAULT_WORKERS = 4
FIRST_RETRY_DELAY = 60.0  # seconds; doubled per attempt
MAX_RETRY_DELAY = 3600.0


@dataclass(slots=True)
class _Work:
    message: SpooledMessage
    pending: list[str] = field(default_factory=list)  # mailboxes not yet final
    attempts: int = 0


class QueueManager:
    """Feeds committed messages to a delivery agent with bounded concurrency."""

    def __init__(
        self,
        spool: Spool,
        agent: DeliveryAgent,
        *,
        executor: Executor | None = None,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.spool = spool
        self.agent = agent
        self._executor = executor
        self._workers = workers
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.delivered = 0
        self.idle = asyncio.Event()
        self._in_flight = 0

    def submit(self, message: SpooledMessage) -> None:
        """Queue a committed message for delivery (called by intake after commit)."""
        mailboxes = list(dict.fromkeys(r.mailbox for r in message.entry.recipients))
        self.idle.clear()
        self._queue.put_nowait(_Work(message, mailboxes))

    def recover(self) -> int:
        """Queue everything the spool holds from before a restart; return how many."""
        found = self.spool.recover()
        for message in found:
            log_event(QueueEvent.RECOVERED, queue_id=message.entry.queue_id)
            self.submit(message)
        return len(found)

    def start(self) -> None:
        """Start the delivery workers."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker()) for _ in range(self._workers)]

    async def stop(self) -> None:
        """Stop after the deliveries in progress; queued work stays in the spool."""
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            work = await self._queue.get()
            self._in_flight += 1
            try:
                outcomes = await loop.run_in_executor(self._executor, self._deliver, work)
                self._settle(work, outcomes)
            finally:
                self._in_flight -= 1
                if self._queue.empty() and self._in_flight == 0:
                    self.idle.set()

    def _deliver(self, work: _Work) -> dict[str, Outcome]:
        try:
            content = work.message.entry.prepend + work.message.read_body()
            return self.agent.deliver(content, work.pending)
        except Exception as exc:  # an unknown error in delivery is temporary (maddy)
            logging.getLogger("postguard").exception("delivery agent failed")
            return {
                m: TemporaryFailure(replies.R451_LOCAL_ERROR, f"agent error: {exc}")
                for m in work.pending
            }

    def _settle(self, work: _Work, outcomes: dict[str, Outcome]) -> None:
        qid = work.message.entry.queue_id
        still: list[str] = []
        for mailbox in work.pending:
            outcome = outcomes.get(mailbox)
            if isinstance(outcome, Delivered):
                self.delivered += 1
                log_event(QueueEvent.DELIVERED, queue_id=qid, mailbox=mailbox)
            elif isinstance(outcome, PermanentFailure):
                log_event(
                    QueueEvent.BOUNCED,
                    logging.WARNING,
                    queue_id=qid,
                    mailbox=mailbox,
                    reply=str(outcome.reply),
                    detail=outcome.detail,
                )
            else:
                detail = outcome.detail if outcome is not None else "no outcome"
                log_event(
                    QueueEvent.DEFERRED,
                    logging.WARNING,
                    queue_id=qid,
                    mailbox=mailbox,
                    detail=detail,
                )
                still.append(mailbox)
        if not still:
            self.spool.remove(work.message)
            return
        work.pending = still
        work.attempts += 1
        delay = min(FIRST_RETRY_DELAY * 2 ** (work.attempts - 1), MAX_RETRY_DELAY)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(delay, self._retry, work)
        self._timers.add(timer)

    def _retry(self, work: _Work) -> None:
        self._timers = {t for t in self._timers if not t.cancelled()}
        self.idle.clear()
        self._queue.put_nowait(work)
