"""A streaming look at the header section: which of Message-ID and Date are there?

Content streams to the spool chunk by chunk; this scanner watches the same
chunks until the blank line that ends the header section (RFC 5322 §2.1),
keeping at most :data:`MAX_HEADER_SCAN_OCTETS` in memory. Intake adds the fields
that an originating submission left out (RFC 6409 §8.2, §8.3; RFC 5321 §6.4).
"""

from __future__ import annotations

import re

MAX_HEADER_SCAN_OCTETS = 256 * 1024  # headers beyond this are not scanned
# A field name at the start of a line (not a continuation line), then optional WSP and ":".
_FIELD = re.compile(rb"(?:^|\r\n)(message-id|date)[ \t]*:", re.IGNORECASE)


class HeaderScanner:
    """Finds whether the header section contains a Message-ID field and a Date field."""

    __slots__ = ("_buf", "done", "has_date", "has_message_id")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.done = False
        self.has_message_id = False
        self.has_date = False

    def feed(self, data: bytes) -> None:
        """Look at the next piece of content."""
        if self.done:
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if self._buf.startswith(b"\r\n"):
            end = 0
        section = self._buf if end < 0 else self._buf[: end + 2]
        for match in _FIELD.finditer(section):
            if match.group(1).lower() == b"date":
                self.has_date = True
            else:
                self.has_message_id = True
        complete = self.has_message_id and self.has_date
        if complete or end >= 0 or len(self._buf) > MAX_HEADER_SCAN_OCTETS:
            self._finish()

    def _finish(self) -> None:
        self.done = True
        self._buf = bytearray()
