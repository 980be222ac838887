"""The QueueStore protocol: what the queue manager, intake and the CLI need from storage.

Two back ends implement it: ``sqlite.py`` (the embedded default, one node) and,
later, ``postgres.py`` (several nodes). One conformance suite
(``tests/queue/test_store_conformance.py``) runs against each.

Contracts:

* :meth:`QueueStore.commit` returns only when the message and its recipients
  are durable (the transaction's log is fsync'd). Commits from concurrent
  sessions may share one transaction (group commit). Given a :class:`Lease`,
  the recipients are committed already leased to its owner (the queue
  manager takes the new message straight from memory, as Postfix's qmgr
  moves new mail to its active queue, without claiming it back from storage).
* :meth:`QueueStore.claim_due` leases due recipients to one owner: until the
  lease expires or an outcome is recorded, no other caller gets them. A
  crashed node's leases expire and its recipients become due again
  (at-least-once delivery).
* Reads used by the CLI work while the server runs.
* A failed sync of the store's log is final for the process (:class:`StoreFailed`,
  :meth:`QueueStore.on_failure`): after a failed fsync, a later one may succeed
  although the pages of the failed one were lost (Linux reports a writeback error
  once), so nothing written since can be trusted. Every later write raises
  :class:`StoreFailed`; the server stops, and a restart recovers from what is on
  disk (PostgreSQL's answer to "fsyncgate", and ours).
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class StoreFailed(OSError):
    """The store's log could not be made durable: this process must stop writing.

    Raised by the write that hit the failure and by every write after it. Commits
    that got this error were not acknowledged (451); whether they survive is decided
    by the recovery at the next start (at most one duplicate, when the client retries).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(errno.EIO, detail)


class StoreUnavailable(OSError):
    """The store cannot be opened: its file is corrupt or unreadable, or it was written
    by a newer version. The message names the file and what to do."""

    def __init__(self, detail: str) -> None:
        super().__init__(errno.EIO, detail)


class RecipientState(enum.Enum):
    """Where one recipient of a queued message stands."""

    QUEUED = "queued"
    DELIVERING = "delivering"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"

    @property
    def is_final(self) -> bool:
        return self in (RecipientState.DELIVERED, RecipientState.BOUNCED)


