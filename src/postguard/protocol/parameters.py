"""ESMTP parameters of MAIL and RCPT: what each offered extension allows, decoded.

Pure functions over the parsed ``KEY[=VALUE]`` mapping (``grammar.parse_esmtp_params``).
A parameter that is malformed, or belongs to an extension we do not offer, raises
:class:`ParameterError` carrying the reply; the engine turns it into a
``RemoteProtocolError``.

Must not: know the engine's state.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import grammar, replies
from .commands import BodyType
from .options import ServerOptions
from .replies import Reply

MAX_ENVID_OCTETS = 100  # RFC 3461 §4.4
MAX_ORCPT_OCTETS = 500  # RFC 3461 §4.2
MAX_SIZE_DIGITS = 20  # RFC 1870 §3: size-value = 1*20DIGIT


class ParameterError(Exception):
    """A MAIL/RCPT parameter the server refuses; ``reply`` says how."""

    def __init__(self, reply: Reply, detail: str) -> None:
        super().__init__(detail)
        self.reply = reply
        self.detail = detail


@dataclass(frozen=True, slots=True)
class MailParameters:
    """The decoded parameters of MAIL FROM."""

    size: int | None = None
    body: BodyType = BodyType.SEVEN_BIT
    smtputf8: bool = False
    auth: str | None = None
    ret: str | None = None
    envid: str | None = None


def mail_parameters(params: dict[str, str | None], options: ServerOptions) -> MailParameters:
    """Validate and decode MAIL FROM's parameters.

    Raises:
        ParameterError: 501/504/552/555 as RFC 1870, 6152, 3030, 6531, 3461, 4954 say.
    """
    size: int | None = None
    body = BodyType.SEVEN_BIT
    auth: str | None = None
    ret: str | None = None
    envid: str | None = None
    binarymime = options.chunking and options.binarymime
    for key, value in params.items():
        if key == "SIZE":  # RFC 1870 §3
            # str.isdigit() is also true for "²" (int() refuses it) and "٣": ASCII only.
            if value is None or not (value.isascii() and value.isdigit()):
                raise ParameterError(replies.R501_BAD_PARAMETER, "bad SIZE value")
            if len(value) > MAX_SIZE_DIGITS:
                raise ParameterError(replies.R501_BAD_PARAMETER, "bad SIZE value")
            size = int(value)
            limit = options.max_message_size
            if limit is not None and size > limit:
                raise ParameterError(replies.R552_TOO_BIG, "declared SIZE over the limit")
        elif key == "BODY":  # RFC 6152 §3, RFC 3030 §3
            allowed = {"7BIT", "8BITMIME"} | ({"BINARYMIME"} if binarymime else set())
            if value is None or not value.isascii() or value.upper() not in allowed:
                raise ParameterError(replies.R504_UNSUPPORTED_PARAMETER, "bad BODY value")
            body = BodyType(value.upper())
        elif key == "SMTPUTF8" and options.smtputf8:  # RFC 6531 §3.4
            if value is not None:
                raise ParameterError(replies.R501_BAD_PARAMETER, "SMTPUTF8 takes no value")
        elif key == "RET" and options.dsn:  # RFC 3461 §4.3
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise ParameterError(replies.R501_BAD_PARAMETER, "bad RET value")
            ret = value.upper()
        elif key == "ENVID" and options.dsn:  # RFC 3461 §4.4
            envid = _xtext(value, MAX_ENVID_OCTETS, "ENVID")
        elif key == "AUTH" and options.auth:  # RFC 4954 §5
            try:
                auth = grammar.decode_xtext(value or "")
            except grammar.GrammarError as exc:
                raise ParameterError(replies.R501_BAD_PARAMETER, str(exc)) from None
        else:
            raise ParameterError(
                replies.R555_UNRECOGNIZED_PARAMETER, f"unknown MAIL parameter {key}"
            )
    return MailParameters(size, body, "SMTPUTF8" in params, auth, ret, envid)


def rcpt_parameters(
    params: dict[str, str | None], options: ServerOptions
) -> tuple[tuple[str, ...], str | None]:
    """Validate and decode RCPT TO's parameters: (NOTIFY values, ORCPT).

    Raises:
        ParameterError: 501 for malformed DSN parameters, 555 for anything else.
    """
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    for key, value in params.items():
        if key == "NOTIFY" and options.dsn:  # RFC 3461 §4.1
            values = tuple(v.upper() for v in (value or "").split(","))
            allowed = {"SUCCESS", "FAILURE", "DELAY"}
            if (
                not value
                or not value.isascii()
                or (values != ("NEVER",) and not set(values) <= allowed)
                or len(set(values)) != len(values)
            ):
                raise ParameterError(replies.R501_BAD_PARAMETER, "bad NOTIFY value")
            notify = values
        elif key == "ORCPT" and options.dsn:  # RFC 3461 §4.2
            addr_type, sep, xtext = (value or "").partition(";")
            if not sep or not addr_type or not addr_type.isascii():
                raise ParameterError(replies.R501_BAD_PARAMETER, "bad ORCPT value")
            orcpt = f"{addr_type.lower()};{_xtext(xtext, MAX_ORCPT_OCTETS, 'ORCPT')}"
        else:
            raise ParameterError(
                replies.R555_UNRECOGNIZED_PARAMETER, f"unknown RCPT parameter {key}"
            )
    return notify, orcpt


def _xtext(value: str | None, limit: int, name: str) -> str:
    if value is None or len(value) > limit:
        raise ParameterError(replies.R501_BAD_PARAMETER, f"bad {name} value")
    try:
        return grammar.decode_xtext(value)
    except grammar.GrammarError as exc:
        raise ParameterError(replies.R501_BAD_PARAMETER, f"{name}: {exc}") from None
