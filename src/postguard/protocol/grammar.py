"""RFC 5321/6531 grammar pieces: domains, mailboxes, paths, ESMTP parameters, xtext.

Owns the syntax of what appears on a command line. Every parser here is pure,
returns a value or raises :class:`GrammarError` (never another exception), and
enforces the size limits of RFC 5321 §4.5.3.1.

Must not: know about replies or states; the engine maps ``GrammarError`` to
the right reply for the command it is parsing.

References:
    RFC 5321 §4.1.2 (command argument syntax), §4.1.3 (address literals),
    §4.5.3.1 (size limits); RFC 6531 §3.3 (UTF-8 extensions to the grammar);
    RFC 3461 §4 (xtext).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN_OCTETS = 255  # RFC 5321 §4.5.3.1.2
MAX_PATH_OCTETS = 256  # RFC 5321 §4.5.3.1.3, including the angle brackets
MAX_LABEL_OCTETS = 63  # RFC 1035 §2.3.4
MAX_ESMTP_PARAMS = 16  # no extension defines more than a handful per command


class GrammarError(ValueError):
    """Input does not match the grammar; the message says which rule failed."""


# RFC 5322 atext, as RFC 5321 §4.1.2 uses it for Atom.
# The hyphen is escaped: this text is pasted into character classes next to other
# ranges, where a bare "-" would join "~" to the next character as a range.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_UTF8_NON_ASCII = r"\u0080-\U0010ffff"  # RFC 6531 §3.3 UTF8-non-ascii
_DOT_STRING_ASCII = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT}{_UTF8_NON_ASCII}]+(?:\.[{_ATEXT}{_UTF8_NON_ASCII}]+)*")
# qtextSMTP = %d32-33 / %d35-91 / %d93-126; quoted-pairSMTP = "\" %d32-126
_QUOTED_ASCII = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_QUOTED_UTF8 = re.compile(rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_UTF8_NON_ASCII}]|\\[\x20-\x7e])*"')
# sub-domain = Let-dig [Ldh-str]; RFC 6531 allows U-labels.
_LABEL_ASCII = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_LABEL_UTF8 = re.compile(
    rf"[A-Za-z0-9{_UTF8_NON_ASCII}](?:[A-Za-z0-9{_UTF8_NON_ASCII}-]*[A-Za-z0-9{_UTF8_NON_ASCII}])?"
)
# General-address-literal = Standardized-tag ":" 1*dcontent
_GENERAL_LITERAL = re.compile(r"([A-Za-z0-9-]*[A-Za-z0-9]):([\x21-\x5a\x5e-\x7e]+)")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# esmtp-value = 1*(%d33-60 / %d62-126); RFC 6531 §3.3 adds UTF8-non-ascii
_VALUE_ASCII = re.compile(r"[\x21-\x3c\x3e-\x7e]+")
_VALUE_UTF8 = re.compile(rf"[\x21-\x3c\x3e-\x7e{_UTF8_NON_ASCII}]+")
_SOURCE_ROUTE = re.compile(r"@[^,:]+(?:,@[^,:]+)*:")


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: local part and domain (or address literal), as received.

    The local part keeps its case (RFC 5321 §2.4: only the destination host
    interprets it); the domain compares case-insensitively.
    """

    local_part: str
    domain: str

    @property
    def is_utf8(self) -> bool:
        """True when the address needs SMTPUTF8 (RFC 6531)."""
        return not (self.local_part.isascii() and self.domain.isascii())

    @property
    def domain_key(self) -> str:
        """The domain lowercased, for lookups."""
        return self.domain.lower()

    def __str__(self) -> str:
        local = self.local_part
        if not _DOT_STRING_UTF8.fullmatch(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}"


