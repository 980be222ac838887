"""What the client engine sends and what it reports: commands, their wire form, reply events.

The client side mirrors ``commands.py`` (the server's events) but is a separate
vocabulary: a server *parses* ``MAIL FROM:<a@b>`` into an :class:`~.grammar.Address`,
while a client *composes* it from the strings the queue holds. So the client's
``MailFrom`` carries ``reverse_path: str`` and raw ``params``, and
:func:`render_command` validates them against ``grammar.py`` while rendering:
no CR, LF or other text outside the grammar can reach the wire inside an
address, domain, parameter or SASL line (command injection).

Commands (:class:`ClientCommand` subclasses) go into
:meth:`~.client.ClientConnection.send`. Events come out of
:meth:`~.client.ClientConnection.next_event`: :class:`Greeting` once, then one
:class:`ServerReply` per reply, matched to the command it answers, and
:class:`ConnectionClosed` at EOF.

Rendering lives here rather than in ``client.py`` to keep the engine module
under STYLE.md's ~600 lines; it is pure (one command in, one line out) and
knows nothing of the connection's state.

Must not: hold state, or decide whether a command is legal *now* (that is
``client.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import grammar
from .errors import LocalProtocolError
from .receivers import MAX_COMMAND_LINE_OCTETS, MAX_EXTENDED_COMMAND_LINE_OCTETS
from .replies import Reply

# RFC 4954 §4: SASL lines may exceed 512 octets; 12288 octets is the limit Postfix,
# Dovecot and Cyrus apply to a base64 response line.
MAX_SASL_LINE_OCTETS = 12288
_SASL_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")  # RFC 4422 §3.1 sasl-mech
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

EsmtpParams = dict[str, str | None]
"""ESMTP parameters of MAIL/RCPT: keyword → value (None for a bare keyword)."""


@dataclass(frozen=True, slots=True)
class ClientCommand:
    """Base class of everything the client sends that the server answers."""


@dataclass(frozen=True, slots=True)
class Ehlo(ClientCommand):
    """EHLO domain (RFC 5321 §4.1.1.1). SMTP only."""

    domain: str


@dataclass(frozen=True, slots=True)
class Helo(ClientCommand):
    """HELO domain, the fallback when EHLO is refused (RFC 5321 §4.1.1.1). SMTP only."""

    domain: str


@dataclass(frozen=True, slots=True)
class Lhlo(ClientCommand):
    """LHLO domain (RFC 2033 §4.1). LMTP only."""

    domain: str


@dataclass(frozen=True, slots=True)
class StartTls(ClientCommand):
    """STARTTLS (RFC 3207)."""


@dataclass(frozen=True, slots=True)
class MailFrom(ClientCommand):
    """MAIL FROM:<reverse_path> [params].

    Attributes:
        reverse_path: the mailbox without angle brackets; "" is the null
            reverse path ``<>`` (bounces, RFC 5321 §4.5.5).
        params: ESMTP parameters, e.g. ``{"SIZE": "1234", "BODY": "8BITMIME"}``.
    """

    reverse_path: str
    params: EsmtpParams = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True, slots=True)
class RcptTo(ClientCommand):
    """RCPT TO:<forward_path> [params]. ``forward_path`` has no angle brackets."""

    forward_path: str
    params: EsmtpParams = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True, slots=True)
class Data(ClientCommand):
    """DATA; a 354 reply allows :meth:`~.client.ClientConnection.send_body`."""


@dataclass(frozen=True, slots=True)
class EndOfData(ClientCommand):
    """The end of DATA content (CRLF.CRLF), sent by ``send_body``.

    It is answered like a command: once in SMTP, once per accepted recipient
    in LMTP (RFC 2033 §4.2), where each reply's ``ServerReply.recipient`` names
    the recipient it is for.
    """


@dataclass(frozen=True, slots=True)
class Bdat(ClientCommand):
    """BDAT size [LAST] (RFC 3030 §2); the ``size`` octets follow via ``send_chunk``."""

    size: int
    last: bool = False


@dataclass(frozen=True, slots=True)
class Rset(ClientCommand):
    """RSET."""


@dataclass(frozen=True, slots=True)
class Noop(ClientCommand):
    """NOOP."""


@dataclass(frozen=True, slots=True)
class Quit(ClientCommand):
    """QUIT."""


@dataclass(frozen=True, slots=True)
class Auth(ClientCommand):
    """AUTH mechanism [initial-response] (RFC 4954 §4).

    Attributes:
        mechanism: the SASL mechanism name (RFC 4422 §3.1).
        initial_response: base64 text, "" for an empty response (sent as
            "="), or None to send none. Never shown in ``repr``.
    """

    mechanism: str
    initial_response: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthResponse(ClientCommand):
    """One SASL response line after a 334 challenge: base64 text, or "*" to cancel."""

    data: str = field(repr=False)


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Base class of what :meth:`~.client.ClientConnection.next_event` returns."""


