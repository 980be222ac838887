"""Text syntax of config values that are not units: listen addresses, domains, mailboxes.

Owns the parse/format pairs for ``"127.0.0.1:2525"`` / ``"[::1]:2525"`` / ``"*:25"`` (listen
addresses) and for server addresses postguard connects to (no ``*``, no port 0); the checks
on local domains, mailbox addresses and certificate names; and TOML basic-string quoting
(used both to quote values in error messages, keeping them on one line, and by the sample
writer).

Split out of `load.py` so the loader reads tables and this module knows value syntax.

Must not: know about config keys or files. Functions raise `ValueError` with a one-line
message; the loader adds the file and key. Mailbox checks here are for *configured* local
addresses; the wire grammar (RFC 5321/6531) lives in `protocol/grammar.py`.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "ALL_INTERFACES",
    "addresses_conflict",
    "format_address",
    "is_loopback",
    "normalize_domain",
    "normalize_mailbox",
    "normalize_server_name",
    "parse_address",
    "parse_server_address",
    "quote",
]

ALL_INTERFACES = "*"
"""Host meaning every interface, both address families (asyncio ``start_server(host=None)``)."""

MAX_PORT = 65535

# RFC 1035 §2.3.4: labels up to 63 octets; names up to 255 octets on the wire, which is 253
# characters of dotted text. RFC 5321 §4.5.3.1.2 repeats the 255-octet bound for domains.
MAX_DOMAIN_CHARS = 253
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

# RFC 5321 §4.5.3.1.1: a local-part is at most 64 octets.
MAX_LOCAL_PART_OCTETS = 64
# RFC 5322 §3.2.3 atext, extended by RFC 6532 §3.2 with any non-ASCII character (UTF8-non-ascii).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+")

# TOML basic strings must escape ", \ and control characters other than tab (TOML 1.0 §String).
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def quote(text: str) -> str:
    """Quote ``text`` as a one-line TOML basic string, e.g. ``'"a\\"b"'``.

    Args:
        text: Any string.

    Returns:
        The string in double quotes, with quotes, backslashes and control characters escaped.
    """
    out = []
    for char in text:
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


_LISTEN_FORMS = '"IPv4:port", "[IPv6]:port", "localhost:port" or "*:port"'
_SERVER_FORMS = '"IPv4:port", "[IPv6]:port" or "localhost:port"'


def _parse_host_port(text: str, forms: str, min_port: int) -> tuple[str, int]:
    """Split and check ``host:port``; ``forms`` lists the accepted forms in errors."""
    expected = f"expected {forms}"
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"invalid address {quote(text)} ({expected})")
    if (
        not port_text.isascii()
        or not port_text.isdigit()
        or not min_port <= int(port_text) <= MAX_PORT
    ):
        raise ValueError(
            f"invalid port {quote(port_text)} in {quote(text)} (expected {min_port}-{MAX_PORT})"
        )
    port = int(port_text)
    if host in (ALL_INTERFACES, "localhost"):
        return host, port
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), port
        except ValueError:
            raise ValueError(f"invalid IPv6 address {quote(host)} in {quote(text)}") from None
    try:
        return str(ipaddress.IPv4Address(host)), port
    except ValueError:
        pass
    if ":" in host:
        raise ValueError(f"IPv6 address in {quote(text)} must be in brackets, e.g. [::1]:25")
    # SECURITY: host names other than localhost are refused. A name can resolve to an address
    # the operator did not mean to expose (or to send mail to), and resolution at bind or
    # connect time depends on DNS.
    raise ValueError(f"invalid address {quote(text)} ({expected}; host names are not accepted)")


def parse_address(text: str) -> tuple[str, int]:
    """Parse a listen address: ``"127.0.0.1:2525"``, ``"[::1]:2525"``, ``"*:25"``.

    Args:
        text: ``host:port``. The host is an IPv4 literal, a bracketed IPv6 literal,
            ``localhost``, or ``*`` for all interfaces. Port 0 asks for any free port.

    Returns:
        ``(host, port)`` with IPv6 hosts unbracketed and in compressed form.

    Raises:
        ValueError: The text is not of that form.
    """
    return _parse_host_port(text, _LISTEN_FORMS, 0)


def parse_server_address(text: str) -> tuple[str, int]:
    """Parse the address of a server to connect to: ``"127.0.0.1:24"``, ``"[::1]:24"``.

    The syntax of `parse_address` without what only makes sense for listening: ``*`` and
    the unspecified addresses (``0.0.0.0``, ``[::]``) name no server, and port 0 none either.
    Host names other than ``localhost`` are refused here too, so the server postguard hands
    mail to never depends on DNS.

    Args:
        text: ``host:port``; the host an IPv4 literal, a bracketed IPv6 literal or
            ``localhost``, the port 1-65535.

    Returns:
        ``(host, port)`` with IPv6 hosts unbracketed and in compressed form.

    Raises:
        ValueError: The text is not of that form.
    """
    host, port = _parse_host_port(text, _SERVER_FORMS, 1)
    if host == ALL_INTERFACES or (
        host != "localhost" and ipaddress.ip_address(host).is_unspecified
    ):
        raise ValueError(
            f"invalid address {quote(text)} ({host} means all interfaces, not one server)"
        )
    return host, port


def is_loopback(host: str) -> bool:
    """Tell whether a host from `parse_server_address` is this machine (127/8, ::1, localhost).

    IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) count by their IPv4 address.
    """
    if host == "localhost":
        return True
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def format_address(address: tuple[str, int]) -> str:
    """Format ``(host, port)`` as `parse_address` accepts it, bracketing IPv6 hosts."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _families(host: str) -> set[int]:
    if host in (ALL_INTERFACES, "localhost"):
        return {4, 6}
    return {ipaddress.ip_address(host).version}


