"""Intake: the one door into the queue (Postfix's cleanup(8) analogue).

The session hands intake an envelope and the content as it arrives; intake
adds the Received header (with TLS details) and a Message-ID when missing,
and commits the message to the spool. :meth:`Submission.commit` returns the
queue ID only once the message is on stable storage; the session sends 250
after that and never before.

Must not: speak SMTP or deliver. Delivery starts from what the spool holds.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable

from ..observability.events import QueueEvent
from ..observability.logging import log_event
from ..protocol import replies
from ..protocol.replies import Reply
from ..queue.ids import new_queue_id
from ..queue.model import QueuedMessage, QueuedRecipient
from ..queue.spool import IncomingMessage, Spool, SpooledMessage
from ..server.envelope import Envelope, Provenance
from .headers import HeaderScanner
from .received import received_header


class IntakeError(Exception):
    """The message could not be committed; ``reply`` is what to answer (4xx)."""

    def __init__(self, reply: Reply, detail: str) -> None:
        super().__init__(detail)
        self.reply = reply
        self.detail = detail


class Submission:
    """One message on its way into the queue."""

    def __init__(self, intake: Intake, envelope: Envelope, provenance: Provenance) -> None:
        self.queue_id = new_queue_id()
        self._intake = intake
        self._envelope = envelope
        self._provenance = provenance
        self._received_at = time.time()
        self._incoming: IncomingMessage = intake.spool.begin(self.queue_id)
        self._headers = HeaderScanner()

    def write(self, data: bytes) -> None:
        """Append content (dot-unstuffed)."""
        self._headers.feed(data)
        self._incoming.write(data)

    async def commit(self) -> SpooledMessage:
        """Make the message durable and hand it to delivery.

        Raises:
            IntakeError: 452 4.3.1 when storage is full, 451 4.3.0 otherwise.
        """
        intake = self._intake
        env = self._envelope
        single = env.recipients[0].address if len(env.recipients) == 1 else None
        prepend = received_header(
            self._provenance,
            hostname=intake.hostname,
            queue_id=self.queue_id,
            for_recipient=str(single) if single is not None else None,
            smtputf8=env.smtputf8,
            timestamp=self._received_at,
        )
        if not self._headers.has_message_id:
            prepend += f"Message-ID: <{self.queue_id}@{intake.hostname}>\r\n".encode()
        entry = QueuedMessage(
            queue_id=self.queue_id,
            received_at=self._received_at,
            reverse_path=str(env.reverse_path) if env.reverse_path else "",
            recipients=tuple(QueuedRecipient(str(r.address), r.mailbox) for r in env.recipients),
            prepend=prepend,
            body_type=env.body.value,
            smtputf8=env.smtputf8,
            size=self._incoming.size,
            provenance=_provenance_dict(self._provenance),
        )
        try:
            spooled = await intake.spool.commit(self._incoming, entry)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            reply = replies.R452_INSUFFICIENT_STORAGE if full else replies.R451_LOCAL_ERROR
            log_event(
                QueueEvent.COMMIT_FAILED,
                logging.ERROR,
                queue_id=self.queue_id,
                session=self._provenance.session_id,
                error=str(exc),
            )
            raise IntakeError(reply, str(exc)) from None
        log_event(
            QueueEvent.COMMITTED,
            queue_id=self.queue_id,
            session=self._provenance.session_id,
            size=entry.size,
            recipients=len(entry.recipients),
        )
        intake.on_committed(spooled)
        return spooled

    def abort(self) -> None:
        """Drop the message (rejected, RSET, or the client went away)."""
        self._incoming.abort()


class Intake:
    """Creates submissions and notifies the queue of committed messages."""

    def __init__(
        self, spool: Spool, hostname: str, on_committed: Callable[[SpooledMessage], None]
    ) -> None:
        self.spool = spool
        self.hostname = hostname
        self.on_committed = on_committed

    def begin(self, envelope: Envelope, provenance: Provenance) -> Submission:
        """Start a new message for this envelope."""
        return Submission(self, envelope, provenance)


def _provenance_dict(p: Provenance) -> dict[str, object]:
    out: dict[str, object] = {
        "session": p.session_id,
        "listener": p.listener,
        "client_ip": p.client_ip,
        "ehlo": p.ehlo_domain,
    }
    if p.tls is not None:
        out["tls"] = {"version": p.tls.version, "cipher": p.tls.cipher, "sni": p.tls.server_name}
    if p.auth_identity is not None:
        out["auth"] = p.auth_identity
    return out