def parse_domain(text: str, *, utf8: bool = False) -> str:
    """Parse an RFC 5321 Domain (with RFC 6531 U-labels when ``utf8``).

    Returns:
        The domain as given (case preserved).

    Raises:
        GrammarError: if the text is not a valid domain.
    """
    if not text:
        raise GrammarError("empty domain")
    if len(text.encode("utf-8")) > MAX_DOMAIN_OCTETS:
        raise GrammarError("domain too long")
    label_re = _LABEL_UTF8 if utf8 else _LABEL_ASCII
    for label in text.split("."):
        if not label_re.fullmatch(label):
            raise GrammarError(f"invalid domain label {label!r}")
        if len(label.encode("utf-8")) > MAX_LABEL_OCTETS:
            raise GrammarError("domain label too long")
    return text


def parse_address_literal(text: str) -> str:
    """Parse an address literal "[...]" (RFC 5321 §4.1.3).

    Returns:
        The literal, normalised (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``).

    Raises:
        GrammarError: if the literal is malformed.
    """
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        raise GrammarError("address literal must be bracketed")
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            address = ipaddress.IPv6Address(inner[5:])
        except ValueError:
            raise GrammarError("invalid IPv6 address literal") from None
        if address.scope_id is not None:
            # RFC 5321 §4.1.3 IPv6-addr has no zone; ipaddress accepts any text after "%".
            raise GrammarError("zone identifier in IPv6 address literal")
        return f"[IPv6:{address.compressed}]"
    if re.fullmatch(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", inner):
        try:
            return f"[{ipaddress.IPv4Address(inner)}]"
        except ValueError:
            raise GrammarError("invalid IPv4 address literal") from None
    if _GENERAL_LITERAL.fullmatch(inner):
        return text
    raise GrammarError("invalid address literal")


def parse_mailbox(text: str, *, utf8: bool = False) -> Address:
    """Parse an RFC 5321 Mailbox: Local-part "@" ( Domain / address-literal ).

    Args:
        text: the mailbox without angle brackets.
        utf8: accept RFC 6531 UTF-8 in the local part and domain.

    Raises:
        GrammarError: if it is malformed or over the size limits.
    """
    if text.startswith('"'):
        quoted = (_QUOTED_UTF8 if utf8 else _QUOTED_ASCII).match(text)
        if quoted is None:
            raise GrammarError("unterminated or invalid quoted local part")
        raw_local = quoted.group(0)
        rest = text[quoted.end() :]
        local = re.sub(r"\\(.)", r"\1", raw_local[1:-1])
    else:
        at = text.rfind("@")
        if at <= 0:
            raise GrammarError("missing local part or @")
        raw_local, rest = text[:at], text[at:]
        if not (_DOT_STRING_UTF8 if utf8 else _DOT_STRING_ASCII).fullmatch(raw_local):
            raise GrammarError("invalid local part")
        local = raw_local
    if not rest.startswith("@") or len(rest) < 2:
        raise GrammarError("missing domain")
    if len(raw_local.encode("utf-8")) > MAX_LOCAL_PART_OCTETS:
        raise GrammarError("local part too long")
    domain_text = rest[1:]
    if domain_text.startswith("["):
        domain = parse_address_literal(domain_text)
    else:
        domain = parse_domain(domain_text, utf8=utf8)
    return Address(local, domain)


def parse_path(text: str, *, utf8: bool = False, allow_null: bool = False) -> Address | None:
    """Parse a Reverse-path or Forward-path: "<" [ A-d-l ":" ] Mailbox ">".

    A source route (``<@a,@b:user@c>``) is accepted and ignored, as RFC 5321
    §4.1.2 and Appendix C require of servers.

    Args:
        text: the path including its angle brackets.
        utf8: accept RFC 6531 UTF-8 addresses.
        allow_null: accept the null path ``<>`` (only MAIL FROM may).

    Returns:
        The mailbox, or None for the null path.

    Raises:
        GrammarError: if the path is malformed.
    """
    if len(text.encode("utf-8")) > MAX_PATH_OCTETS:
        raise GrammarError("path too long")
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise GrammarError("path must be enclosed in <>")
    inner = text[1:-1]
    if not inner:
        if allow_null:
            return None
        raise GrammarError("null path not allowed here")
    route = _SOURCE_ROUTE.match(inner)
    if route:
        inner = inner[route.end() :]
    return parse_mailbox(inner, utf8=utf8)


def split_path_and_params(arg: str) -> tuple[str, str]:
    """Split "<path> params" after "FROM:"/"TO:", honouring quotes inside the path.

    Raises:
        GrammarError: if there is no well-formed "<...>".
    """
    arg = arg.lstrip(" ")  # tolerate "MAIL FROM: <a@b>" as Postfix and Exim do
    if not arg.startswith("<"):
        raise GrammarError("path must start with <")
    in_quotes = False
    escaped = False
    for i, ch in enumerate(arg):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = in_quotes
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == ">" and not in_quotes:
            rest = arg[i + 1 :]
            if rest and not rest.startswith(" "):
                raise GrammarError("parameters must follow the path after a space")
            return arg[: i + 1], rest.strip(" ")
    raise GrammarError("path not closed with >")


def parse_esmtp_params(text: str, *, utf8: bool = False) -> dict[str, str | None]:
    """Parse "KEY[=VALUE] KEY[=VALUE]..." (RFC 5321 §4.1.2 esmtp-param).

    Returns:
        A dict keyed by the upper-cased keyword.

    Raises:
        GrammarError: on syntax errors, duplicates or too many parameters.
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    value_re = _VALUE_UTF8 if utf8 else _VALUE_ASCII
    parts = text.split(" ")
    if len(parts) > MAX_ESMTP_PARAMS:
        raise GrammarError("too many parameters")
    for part in parts:
        if not part:
            continue  # tolerate double spaces
        key, eq, value = part.partition("=")
        if not _KEYWORD.fullmatch(key):
            raise GrammarError(f"invalid parameter keyword {key!r}")
        if eq and not value_re.fullmatch(value):
            raise GrammarError(f"invalid value for {key.upper()}")
        ukey = key.upper()
        if ukey in params:
            raise GrammarError(f"duplicate parameter {ukey}")
        params[ukey] = value if eq else None
    return params


def decode_xtext(text: str) -> str:
    """Decode RFC 3461 §4 xtext ("+" followed by two upper-case hex digits).

    xtext encodes octets; they are decoded as UTF-8 (RFC 6533 §3 carries UTF-8
    addresses the same way), so ``encode_xtext`` and this function round-trip.

    Raises:
        GrammarError: on a malformed escape, a character outside xchar, or
            octets that are not UTF-8.
    """
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "+":
            hexpair = text[i + 1 : i + 3]
            if len(hexpair) != 2 or not re.fullmatch(r"[0-9A-F]{2}", hexpair):
                raise GrammarError("invalid xtext escape")
            out.append(int(hexpair, 16))
            i += 3
            continue
        if not ("\x21" <= ch <= "\x7e") or ch == "=":
            raise GrammarError("invalid xtext character")
        out.append(ord(ch))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise GrammarError("xtext is not UTF-8") from None


def encode_xtext(text: str) -> str:
    """Encode text as RFC 3461 xtext: its UTF-8 octets, "+HH" outside xchar."""
    return "".join(
        chr(octet) if 0x21 <= octet <= 0x7E and octet not in b"+=" else f"+{octet:02X}"
        for octet in text.encode("utf-8")
    )


def parse_ehlo_argument(text: str) -> tuple[str, bool]:
    """Parse the argument of EHLO/HELO: Domain or address-literal.

    Many real clients send names outside the grammar (underscores, bare
    NetBIOS names); like Postfix we accept any single printable token and
    report whether it was valid, so policy can decide.

    Returns:
        (the argument, True if it matches RFC 5321's grammar).

    Raises:
        GrammarError: if the argument is empty or contains spaces/controls.
    """
    if not text or not re.fullmatch(r"[\x21-\x7e]+", text):
        raise GrammarError("EHLO/HELO requires one domain argument")
    try:
        if text.startswith("["):
            parse_address_literal(text)
        else:
            parse_domain(text)
    except GrammarError:
        return text, False
    return text, True
