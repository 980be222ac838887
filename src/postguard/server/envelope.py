"""Envelope and provenance: what one transaction carries besides its content.

``Session`` (connection state) and ``Envelope`` (transaction state) are kept
apart, as aiosmtpd does: RSET or EHLO drops the envelope, not the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol.commands import BodyType
from ..protocol.grammar import Address


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """The negotiated TLS parameters of a connection (for logs and Received)."""

    version: str
    cipher: str
    bits: int
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a message came from: listener, client, EHLO, TLS, authentication."""

    session_id: str
    listener: str
    client_ip: str
    client_port: int
    ehlo_domain: str
    esmtp: bool
    tls: TlsInfo | None = None
    auth_identity: str | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """One accepted recipient: the address as given, and the local mailbox it maps to.

    ``notify`` and ``orcpt`` are the RFC 3461 DSN parameters of its RCPT command.
    """

    address: Address
    mailbox: str
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    route: str | None = None  # None: the configured route for the mailbox


@dataclass(slots=True)
class Envelope:
    """The open transaction: reverse path, recipients and body parameters."""

    reverse_path: Address | None
    body: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False
    declared_size: int | None = None
    ret: str | None = None  # RFC 3461 RET=FULL|HDRS
    envid: str | None = None  # RFC 3461 ENVID (decoded xtext)
    recipients: list[Recipient] = field(default_factory=list)
