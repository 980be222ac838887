"""Protocol errors: whose fault it is, and what to answer.

Owns the two exception types of the engine (after h11/wsproto):

* :class:`LocalProtocolError` — *we* misused the engine (a bug in the caller),
  e.g. sending a 354 when no DATA command is waiting for a reply.
* :class:`RemoteProtocolError` — the *peer* broke the protocol. It carries
  ``reply_hint``, the reply the server should send, and ``fatal``: whether the
  engine can continue (a malformed command is not fatal; a session that sent
  plaintext through a TLS cut is).

Must not: import anything from outside ``postguard.protocol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .replies import Reply


class ProtocolError(Exception):
    """Base class of every error the engine raises."""


class LocalProtocolError(ProtocolError):
    """The caller used the engine wrongly (a programming error, never the peer's)."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol.

    Attributes:
        reply_hint: the reply to send for this violation.
        fatal: True when the connection cannot continue; the caller sends the
            hint (when it has one) and closes.
        detail: a log-only description; never sent on the wire.
    """

    def __init__(self, reply_hint: Reply, *, detail: str = "", fatal: bool = False) -> None:
        super().__init__(detail or reply_hint.text)
        self.reply_hint = reply_hint
        self.fatal = fatal
        self.detail = detail or reply_hint.text