@dataclass(frozen=True, slots=True)
class Greeting(ClientEvent):
    """The server's opening reply (220, or 554/421 when it refuses us)."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class ServerReply(ClientEvent):
    """One reply, matched to the command it answers (RFC 2920 keeps them in order).

    Attributes:
        reply: the parsed reply.
        command: the command answered; None only for a 421 that arrived while
            no command was outstanding (RFC 5321 §3.8: the server may close
            at any time with 421).
        recipient: in LMTP, for the replies after the end of the message
            (:class:`EndOfData`, or ``Bdat`` with ``last``), the accepted
            recipient this reply is for (RFC 2033 §4.2); otherwise None.
    """

    reply: Reply
    command: ClientCommand | None
    recipient: RcptTo | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed(ClientEvent):
    """The server closed its side (EOF)."""


# ------------------------------------------------------------------ wire form


def render_command(command: ClientCommand, *, smtputf8: bool = False) -> bytes:
    """The wire form of ``command``, CRLF-terminated, after validating every argument.

    Args:
        command: what to send (not :class:`EndOfData`: that is message content).
        smtputf8: the transaction's MAIL carried SMTPUTF8 (RCPT may then use
            UTF-8 addresses, RFC 6531 §3.3).

    Raises:
        LocalProtocolError: an argument is outside the grammar, or the line
            is over its limit (512 octets; 2048 for MAIL/RCPT with parameters;
            12288 for a SASL response).
    """
    limit = MAX_COMMAND_LINE_OCTETS
    match command:
        case Ehlo(domain) | Helo(domain) | Lhlo(domain):
            text = f"{type(command).__name__.upper()} {_hello_domain(domain)}"
        case StartTls():
            text = "STARTTLS"
        case MailFrom(reverse_path, params):
            utf8 = "SMTPUTF8" in {key.upper() for key in params}
            path = _path(reverse_path, utf8=utf8, null=True)
            text = f"MAIL FROM:<{path}>{_params(params, utf8=utf8)}"
            limit = MAX_EXTENDED_COMMAND_LINE_OCTETS
        case RcptTo(forward_path, params):
            utf8 = smtputf8
            text = f"RCPT TO:<{_path(forward_path, utf8=utf8)}>{_params(params, utf8=utf8)}"
            limit = MAX_EXTENDED_COMMAND_LINE_OCTETS
        case Data():
            text = "DATA"
        case Bdat(size, last):
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise LocalProtocolError("BDAT size must be a non-negative int")
            text = f"BDAT {size} LAST" if last else f"BDAT {size}"
        case Rset() | Noop() | Quit():
            text = type(command).__name__.upper()
        case Auth(mechanism, initial_response):
            text = f"AUTH {_mechanism(mechanism)}"
            if initial_response is not None:
                # RFC 4954 §4: an empty initial response is sent as "=".
                text += f" {_base64(initial_response) or '='}"
        case AuthResponse(data):
            text = data if data == "*" else _base64(data)
            limit = MAX_SASL_LINE_OCTETS + 2
        case EndOfData():
            raise LocalProtocolError("the end of data is sent by send_body()")
        case _:
            raise LocalProtocolError(f"not a command: {command!r}")
    line = text.encode("utf-8") + b"\r\n"
    if len(line) > limit:
        # RFC 4954 §4: an initial response that does not fit is not sent in AUTH.
        raise LocalProtocolError(f"{type(command).__name__} line over {limit} octets")
    return line


def _hello_domain(domain: str) -> str:
    try:
        argument, valid = grammar.parse_ehlo_argument(domain)
    except grammar.GrammarError as exc:
        raise LocalProtocolError(f"bad EHLO domain: {exc}") from None
    if not valid:
        raise LocalProtocolError("EHLO domain is not a domain or address literal")
    return argument


def _path(mailbox: str, *, utf8: bool, null: bool = False) -> str:
    """Validate a mailbox for MAIL/RCPT; the caller adds the angle brackets."""
    if mailbox == "" and null:
        return ""
    if mailbox.lower() == "postmaster" and not null:
        return mailbox  # RFC 5321 §4.1.1.3: "<Postmaster>" needs no domain
    # SECURITY: command injection: only text inside the grammar reaches the wire, so a
    # CR, LF or ">" in an address from the queue can never start another command.
    if mailbox.startswith("@"):
        raise LocalProtocolError("source routes are not sent (RFC 5321 §4.1.2)")
    try:
        grammar.parse_path(f"<{mailbox}>", utf8=utf8)
    except grammar.GrammarError as exc:
        raise LocalProtocolError(f"bad address: {exc}") from None
    return mailbox


def _params(params: EsmtpParams, *, utf8: bool) -> str:
    if not params:
        return ""
    text = " ".join(key if value is None else f"{key}={value}" for key, value in params.items())
    try:
        parsed = grammar.parse_esmtp_params(text, utf8=utf8)
    except grammar.GrammarError as exc:
        raise LocalProtocolError(f"bad ESMTP parameter: {exc}") from None
    # Parsing what we rendered must give back exactly what we were given; a space,
    # "=" or control character inside a key or value would not.
    if parsed != {key.upper(): value for key, value in params.items()} or len(parsed) != len(
        params
    ):
        raise LocalProtocolError("bad ESMTP parameter")
    return " " + text


def _mechanism(name: str) -> str:
    if not _SASL_MECHANISM.fullmatch(name.upper()):
        raise LocalProtocolError("bad SASL mechanism name")
    return name.upper()


def _base64(data: str) -> str:
    if not _BASE64.fullmatch(data):
        raise LocalProtocolError("SASL data must be base64")
    return data