def addresses_conflict(first: tuple[str, int], second: tuple[str, int]) -> bool:
    """Tell whether two listen addresses would fight over the same socket.

    Port 0 never conflicts (the kernel picks distinct ports). A wildcard (``*``, ``0.0.0.0``,
    ``::``) conflicts with every address of its family on the same port. ``0.0.0.0`` and
    ``::`` do not conflict: asyncio sets IPV6_V6ONLY on IPv6 listening sockets.
    """
    (host_a, port_a), (host_b, port_b) = first, second
    if port_a != port_b or port_a == 0:
        return False
    if host_a == host_b:
        return True
    for wildcard, other in ((host_a, host_b), (host_b, host_a)):
        if wildcard in (ALL_INTERFACES, "0.0.0.0", "::") and _families(wildcard) & _families(other):
            return True
    return False


def normalize_domain(text: str) -> str:
    """Check a local domain name and return it lowercased.

    Args:
        text: A DNS name in ASCII (internationalised names in their A-label ``xn--`` form).

    Returns:
        The name in lower case, without a trailing dot.

    Raises:
        ValueError: The name is not a valid host name.
    """
    name = text.lower().removesuffix(".")
    if not name.isascii():
        raise ValueError(f"invalid domain {quote(text)} (write it in A-label form, xn--...)")
    labels = name.split(".")
    if len(name) > MAX_DOMAIN_CHARS or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"invalid domain {quote(text)}")
    return name


def normalize_mailbox(text: str) -> str:
    """Check a local mailbox address ``local-part@domain`` and return it lowercased.

    Mailboxes are case-insensitive in postguard. RFC 5321 §2.4 lets a server treat the
    local-part as case-sensitive; we fold it so ``Alice@`` and ``alice@`` are one mailbox.
    Only dot-atom local-parts are accepted, not quoted strings.

    Args:
        text: The address.

    Returns:
        The address in lower case.

    Raises:
        ValueError: The address is malformed.
    """
    local, sep, domain = text.rpartition("@")
    if not sep or not local:
        raise ValueError(f"invalid mailbox {quote(text)} (expected local-part@domain)")
    if len(local.encode()) > MAX_LOCAL_PART_OCTETS or not all(
        _ATOM.fullmatch(atom) for atom in local.split(".")
    ):
        raise ValueError(f"invalid local-part {quote(local)} in {quote(text)}")
    try:
        domain = normalize_domain(domain)
    except ValueError as exc:
        raise ValueError(f"{exc} in {quote(text)}") from None
    return f"{local.lower()}@{domain}"


def normalize_server_name(text: str) -> str:
    """Check the name to verify in a server's TLS certificate: a domain or an IP address.

    Args:
        text: A DNS name (A-label form) or an IP literal (IPv6 without brackets).

    Returns:
        The domain lowercased without a trailing dot, or the IP address in compressed form.

    Raises:
        ValueError: Neither a valid domain nor an IP address.
    """
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return normalize_domain(text)
    except ValueError:
        raise ValueError(
            f"invalid server name {quote(text)} (expected a domain or an IP address)"
        ) from None
