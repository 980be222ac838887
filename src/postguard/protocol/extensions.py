"""ESMTP service extensions: the EHLO keywords we offer, and parsing a peer's EHLO reply.

The server side builds its keyword list from :class:`ServerOptions` and the
connection's TLS state; the client side (``client.py``, later) parses a
server's EHLO response into a keyword → parameter mapping (aiosmtplib's
``parse_esmtp_extensions``).

Must not: do I/O.
"""

from __future__ import annotations

from .options import ServerOptions

PIPELINING = "PIPELINING"  # RFC 2920
SIZE = "SIZE"  # RFC 1870
EIGHTBITMIME = "8BITMIME"  # RFC 6152
SMTPUTF8 = "SMTPUTF8"  # RFC 6531
ENHANCEDSTATUSCODES = "ENHANCEDSTATUSCODES"  # RFC 2034
CHUNKING = "CHUNKING"  # RFC 3030
BINARYMIME = "BINARYMIME"  # RFC 3030
STARTTLS = "STARTTLS"  # RFC 3207
AUTH = "AUTH"  # RFC 4954
DSN = "DSN"  # RFC 3461


def ehlo_keywords(
    options: ServerOptions, *, tls_active: bool, auth_mechanisms: tuple[str, ...] = ()
) -> list[str]:
    """The keyword lines of our EHLO response, in a stable order.

    Args:
        options: what the engine enforces.
        tls_active: whether the connection is under TLS now (STARTTLS is then
            no longer offered, RFC 3207 §4.2).
        auth_mechanisms: SASL mechanisms to advertise, strongest first; empty
            means AUTH is not advertised.
    """
    keywords = [PIPELINING]
    size = options.max_message_size
    keywords.append(f"{SIZE} {size}" if size is not None else SIZE)
    keywords += [EIGHTBITMIME, ENHANCEDSTATUSCODES]
    if options.smtputf8:
        keywords.append(SMTPUTF8)
    if options.chunking:
        keywords.append(CHUNKING)
        if options.binarymime:
            keywords.append(BINARYMIME)
    if options.dsn:
        keywords.append(DSN)
    if options.starttls and not tls_active:
        keywords.append(STARTTLS)
    if auth_mechanisms:
        keywords.append(f"{AUTH} {' '.join(auth_mechanisms)}")
    return keywords


def parse_ehlo_response(lines: list[str]) -> dict[str, str]:
    """Parse the lines of an EHLO response (first line is the greeting).

    Returns:
        Upper-cased keyword → its parameters as one string ("" if none).
    """
    extensions: dict[str, str] = {}
    for line in lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions
