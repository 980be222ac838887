"""Policy outcomes as values, not exceptions: Accept | Reject(reply) | Defer(reply)."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.replies import Reply


@dataclass(frozen=True, slots=True)
class Accept:
    """Go ahead. ``mailbox`` is set when a recipient resolved to a local mailbox."""

    mailbox: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse permanently with ``reply`` (5xx); ``detail`` is for the log only."""

    reply: Reply
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Defer:
    """Refuse for now with ``reply`` (4xx); ``detail`` is for the log only."""

    reply: Reply
    detail: str = ""


Decision = Accept | Reject | Defer