@dataclass(frozen=True, slots=True)
class NewRecipient:
    """A recipient as intake commits it.

    Attributes:
        address: the RCPT TO address as given.
        mailbox: the resolved destination (local mailbox or remote address).
        route: the delivery agent's name ("maildir", "lmtp:dovecot", ...).
        notify: RFC 3461 NOTIFY values ("FAILURE", "DELAY", "SUCCESS"), or
            ("NEVER",); empty means the default (FAILURE, DELAY).
        orcpt: RFC 3461 ORCPT ("rfc822;user@example.org"), or None.
    """

    address: str
    mailbox: str
    route: str
    notify: tuple[str, ...] = ()
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as intake commits it. Exactly one of ``body``/``body_path`` is set."""

    queue_id: str
    received_at: float
    reverse_path: str  # "" for the null sender
    recipients: tuple[NewRecipient, ...]
    prepend: bytes  # Received (+ Message-ID if missing), CRLF-terminated
    size: int
    envelope: dict[str, Any] = field(default_factory=dict)  # body type, DSN RET/ENVID, provenance
    body: bytes | None = field(default=None, repr=False)
    body_path: str | None = None


CLAIM_MAX_OCTETS = 64 * 1024 * 1024  # content one claim brings into memory, at most


@dataclass(frozen=True, slots=True)
class Lease:
    """Who may deliver some recipients, and until when (epoch seconds)."""

    owner: str
    until: float


@dataclass(frozen=True, slots=True)
class RecipientRow:
    """One recipient's state as stored."""

    message_id: str
    index: int
    address: str
    mailbox: str
    route: str
    state: RecipientState
    attempts: int
    next_attempt: float
    last_reply: str | None
    notify: tuple[str, ...]
    orcpt: str | None
    delay_warned: bool
    # A lease on this recipient was recovered after a crash: an earlier attempt
    # may have stored a copy (agents that can tell avoid a duplicate).
    redelivery: bool = False


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A queued message's envelope and bookkeeping (without its body)."""

    queue_id: str
    received_at: float
    reverse_path: str
    size: int
    envelope: dict[str, Any]
    held: bool
    body_path: str | None
    recipients: tuple[RecipientRow, ...]
    quarantined: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """Recipients of one message leased for delivery, with the content to deliver."""

    message: MessageRow
    recipients: tuple[RecipientRow, ...]
    content: bytes = field(repr=False)  # prepend + body


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """What happened to one leased recipient.

    ``state`` is DELIVERED, DEFERRED (with ``next_attempt``) or BOUNCED.
    """

    message_id: str
    index: int
    state: RecipientState
    reply: str
    next_attempt: float = 0.0
    delay_warned: bool = False


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for ``postguard queue stats``."""

    messages: int
    recipients_by_state: dict[str, int]
    held_messages: int
    oldest_received_at: float | None
    bytes: int


class QueueStore(Protocol):
    """Storage for queued messages; see the module docstring for the contracts."""

    async def commit(self, message: NewMessage, *, lease: Lease | None = None) -> None:
        """Store a message durably (group commit). Raises OSError on storage failure.

        With ``lease`` its recipients start out leased to ``lease.owner`` (state
        delivering) instead of queued.
        """
        ...

    async def claim_due(
        self,
        *,
        now: float,
        owner: str,
        lease_seconds: float,
        limit: int,
        max_octets: int = CLAIM_MAX_OCTETS,
    ) -> Sequence[Claim]:
        """Lease up to ``limit`` due recipients, grouped by message, whose messages'
        content adds up to at most ``max_octets`` (one message is always taken, however
        large): claims carry the content, and a queue of large messages must not be read
        into memory all at once."""
        ...

    async def record(
        self, outcomes: Sequence[RecipientOutcome], *, owner: str, bounces: Sequence[NewMessage]
    ) -> None:
        """Record outcomes of leased recipients, and commit bounce messages atomically.

        Messages whose every recipient is final are removed with their body.
        """
        ...

    async def flush(self, paths: Sequence[str]) -> None:
        """Make every write to the file systems holding ``paths`` durable, in the same
        flush round as the next sync of the store's own log where they share a file
        system (delivery agents' copies, before their outcomes are recorded).

        Raises:
            OSError: a flush failed; the writes may not be durable.
        """
        ...

    async def release_leases(self, *, owner: str | None, now: float, lost: bool = False) -> int:
        """Make leased recipients due again: all of ``owner``'s, or every lease expired
        at ``now``. Expired leases, and ``owner``'s when ``lost`` (it died), are marked
        as redeliveries: their owner may have stored a copy before it died."""
        ...

    async def next_due_time(self) -> float | None:
        """When the earliest pending recipient is due (None if none)."""
        ...

    @property
    def failure(self) -> StoreFailed | None:
        """The failure that ended this store's writes, or None while it is healthy."""
        ...

    def on_failure(self, callback: Callable[[StoreFailed], None]) -> None:
        """Have ``callback`` called once, in the event loop, when a sync fails for good."""
        ...

    # Operator actions (the CLI); each returns how many messages it touched.
    async def list_messages(self, limit: int = 1000) -> Sequence[MessageRow]: ...
    async def get_message(self, queue_id: str) -> MessageRow | None: ...
    async def hold(self, queue_id: str) -> int: ...
    async def release(self, queue_id: str) -> int: ...
    async def retry(self, queue_id: str | None, *, now: float) -> int: ...
    async def delete(self, queue_id: str) -> int: ...
    async def stats(self) -> QueueStats: ...
    async def body_paths(self) -> set[str]: ...
    async def close(self) -> None: ...
