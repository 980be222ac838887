"""SMTP replies: the :class:`Reply` value type and the one reply catalogue.

Every reply the server sends is named here, shared by the server and the tests.
Each carries an RFC 3463 enhanced status code (RFC 2034 ENHANCEDSTATUSCODES),
except where RFC 2034 §3 exempts it: the 220 greeting and the EHLO/HELO
response, and 354 (a 3xx has no enhanced class).

Rules: reply text is generic; details go to the log (never paths, class names,
configuration values or the matched rule on the wire).

Must not: do I/O, or know which state a reply is legal in (that is ``state.py``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets: 3 (code) + 1 (SP or -) + text + 2
# (CRLF) leaves 506 for the text, enhanced code included.
_MAX_REPLY_LINE_TEXT = 506


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply, possibly multi-line.

    Attributes:
        code: the three-digit reply code (RFC 5321 §4.2).
        enhanced: the RFC 3463 enhanced status code ("2.0.0"), or None where
            RFC 2034 exempts it.
        lines: the text lines; the enhanced code is prefixed to each one.
    """

    code: int
    enhanced: str | None
    lines: tuple[str, ...]

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if not self.lines:
            raise ValueError("a reply needs at least one line")
        if self.enhanced is not None and self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"enhanced code {self.enhanced} does not match class of {self.code}")
        for line in self.lines:
            if "\r" in line or "\n" in line or len(line) > _MAX_REPLY_LINE_TEXT:
                raise ValueError("reply text must be one short line without CR or LF")

    @classmethod
    def of(cls, code: int, enhanced: str | None, *lines: str) -> Reply:
        """Build a reply from its code, enhanced code and text lines."""
        return cls(code, enhanced, tuple(lines))

    @property
    def text(self) -> str:
        """The text of all lines, joined by a space (for logs)."""
        return " ".join(self.lines)

    @property
    def is_positive(self) -> bool:
        """True for 2xx and 3xx replies."""
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        """True for 4xx replies."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """True for 5xx replies."""
        return self.code >= 500

    def with_text(self, *lines: str) -> Reply:
        """The same code and enhanced code with other text."""
        return Reply(self.code, self.enhanced, tuple(lines))

    def render(self) -> bytes:
        """The reply as wire bytes, CRLF-terminated, multi-line per RFC 5321 §4.2.1."""
        prefix = f"{self.enhanced} " if self.enhanced else ""
        last = len(self.lines) - 1
        out = [
            f"{self.code}{'-' if i < last else ' '}{prefix}{line}\r\n"
            for i, line in enumerate(self.lines)
        ]
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        prefix = f"{self.enhanced} " if self.enhanced else ""
        return f"{self.code} {prefix}{self.text}"


def greeting(hostname: str) -> Reply:
    """The 220 service-ready greeting (RFC 5321 §4.3.1; no enhanced code, RFC 2034 §3)."""
    return Reply.of(220, None, f"{hostname} ESMTP postguard")


def ehlo_response(hostname: str, client_domain: str, keywords: list[str]) -> Reply:
    """The multi-line EHLO response: greeting line then one keyword per line (RFC 5321 §4.1.1.1)."""
    return Reply(250, None, (f"{hostname} greets {client_domain}", *keywords))


def helo_response(hostname: str) -> Reply:
    """The single-line HELO response."""
    return Reply.of(250, None, hostname)


def auth_challenge(data: bytes) -> Reply:
    """334 with a base64 challenge (RFC 4954 §4; no enhanced code for 3xx)."""
    return Reply.of(334, None, base64.b64encode(data).decode("ascii"))


def queued(queue_id: str) -> Reply:
    """250 after a message is on stable storage."""
    return Reply.of(250, "2.0.0", f"OK: queued as {queue_id}")


def chunk_received(octets: int) -> Reply:
    """250 after a non-final BDAT chunk (RFC 3030 §2)."""
    return Reply.of(250, "2.0.0", f"{octets} octets received")


# 2xx
R214_HELP = Reply.of(
    214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS"
)
R220_READY_TO_START_TLS = Reply.of(220, "2.0.0", "Ready to start TLS")
R221_BYE = Reply.of(221, "2.0.0", "Bye")
R235_AUTHENTICATED = Reply.of(235, "2.7.0", "Authentication successful")  # RFC 4954 §6
R250_OK = Reply.of(250, "2.0.0", "OK")
R250_SENDER_OK = Reply.of(250, "2.1.0", "Sender OK")
R250_RECIPIENT_OK = Reply.of(250, "2.1.5", "Recipient OK")
R250_RESET = Reply.of(250, "2.0.0", "Reset OK")
# RFC 5321 §3.5.3: 252 means "cannot verify, but will accept"; it discloses nothing.
R252_CANNOT_VRFY = Reply.of(252, "2.0.0", "Cannot VRFY user; try RCPT to attempt delivery")
# 3xx (no enhanced code class exists for 3xx)
R354_START_DATA = Reply.of(354, None, "End data with <CR><LF>.<CR><LF>")
# 4xx
R421_SHUTTING_DOWN = Reply.of(421, "4.3.2", "Service shutting down, try again later")
R421_TIMEOUT = Reply.of(421, "4.4.2", "Timeout, closing connection")
R421_TOO_MANY_CONNECTIONS = Reply.of(421, "4.7.0", "Too many connections, try again later")
R421_TOO_MANY_ERRORS = Reply.of(421, "4.7.0", "Too many errors, closing connection")
R451_LOCAL_ERROR = Reply.of(451, "4.3.0", "Local error in processing, try again later")
R452_INSUFFICIENT_STORAGE = Reply.of(452, "4.3.1", "Insufficient system storage")
R452_TOO_MANY_RECIPIENTS = Reply.of(452, "4.5.3", "Too many recipients")
R454_TLS_UNAVAILABLE = Reply.of(454, "4.7.0", "TLS not available due to temporary reason")
R454_AUTH_TEMPORARY = Reply.of(454, "4.7.0", "Temporary authentication failure")  # RFC 4954 §6
R421_AUTH_BLOCKED = Reply.of(421, "4.7.0", "Too many failed authentications, try again later")
# 5xx
R500_LINE_TOO_LONG = Reply.of(500, "5.5.0", "Line too long")
R500_UNRECOGNIZED = Reply.of(500, "5.5.2", "Command unrecognized")
# SECURITY: SMTP smuggling (CVE-2023-51764 family) and command injection both rely on
# line endings other than CRLF; RFC 5321 §2.3.8 forbids bare CR and bare LF.
R500_BARE_NEWLINE = Reply.of(500, "5.5.2", "Bare CR or LF not allowed, use CRLF")
R550_BARE_NEWLINE_IN_DATA = Reply.of(550, "5.6.0", "Message contains bare CR or LF, use CRLF")
R500_TEXT_LINE_TOO_LONG = Reply.of(500, "5.5.0", "Message contains a line longer than 998 octets")
R501_SYNTAX = Reply.of(501, "5.5.2", "Syntax error")
R501_NO_PARAMETERS = Reply.of(501, "5.5.4", "Syntax error, no parameters allowed")
R501_BAD_EHLO = Reply.of(501, "5.5.4", "Syntax error, EHLO/HELO requires a domain")
R501_BAD_SENDER = Reply.of(501, "5.1.7", "Bad sender address syntax")
R501_BAD_RECIPIENT = Reply.of(501, "5.1.3", "Bad recipient address syntax")
R501_BAD_PARAMETER = Reply.of(501, "5.5.4", "Invalid parameter syntax")
R501_AUTH_CANCELLED = Reply.of(501, "5.0.0", "Authentication cancelled")  # RFC 4954 §4
R501_BAD_BASE64 = Reply.of(501, "5.5.2", "Invalid base64 data")  # RFC 4954 §4
R500_AUTH_LINE_TOO_LONG = Reply.of(500, "5.5.6", "Authentication exchange line is too long")
R502_NOT_IMPLEMENTED = Reply.of(502, "5.5.1", "Command not implemented")
R503_BAD_SEQUENCE = Reply.of(503, "5.5.1", "Bad sequence of commands")
R503_EHLO_FIRST = Reply.of(503, "5.5.1", "Send EHLO or HELO first")
R503_NESTED_MAIL = Reply.of(503, "5.5.1", "Sender already specified")
R503_NEED_MAIL = Reply.of(503, "5.5.1", "Need MAIL command first")
R503_TLS_ALREADY_ACTIVE = Reply.of(503, "5.5.1", "TLS already active")
R503_BINARYMIME_NEEDS_BDAT = Reply.of(503, "5.5.1", "BODY=BINARYMIME requires BDAT")
R503_MIXED_DATA_AND_BDAT = Reply.of(503, "5.5.1", "DATA not allowed in a BDAT transaction")
R504_UNSUPPORTED_PARAMETER = Reply.of(504, "5.5.4", "Unsupported parameter value")
R504_UNKNOWN_MECHANISM = Reply.of(504, "5.5.4", "Unrecognized authentication type")
R503_ALREADY_AUTHENTICATED = Reply.of(503, "5.5.1", "Already authenticated")
R534_MECHANISM_TOO_WEAK = Reply.of(534, "5.7.9", "Authentication mechanism is too weak")
R535_AUTH_FAILED = Reply.of(535, "5.7.8", "Authentication credentials invalid")
R530_STARTTLS_FIRST = Reply.of(530, "5.7.0", "Must issue a STARTTLS command first")
R530_AUTH_REQUIRED = Reply.of(530, "5.7.0", "Authentication required")
R538_ENCRYPTION_REQUIRED = Reply.of(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
R550_NO_SUCH_USER = Reply.of(550, "5.1.1", "No such user here")
R550_RELAY_DENIED = Reply.of(550, "5.7.1", "Relay access denied")
R552_TOO_BIG = Reply.of(552, "5.3.4", "Message size exceeds fixed maximum message size")
R553_NON_ASCII_ADDRESS = Reply.of(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
R553_SENDER_NOT_OWNED = Reply.of(553, "5.7.1", "Sender address not owned by authenticated user")
R554_NO_VALID_RECIPIENTS = Reply.of(554, "5.5.1", "No valid recipients")
R555_UNRECOGNIZED_PARAMETER = Reply.of(555, "5.5.4", "Unsupported MAIL/RCPT parameter")
