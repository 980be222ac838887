"""ServerOptions: the small, frozen set of knobs the engine obeys (h2's H2Configuration).

The engine never reads configuration files; the server builds one of these
from the listener's settings and hands it over.
"""

from __future__ import annotations

from dataclasses import dataclass

from .receivers import MAX_AUTH_LINE_OCTETS

DEFAULT_MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: servers must accept at least 100


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """What the server engine offers and enforces.

    Attributes:
        max_message_size: SIZE limit in octets (RFC 1870); None for no limit.
        max_recipients: accepted RCPTs per transaction; more get 452 4.5.3.
        starttls: offer STARTTLS while the connection is not yet under TLS.
        require_tls: before TLS, refuse every command but EHLO, HELO, NOOP, RSET,
            QUIT and STARTTLS with 530 5.7.0 (RFC 3207 §4; submission listeners).
        implicit_tls: the connection is under TLS from the first byte (RFC 8314).
        auth: AUTH is offered on this connection (enables MAIL's AUTH= parameter).
        dsn: offer DSN (RFC 3461: RET, ENVID, NOTIFY, ORCPT).
        chunking: offer CHUNKING/BDAT (RFC 3030).
        binarymime: offer BINARYMIME (RFC 3030; needs chunking).
        smtputf8: offer SMTPUTF8 (RFC 6531).
        max_command_line: framing limit for any line (the AUTH limit); per-verb
            limits are checked after framing.
    """

    max_message_size: int | None = 50 * 1024 * 1024
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    starttls: bool = True
    require_tls: bool = False
    implicit_tls: bool = False
    auth: bool = False
    dsn: bool = True
    chunking: bool = True
    binarymime: bool = True
    smtputf8: bool = True
    max_command_line: int = MAX_AUTH_LINE_OCTETS
