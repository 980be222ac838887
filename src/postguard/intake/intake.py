"""Intake: the one door into the queue (Postfix's cleanup(8) analogue).

The session hands intake an envelope and the content as it arrives; intake
adds the Received header (with TLS details), and for an authenticated submission a
Message-ID and a Date when missing, routes each recipient, and commits the message to
the queue store.
:meth:`Submission.commit` returns the queue ID only once the message is on
stable storage; the session sends 250 after that and never before. Intake
then hands the message to the queue manager (:class:`Handoff`): committed
with a lease the manager reserved, it is delivered from memory, and never
before the commit is durable.

Intake also guards the disk: below ``min_free_disk`` on the queue's file
system new mail gets 452 4.3.1 (checked at MAIL and again at commit).

Must not: speak SMTP or deliver.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..observability.events import QueueEvent
from ..observability.logging import log_event
from ..protocol import replies
from ..protocol.replies import Reply
from ..queue.bodies import BodyFiles, IncomingMessage
from ..queue.ids import new_queue_id
from ..queue.store.base import Lease, NewMessage, NewRecipient, QueueStore
from ..server.envelope import Envelope, Provenance
from .headers import HeaderScanner
from .received import received_header, rfc5322_date

FREE_SPACE_CACHE_SECONDS = 1.0  # statvfs at most once a second under load


class Handoff(Protocol):
    """Who delivers new mail (the queue manager): it may take a message from memory."""

    def reserve(self, size: int) -> Lease | None:
        """A lease to commit the next message (``size`` octets) with, or None (unleased)."""
        ...

    def committed(self, message: NewMessage, lease: Lease | None) -> None:
        """``message`` is durable (leased to the manager if ``lease`` is set)."""
        ...

    def abandoned(self, lease: Lease) -> None:
        """The commit made with ``lease`` failed; nothing was stored."""
        ...


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
        self._incoming: IncomingMessage = intake.bodies.begin(self.queue_id)
        # Only an authenticated submission may be completed (_missing_fields).
        self._headers = HeaderScanner() if provenance.auth_identity is not None else None

    def write(self, data: bytes) -> None:
        """Append content (dot-unstuffed)."""
        if self._headers is not None:
            self._headers.feed(data)
        self._incoming.write(data)

    def _missing_fields(self, hostname: str) -> bytes:
        """Message-ID and Date for an authenticated submission that lacks them (RFC 6409
        §8.2, §8.3: the submission server may complete the message). Mail from other
        servers (mx) is passed on as it came: RFC 5321 §6.4 lets only the originating or
        submission server add them, as Postfix (``local_header_rewrite_clients``) and
        Stalwart do."""
        if self._headers is None:
            return b""
        fields = b""
        if not self._headers.has_message_id:
            fields += f"Message-ID: <{self.queue_id}@{hostname}>\r\n".encode()
        if not self._headers.has_date:
            fields += f"Date: {rfc5322_date(int(self._received_at))}\r\n".encode()
        return fields

    async def commit(self) -> str:
        """Make the message durable and wake delivery; return its queue ID.

        Raises:
            IntakeError: 452 4.3.1 when storage is full, 451 4.3.0 otherwise.
        """
        intake = self._intake
        env = self._envelope
        if not intake.has_room(self._incoming.size):
            self._incoming.abort()
            raise IntakeError(replies.R452_INSUFFICIENT_STORAGE, "below min_free_disk")
        single = env.recipients[0].address if len(env.recipients) == 1 else None
        prepend = received_header(
            self._provenance,
            hostname=intake.hostname,
            queue_id=self.queue_id,
            for_recipient=str(single) if single is not None else None,
            smtputf8=env.smtputf8,
            timestamp=self._received_at,
            show_auth_identity=intake.received_shows_identity,
        )
        prepend += self._missing_fields(intake.hostname)
        try:
            body, body_path = await intake.bodies.finish(self._incoming)
            message = NewMessage(
                queue_id=self.queue_id,
                received_at=self._received_at,
                reverse_path=str(env.reverse_path) if env.reverse_path else "",
                recipients=tuple(
                    NewRecipient(
                        address=str(r.address),
                        mailbox=r.mailbox,
                        route=r.route or intake.route_for(r.mailbox),
                        notify=r.notify,
                        orcpt=r.orcpt,
                    )
                    for r in env.recipients
                ),
                prepend=prepend,
                size=self._incoming.size,
                envelope=self._envelope_fields(),
                body=body,
                body_path=body_path,
            )
            await intake.commit(message)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            reply = replies.R452_INSUFFICIENT_STORAGE if full else replies.R451_LOCAL_ERROR
            self._incoming.abort()
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
            size=message.size,
            recipients=len(message.recipients),
        )
        return self.queue_id

    def _envelope_fields(self) -> dict[str, object]:
        env = self._envelope
        fields: dict[str, object] = {
            "body_type": env.body.value,
            "smtputf8": env.smtputf8,
            "provenance": _provenance_dict(self._provenance),
        }
        if env.ret is not None:
            fields["ret"] = env.ret
        if env.envid is not None:
            fields["envid"] = env.envid
        return fields

    def abort(self) -> None:
        """Drop the message (rejected, RSET, or the client went away)."""
        self._incoming.abort()


class Intake:
    """Creates submissions, commits them to the store, and hands them to the queue manager."""

    def __init__(
        self,
        store: QueueStore,
        bodies: BodyFiles,
        hostname: str,
        *,
        route_for: Callable[[str], str],
        handoff: Handoff,
        min_free_disk: int = 0,
        received_shows_identity: bool = False,
    ) -> None:
        self.store = store
        self.bodies = bodies
        self.hostname = hostname
        self.route_for = route_for
        self.handoff = handoff
        self.min_free_disk = min_free_disk
        self.received_shows_identity = received_shows_identity
        self._free: tuple[float, int] = (0.0, 0)

    def begin(self, envelope: Envelope, provenance: Provenance) -> Submission:
        """Start a new message for this envelope."""
        return Submission(self, envelope, provenance)

    async def commit(self, message: NewMessage) -> None:
        """Commit ``message`` durably and hand it to the queue manager.

        The commit runs to its end even if the session is cancelled meanwhile (the
        client went away), so the manager always learns whether a leased message was
        stored. Raises OSError (storage) like :meth:`QueueStore.commit`.
        """
        lease = self.handoff.reserve(message.size) if message.body is not None else None
        commit = asyncio.ensure_future(self.store.commit(message, lease=lease))

        def done(task: asyncio.Future[None]) -> None:
            if not task.cancelled() and task.exception() is None:
                self.handoff.committed(message, lease)
            elif lease is not None:
                self.handoff.abandoned(lease)

        commit.add_done_callback(done)
        await asyncio.shield(commit)

    def has_room(self, size: int = 0) -> bool:
        """Whether the queue's file system keeps ``min_free_disk`` free after ``size`` more."""
        if self.min_free_disk <= 0:
            return True
        now = time.monotonic()
        checked, free = self._free
        if now - checked > FREE_SPACE_CACHE_SECONDS:
            free = _free_bytes(self.bodies.directory)
            self._free = (now, free)
        return free - size >= self.min_free_disk


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


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
