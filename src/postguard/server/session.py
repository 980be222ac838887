"""Session: answers each engine event with a reply, calling policy and intake.

The engine (``protocol/server.py``) has already enforced grammar and order;
the session decides what the *listener* allows (``policy/submission.py``),
whom we accept mail for (``policy/relay.py``), and commits messages through
``intake/``. It logs one structured record per command with its outcome.

Must not: touch sockets (that is ``connection.py``) or parse SMTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..intake.intake import Intake, IntakeError, Submission
from ..observability.events import AuthEvent, SmtpEvent
from ..observability.logging import LOGGER, log_event
from ..policy.decision import Accept, Reject
from ..policy.relay import LocalRecipients
from ..policy.sender_auth import check_sender
from ..policy.submission import ListenerRules, check_command
from ..protocol import commands as c
from ..protocol import replies
from ..protocol.extensions import ehlo_keywords
from ..protocol.options import ServerOptions
from ..protocol.replies import Reply
from ..protocol.server import ServerConnection
from .authenticator import AuthExchange, AuthResult, AuthSettings
from .envelope import Envelope, Provenance, Recipient, TlsInfo

# Mechanisms an operator may switch off as too weak ([auth] mechanisms); asking for one of
# them then gets 534 5.7.9 rather than "unknown mechanism".
_WEAK_MECHANISMS = frozenset({"CRAM-MD5", "PLAIN", "LOGIN"})


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of one listener shares."""

    hostname: str
    rules: ListenerRules
    options: ServerOptions
    recipients: LocalRecipients
    intake: Intake
    tls_available: bool
    auth: AuthSettings | None = None

    def auth_mechanisms(self, tls_active: bool) -> tuple[str, ...]:
        """What to advertise after AUTH in EHLO now (empty: AUTH not offered)."""
        rules = self.rules
        if self.auth is None or not rules.auth_offered:
            return ()
        if rules.auth_requires_tls and not tls_active:
            return ()  # RFC 4954 §4 / RFC 8314: never invite a password over plaintext
        return self.auth.offered()


