"""Events the server engine emits: one frozen dataclass per thing that happened on the wire.

Command events (``Ehlo``, ``MailFrom``...) each expect exactly one reply from
the session. Content events (``MessageData``) expect none; ``EndOfChunk`` and
``EndOfMessage`` expect one. ``ConnectionClosed`` ends the stream of events.

Must not: contain parsing or state logic (that is ``grammar.py``/``server.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .grammar import Address
from .replies import Reply


class BodyType(Enum):
    """The BODY= parameter of MAIL FROM (RFC 6152, RFC 3030)."""

    SEVEN_BIT = "7BIT"
    EIGHT_BIT_MIME = "8BITMIME"
    BINARY_MIME = "BINARYMIME"


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of engine events."""


@dataclass(frozen=True, slots=True)
class Command(Event):
    """Base class of events that expect exactly one reply."""


@dataclass(frozen=True, slots=True)
class Ehlo(Command):
    """EHLO (RFC 5321 §4.1.1.1). ``domain_valid`` is False for names outside the grammar."""

    domain: str
    domain_valid: bool = True


@dataclass(frozen=True, slots=True)
class Helo(Command):
    """HELO (RFC 5321 §4.1.1.1)."""

    domain: str
    domain_valid: bool = True


@dataclass(frozen=True, slots=True)
class MailFrom(Command):
    """MAIL FROM. ``reverse_path`` is None for the null sender ``<>``.

    Attributes:
        size: the declared SIZE= (RFC 1870), or None.
        body: the BODY= type (RFC 6152/3030).
        smtputf8: whether SMTPUTF8 was given (RFC 6531).
        auth: the decoded AUTH= value (RFC 4954 §5), or None.
        ret: RFC 3461 RET ("FULL" or "HDRS"), or None.
        envid: RFC 3461 ENVID (decoded xtext), or None.
        esmtp_params: every parameter as received, keys upper-cased.
    """

    reverse_path: Address | None
    size: int | None = None
    body: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False
    auth: str | None = None
    esmtp_params: dict[str, str | None] = field(default_factory=dict, hash=False, compare=True)
    ret: str | None = None
    envid: str | None = None


@dataclass(frozen=True, slots=True)
class RcptTo(Command):
    """RCPT TO with its forward path and ESMTP parameters.

    ``notify`` and ``orcpt`` are the RFC 3461 DSN parameters: NOTIFY as a tuple
    of upper-cased values (empty when absent), ORCPT as "addr-type;address"
    with the xtext decoded, or None.
    """

    forward_path: Address
    esmtp_params: dict[str, str | None] = field(default_factory=dict, hash=False, compare=True)
    notify: tuple[str, ...] = ()
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class StartData(Command):
    """DATA; the session answers 354 to start receiving, or an error."""


@dataclass(frozen=True, slots=True)
class Rset(Command):
    """RSET."""


@dataclass(frozen=True, slots=True)
class Noop(Command):
    """NOOP."""


@dataclass(frozen=True, slots=True)
class Quit(Command):
    """QUIT."""


@dataclass(frozen=True, slots=True)
class Vrfy(Command):
    """VRFY; the argument is kept only for logging."""

    argument: str


@dataclass(frozen=True, slots=True)
class Expn(Command):
    """EXPN."""

    argument: str


@dataclass(frozen=True, slots=True)
class Help(Command):
    """HELP."""

    argument: str


@dataclass(frozen=True, slots=True)
class StartTls(Command):
    """STARTTLS (RFC 3207); a 220 reply moves the engine to TLS_PENDING."""


@dataclass(frozen=True, slots=True)
class Auth(Command):
    """AUTH mechanism [initial-response] (RFC 4954 §4).

    ``initial_response`` is the decoded initial response: None when none was
    given, b"" for "=". It is never logged or shown in repr.
    """

    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthResponse(Command):
    """A client's base64-decoded response to a 334 challenge (RFC 4954 §4). Never logged."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MessageData(Event):
    """A piece of message content (dot-unstuffed for DATA). Expects no reply."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EndOfChunk(Command):
    """A non-final BDAT chunk was received completely (RFC 3030).

    Attributes:
        octets: the chunk's size.
        violation: when not None, the chunk broke a rule the engine enforces
            (size, line endings, sequence); the session must answer with it.
    """

    octets: int
    violation: Reply | None = None


@dataclass(frozen=True, slots=True)
class EndOfMessage(Command):
    """The message content is complete (DATA's CRLF.CRLF or BDAT ... LAST).

    Attributes:
        size: octets of content received (after dot-unstuffing).
        violation: when not None, the content broke a rule the engine enforces
            (SIZE, bare CR/LF, 1000-octet lines); the content must not be kept
            and the session must answer with this reply.
    """

    size: int
    violation: Reply | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed its side (EOF)."""
