"""A streaming look at the header section: is there a Message-ID?

Content streams to the spool chunk by chunk; this scanner watches the same
chunks until the blank line that ends the header section (RFC 5322 §2.1),
keeping at most :data:`MAX_HEADER_SCAN_OCTETS` in memory.
"""

from __future__ import annotations

import re

MAX_HEADER_SCAN_OCTETS = 256 * 1024  # headers beyond this are not scanned
_MESSAGE_ID = re.compile(rb"(?:^|\r\n)message-id[ \t]*:", re.IGNORECASE)


class HeaderScanner:
    """Finds whether the header section contains a Message-ID field."""

    __slots__ = ("_buf", "done", "has_message_id")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.done = False
        self.has_message_id = False

    def feed(self, data: bytes) -> None:
        """Look at the next piece of content."""
        if self.done:
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if self._buf.startswith(b"\r\n"):
            end = 0
        section = self._buf if end < 0 else self._buf[: end + 2]
        if _MESSAGE_ID.search(section):
            self.has_message_id = True
            self._finish()
        elif end >= 0 or len(self._buf) > MAX_HEADER_SCAN_OCTETS:
            self._finish()

    def _finish(self) -> None:
        self.done = True
        self._buf = bytearray()
