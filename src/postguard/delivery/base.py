"""The delivery-agent contract (maddy's Delivery): per-recipient outcomes, never exceptions.

An agent receives a committed message and the recipients routed to it, and
returns one :data:`Outcome` per recipient. ``deliver`` must not touch the
queue store; an unexpected exception in an agent is counted by the caller as
a *temporary* failure (maddy's rule), so a bug never loses mail.

Durability: an agent returns :class:`Delivered` only once the message is on
stable storage at its destination.
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


Outcome = Delivered | TemporaryFailure | PermanentFailure


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
