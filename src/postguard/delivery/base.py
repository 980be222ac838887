"""The delivery-agent contract (maddy's Delivery): per-recipient outcomes, never exceptions.

An agent receives a committed message and the recipients routed to it, and
returns one :data:`Outcome` per recipient. ``deliver`` must not touch the
queue store; an unexpected exception in an agent is counted by the caller as
a *temporary* failure (maddy's rule), so a bug never loses mail.

Durability: an agent returns :class:`Delivered` only once the message is on
stable storage at its destination, or :class:`NeedsFlush` when its caller
asked to make it durable itself (one flush shared with the queue's log sync).

Batches (optional): an agent may also offer
``deliver_batch(items: list[DeliveryItem]) -> list[dict[str, Outcome]]``, one
outcome mapping per item, in order, each with an outcome for every mailbox of
its item. The queue manager calls it instead of ``deliver`` when the agent has
it, so the agent can make a whole batch durable at once and use what
:class:`DeliveryItem` carries beyond ``deliver``'s arguments (the idempotency
``key``). It is not part of :class:`DeliveryAgent` because an agent without it
is complete.

Redelivery: the queue is at-least-once. A crash between "the copy is stored"
and "the outcome is recorded" makes the queue deliver that recipient again, so
an agent that can recognise its earlier copy (by :attr:`DeliveryItem.key`)
should; one that cannot (LMTP) may store a second copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..protocol.replies import Reply


@dataclass(frozen=True, slots=True)
class Delivered:
    """The recipient's copy is stored durably."""


@dataclass(frozen=True, slots=True)
class TemporaryFailure:
    """Try again later."""

    reply: Reply
    detail: str


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    """Give up for this recipient (a bounce, once the queue issue adds DSNs)."""

    reply: Reply
    detail: str


@dataclass(frozen=True, slots=True)
class NeedsFlush:
    """Stored, durable once the file system holding ``path`` has been flushed (syncfs).

    Returned only by an agent its caller asked to leave the flush to it: the queue
    manager then flushes once for the whole batch, in the same round as the queue's own
    log sync, and counts the copy :class:`Delivered` only after that flush succeeded.
    If the flush fails, the caller hands every such ``copy`` to the agent's
    ``discard(copies: list[str])`` (an agent returning NeedsFlush must have it), so the
    retry stores a fresh copy instead of trusting one whose data may be lost.
    """

    path: str
    copy: str = ""  # the stored copy (a file path); "" if there is nothing to discard


Outcome = Delivered | TemporaryFailure | PermanentFailure | NeedsFlush


@dataclass(frozen=True, slots=True)
class DeliveryItem:
    """One message and the mailboxes it goes to, as handed to ``deliver_batch``.

    Attributes:
        content: the message (prepended headers + body), as for ``deliver``.
        mailboxes: the recipients routed to this agent ("local@domain").
        reverse_path: the envelope sender ("" for ``<>``).
        key: a stable identifier of the message (the queue ID), the same on
            every attempt, that an agent may use to recognise a copy it already
            stored; "" when there is none.
        received_at: the message's arrival time (epoch seconds), the same on
            every attempt.
        redelivery: True when the queue cannot rule out that an earlier attempt
            stored the copy (the recipient's lease was recovered after a crash),
            so an agent that can check cheaply only on that flag (e.g. scanning
            a Maildir's ``cur/``) should.
    """

    content: bytes
    mailboxes: list[str]
    reverse_path: str = ""
    key: str = ""
    received_at: float = 0.0
    redelivery: bool = False


class DeliveryAgent(Protocol):
    """Something that stores or forwards a message for some recipients."""

    name: str

    def deliver(
        self, content: bytes, mailboxes: list[str], *, reverse_path: str = ""
    ) -> dict[str, Outcome]:
        """Deliver ``content`` (prepended headers + body) to each mailbox.

        Runs in a worker thread. Returns an outcome for every mailbox given.
        ``reverse_path`` is the envelope sender ("" for ``<>``); a final-delivery
        agent records it as Return-Path (RFC 5321 §4.4).
        """
        ...
