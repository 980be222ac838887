"""A small queued message for tests that fill a queue store directly (no server)."""

from __future__ import annotations

from postguard.queue.store.base import NewMessage, NewRecipient


def small_message(queue_id: str, *, received_at: float = 1.0) -> NewMessage:
    """One recipient (b@localhost, Maildir), a few octets of inline body."""
    body = b"Subject: " + queue_id.encode() + b"\r\n\r\nhello\r\n"
    return NewMessage(
        queue_id=queue_id,
        received_at=received_at,
        reverse_path="a@example.org",
        recipients=(NewRecipient("b@localhost", "b@localhost", "maildir"),),
        prepend=b"",
        size=len(body),
        envelope={},
        body=body,
    )