class Session:
    """Policy for one connection; :meth:`handle` maps an event to a reply."""

    def __init__(
        self,
        ctx: SessionContext,
        engine: ServerConnection,
        *,
        session_id: str,
        client_ip: str,
        client_port: int,
    ) -> None:
        self.ctx = ctx
        self.engine = engine
        self.session_id = session_id
        self.client_ip = client_ip
        self.client_port = client_port
        self.tls: TlsInfo | None = None
        self.auth_identity: str | None = None
        self.close_requested = False
        self._exchange: AuthExchange | None = None
        self.envelope: Envelope | None = None
        self.submission: Submission | None = None
        self.messages_accepted = 0

    # ------------------------------------------------------------------ API

    async def handle(self, event: c.Command) -> Reply:
        """The reply for one command event."""
        reply = await self._decide(event)
        self._log_command(event, reply)
        return reply

    def receive_content(self, data: bytes) -> None:
        """Store a piece of message content (DATA or BDAT)."""
        self._current_submission().write(data)

    def close(self) -> None:
        """The connection is gone: drop any half-received message."""
        self._drop_transaction()

    def tls_established(self) -> None:
        """STARTTLS completed: forget everything learnt before it (RFC 3207 §4.2).

        SECURITY: an identity authenticated in plaintext must not carry over into
        the TLS session (the engine forgets it too).
        """
        self._drop_transaction()
        self.auth_identity = None
        self._exchange = None

    # ------------------------------------------------------------- decisions

    async def _decide(self, event: c.Command) -> Reply:
        refusal = check_command(
            self.ctx.rules,
            event,
            tls_active=self.engine.tls_active,
            authenticated=self.auth_identity is not None,
        )
        if refusal is not None:
            return refusal
        match event:
            case c.Ehlo():
                self._drop_transaction()
                tls = self.engine.tls_active
                keywords = ehlo_keywords(
                    self.ctx.options, tls_active=tls, auth_mechanisms=self.ctx.auth_mechanisms(tls)
                )
                return replies.ehlo_response(self.ctx.hostname, event.domain, keywords)
            case c.Helo():
                self._drop_transaction()
                return replies.helo_response(self.ctx.hostname)
            case c.MailFrom():
                self._drop_transaction()
                if not self.ctx.intake.has_room(event.size or 0):
                    # Postfix's queue_minfree: refuse before the client sends the content.
                    return replies.R452_INSUFFICIENT_STORAGE
                refusal = self._check_sender(event)
                if refusal is not None:
                    return refusal
                self.envelope = Envelope(
                    reverse_path=event.reverse_path,
                    body=event.body,
                    smtputf8=event.smtputf8,
                    declared_size=event.size,
                    ret=event.ret,
                    envid=event.envid,
                )
                return replies.R250_SENDER_OK
            case c.RcptTo():
                return self._rcpt(event)
            case c.StartData():
                self._current_submission()
                return replies.R354_START_DATA
            case c.EndOfChunk():
                if event.violation is not None:
                    self._drop_transaction()
                    self._log_rejected(event.violation, "chunk")
                    return event.violation
                return replies.chunk_received(event.octets)
            case c.EndOfMessage():
                return await self._end_of_message(event)
            case c.Rset():
                self._drop_transaction()
                return replies.R250_RESET
            case c.Noop():
                return replies.R250_OK
            case c.Quit():
                return replies.R221_BYE
            case c.Vrfy():
                return replies.R252_CANNOT_VRFY  # discloses nothing (RFC 5321 §3.5.3)
            case c.Expn():
                return replies.R502_NOT_IMPLEMENTED  # list expansion discloses members
            case c.Help():
                return replies.R214_HELP
            case c.StartTls():
                return (
                    replies.R220_READY_TO_START_TLS
                    if self.ctx.tls_available
                    else (replies.R454_TLS_UNAVAILABLE)
                )
            case c.Auth():
                return await self._auth(event)
            case c.AuthResponse():
                return await self._auth_response(event)
        return replies.R502_NOT_IMPLEMENTED

    async def _auth(self, event: c.Auth) -> Reply:
        ctx = self.ctx
        auth = ctx.auth
        if auth is None or not ctx.rules.auth_offered:
            return replies.R502_NOT_IMPLEMENTED
        if ctx.rules.auth_requires_tls and not self.engine.tls_active:
            return replies.R538_ENCRYPTION_REQUIRED  # RFC 4954 §4
        if auth.throttle.is_blocked(self.client_ip, None, auth.clock()):
            log_event(
                AuthEvent.BLOCKED,
                logging.WARNING,
                session=self.session_id,
                client=self.client_ip,
                mechanism=event.mechanism,
            )
            self.close_requested = True
            return replies.R421_AUTH_BLOCKED
        if event.mechanism not in ctx.auth_mechanisms(self.engine.tls_active):
            if event.mechanism in _WEAK_MECHANISMS and event.mechanism not in auth.enabled:
                # RFC 4954 §6: a mechanism we know but policy has switched off as too weak.
                return replies.R534_MECHANISM_TOO_WEAK
            return replies.R504_UNKNOWN_MECHANISM
        self._exchange = AuthExchange(
            auth, event.mechanism, client_ip=self.client_ip, session_id=self.session_id
        )
        return self._settle_auth(await self._exchange.start(event.initial_response))

    async def _auth_response(self, event: c.AuthResponse) -> Reply:
        if self._exchange is None:  # cannot happen: the engine pairs them
            return replies.R503_BAD_SEQUENCE
        return self._settle_auth(await self._exchange.respond(event.data))

    def _settle_auth(self, result: AuthResult) -> Reply:
        if result.reply.code != 334:
            self._exchange = None
        if result.account is not None:
            self.auth_identity = result.account
        if result.close:
            self.close_requested = True
        return result.reply

    def _check_sender(self, event: c.MailFrom) -> Reply | None:
        """An authenticated client may only use the addresses its account owns."""
        auth = self.ctx.auth
        if self.auth_identity is None or auth is None:
            return None
        account = auth.store.get(self.auth_identity)
        owned = account.addresses if account is not None else ()
        decision = check_sender(owned, event.reverse_path, self.auth_identity)
        if isinstance(decision, Reject):
            log_event(
                AuthEvent.SENDER_REFUSED,
                logging.WARNING,
                session=self.session_id,
                account=self.auth_identity,
                mail_from=str(event.reverse_path),
            )
            return decision.reply
        return None

    def _rcpt(self, event: c.RcptTo) -> Reply:
        assert self.envelope is not None  # the engine allows RCPT only after MAIL
        address = event.forward_path
        recipients = self.ctx.recipients
        if self.auth_identity is not None and not recipients.is_local_domain(
            address.domain_key or recipients.primary_domain
        ):
            # An authenticated client may send anywhere (RFC 6409): queued for the relay.
            self.envelope.recipients.append(
                Recipient(address, str(address), event.notify, event.orcpt, route="relay")
            )
            return replies.R250_RECIPIENT_OK
        decision = recipients.check_recipient(address)
        if not isinstance(decision, Accept) or decision.mailbox is None:
            log_event(
                SmtpEvent.COMMAND,
                logging.INFO,
                session=self.session_id,
                command="RCPT",
                rcpt=str(event.forward_path),
                reply=decision.reply.code if not isinstance(decision, Accept) else None,
                detail=getattr(decision, "detail", None),
            )
            return decision.reply if not isinstance(decision, Accept) else replies.R451_LOCAL_ERROR
        self.envelope.recipients.append(
            Recipient(event.forward_path, decision.mailbox, event.notify, event.orcpt)
        )
        return replies.R250_RECIPIENT_OK

    async def _end_of_message(self, event: c.EndOfMessage) -> Reply:
        if event.violation is not None:
            self._drop_transaction()
            self._log_rejected(event.violation, "content")
            return event.violation
        submission = self._current_submission()
        recipients = len(self.envelope.recipients) if self.envelope else 0
        self.submission = None
        self.envelope = None
        try:
            queue_id = await submission.commit()
        except IntakeError as exc:
            self._log_rejected(exc.reply, exc.detail)
            return exc.reply
        self.messages_accepted += 1
        log_event(
            SmtpEvent.MESSAGE_ACCEPTED,
            session=self.session_id,
            queue_id=queue_id,
            size=event.size,
            recipients=recipients,
        )
        return replies.queued(queue_id)

    # --------------------------------------------------------------- helpers

    def provenance(self) -> Provenance:
        """Where the current message comes from."""
        return Provenance(
            session_id=self.session_id,
            listener=self.ctx.rules.name,
            client_ip=self.client_ip,
            client_port=self.client_port,
            ehlo_domain=self.engine.ehlo_domain or "unknown",
            esmtp=self.engine.esmtp,
            tls=self.tls,
            auth_identity=self.auth_identity,
        )

    def _current_submission(self) -> Submission:
        if self.submission is None:
            assert self.envelope is not None
            self.submission = self.ctx.intake.begin(self.envelope, self.provenance())
        return self.submission

    def _drop_transaction(self) -> None:
        if self.submission is not None:
            self.submission.abort()
        self.submission = None
        self.envelope = None

    def _log_rejected(self, reply: Reply, detail: str) -> None:
        event = SmtpEvent.MESSAGE_TOO_LARGE if reply.code == 552 else SmtpEvent.MESSAGE_REJECTED
        log_event(event, logging.INFO, session=self.session_id, reply=str(reply), detail=detail)

    def _log_command(self, event: c.Command, reply: Reply) -> None:
        if not LOGGER.isEnabledFor(logging.INFO):
            return  # per command: skip building the fields when nobody reads them
        if isinstance(event, c.RcptTo) and reply.code >= 400:
            return  # already logged with its detail
        fields: dict[str, Any] = {"command": type(event).__name__, "reply": reply.code}
        if isinstance(event, c.MailFrom):
            fields["mail_from"] = str(event.reverse_path or "<>")
        elif isinstance(event, c.RcptTo):
            fields["rcpt"] = str(event.forward_path)
        elif isinstance(event, c.Ehlo | c.Helo):
            fields["ehlo"] = event.domain
        elif isinstance(event, c.Auth):
            fields["mechanism"] = event.mechanism  # never the payload
        log_event(SmtpEvent.COMMAND, logging.INFO, session=self.session_id, **fields)
