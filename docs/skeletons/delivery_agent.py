"""Skeleton of a delivery agent: copy to src/postguard/delivery/<name>.py and fill in.

Contract (delivery/base.py): ``deliver`` runs in a worker thread, returns one outcome per
mailbox, never raises for a per-recipient problem, never touches the queue, and returns
``Delivered`` only once the copy is on stable storage at its destination.
"""

from __future__ import annotations

from postguard.delivery.base import Delivered, Outcome, TemporaryFailure
from postguard.protocol import replies


class ExampleAgent:
    """Delivers nowhere; replace the body of ``_deliver_one``."""

    name = "example"

    def deliver(
        self, content: bytes, mailboxes: list[str], *, reverse_path: str = ""
    ) -> dict[str, Outcome]:
        # reverse_path: the envelope sender ("" for <>); a final-delivery agent records it
        # as Return-Path (RFC 5321 §4.4).
        return {mailbox: self._deliver_one(content, mailbox) for mailbox in mailboxes}

    def _deliver_one(self, content: bytes, mailbox: str) -> Outcome:
        try:
            ...  # store `content` durably for `mailbox`
        except OSError as exc:
            return TemporaryFailure(replies.R451_LOCAL_ERROR, f"{mailbox}: {exc}")
        return Delivered()
