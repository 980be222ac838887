"""The GS2 header and ``saslname`` encoding shared by SCRAM and OAUTHBEARER (RFC 5801 §4).

A GS2 header opens the client's first message: a channel-binding flag (``n``: the client
cannot bind; ``y``: it can but thinks the server cannot; ``p=<type>``: it binds), an optional
authorisation identity ``a=<saslname>``, and a comma each::

    gs2-header = gs2-cb-flag "," [ "a=" saslname ] ","

``saslname`` escapes ``,`` as ``=2C`` and ``=`` as ``=3D`` (RFC 5802 §5.1); any other ``=`` is an
error. The header is kept verbatim because SCRAM echoes it in the ``c=`` attribute.

Must not: do I/O. Parse errors raise :class:`~postguard.sasl.base.MalformedInput`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import MAX_IDENTITY_OCTETS
from .mechanism import MalformedInput

# RFC 5056 §7: cb-name = 1*(ALPHA / DIGIT / "." / "-")
_CB_NAME = re.compile(r"[A-Za-z0-9.-]{1,64}")


@dataclass(frozen=True, slots=True)
class Gs2Header:
    """A parsed GS2 header.

    Attributes:
        cb_flag: ``"n"``, ``"y"`` or ``"p"``.
        cb_name: the channel-binding type when ``cb_flag`` is ``"p"``, else None.
        authzid: the decoded authorisation identity, or None.
        raw: the header exactly as received, trailing comma included.
    """

    cb_flag: str
    cb_name: str | None
    authzid: str | None
    raw: str


def parse_gs2_header(message: str) -> tuple[Gs2Header, str]:
    """Split ``message`` into its GS2 header and the rest.

    Raises:
        MalformedInput: no header, an unknown flag, a bad cb-name or a bad authzid.
    """
    parts = message.split(",", 2)
    if len(parts) != 3:
        raise MalformedInput("GS2 header missing")
    flag, authz, rest = parts
    cb_name: str | None = None
    if flag.startswith("p="):
        cb_name = flag[2:]
        if not _CB_NAME.fullmatch(cb_name):
            raise MalformedInput("bad channel-binding name")
        flag = "p"
    elif flag not in ("n", "y"):
        raise MalformedInput("bad GS2 channel-binding flag")
    authzid: str | None = None
    if authz:
        if not authz.startswith("a="):
            raise MalformedInput("bad GS2 authzid")
        authzid = decode_saslname(authz[2:])
    raw = message[: len(message) - len(rest)]
    return Gs2Header(flag, cb_name, authzid, raw), rest


def format_gs2_header(cb_flag: str, cb_name: str | None, authzid: str | None) -> str:
    """Build a GS2 header; ``cb_name`` only with ``cb_flag == "p"``."""
    flag = f"p={cb_name}" if cb_flag == "p" else cb_flag
    authz = f"a={encode_saslname(authzid)}" if authzid else ""
    return f"{flag},{authz},"


def encode_saslname(name: str) -> str:
    """Escape ``=`` and ``,`` (RFC 5802 §5.1); the order matters (``=`` first)."""
    return name.replace("=", "=3D").replace(",", "=2C")


def decode_saslname(text: str) -> str:
    """Undo :func:`encode_saslname`; reject other ``=`` sequences, empty or overlong names.

    Raises:
        MalformedInput: the name is not a valid ``saslname``.
    """
    if not text or len(text.encode("utf-8", "surrogatepass")) > MAX_IDENTITY_OCTETS:
        raise MalformedInput("saslname empty or too long")
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "=":
            escape = text[i + 1 : i + 3]
            if escape == "2C":
                out.append(",")
            elif escape == "3D":
                out.append("=")
            else:
                raise MalformedInput("bad saslname escape")
            i += 3
            continue
        # Controls are refused too, not only NUL: the name reaches logs.
        if ch == "," or ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise MalformedInput("bad character in saslname")
        out.append(ch)
        i += 1
    return "".join(out)
