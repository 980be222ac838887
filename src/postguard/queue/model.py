"""QueuedMessage: a committed message as the queue stores and re-reads it.

A queue file is read back after a crash; nothing in it is trusted. ``from_json``
validates every field and raises :class:`CorruptEntry` naming the problem, so
the manager can quarantine the entry instead of crashing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .ids import is_queue_id

FORMAT_VERSION = 1


class CorruptEntry(ValueError):
    """A queue entry that cannot be trusted."""


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    """A recipient and the local mailbox it is delivered to."""

    address: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """Envelope, provenance and the headers intake prepends to the content."""

    queue_id: str
    received_at: float
    reverse_path: str  # "" for the null sender
    recipients: tuple[QueuedRecipient, ...]
    prepend: bytes  # Received (and Message-ID if missing), CRLF-terminated
    body_type: str
    smtputf8: bool
    size: int
    provenance: dict[str, Any]

    def to_json(self) -> bytes:
        """Serialise for the queue file."""
        return json.dumps(
            {
                "v": FORMAT_VERSION,
                "id": self.queue_id,
                "received_at": self.received_at,
                "reverse_path": self.reverse_path,
                "recipients": [[r.address, r.mailbox] for r in self.recipients],
                "prepend": self.prepend.decode("utf-8"),
                "body_type": self.body_type,
                "smtputf8": self.smtputf8,
                "size": self.size,
                "provenance": self.provenance,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> QueuedMessage:
        """Parse and validate a queue entry.

        Raises:
            CorruptEntry: if anything is missing, mistyped or out of range.
        """
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptEntry(f"not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("v") != FORMAT_VERSION:
            raise CorruptEntry("unknown format version")
        try:
            recipients = tuple(QueuedRecipient(_str(r[0]), _str(r[1])) for r in raw["recipients"])
            message = cls(
                queue_id=_str(raw["id"]),
                received_at=float(raw["received_at"]),
                reverse_path=_str(raw["reverse_path"]),
                recipients=recipients,
                prepend=_str(raw["prepend"]).encode("utf-8"),
                body_type=_str(raw["body_type"]),
                smtputf8=bool(raw["smtputf8"]),
                size=int(raw["size"]),
                provenance=dict(raw["provenance"]),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise CorruptEntry(f"bad field: {exc}") from None
        if not is_queue_id(message.queue_id):
            raise CorruptEntry("bad queue id")
        if not recipients or message.size < 0:
            raise CorruptEntry("no recipients or negative size")
        return message


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
