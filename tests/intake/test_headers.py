"""HeaderScanner as a table: content in chunks → which of Message-ID and Date it saw.

Each case is fed whole and then split at every offset into two chunks, so a field name
cut across the boundary between two reads is found too.
"""

from __future__ import annotations

import pytest

from postguard.intake.headers import MAX_HEADER_SCAN_OCTETS, HeaderScanner

CASES = [
    # (content, has_message_id, has_date)
    (b"Subject: x\r\n\r\nbody\r\n", False, False),
    (b"Message-ID: <a@b>\r\nSubject: x\r\n\r\n", True, False),
    (b"Subject: x\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n", False, True),
    (b"DATE:x\r\nmessage-id\t: <a@b>\r\n\r\n", True, True),
    # A continuation line is part of the field before it, not a field of its own.
    (b"Subject: x\r\n Date: folded\r\n\tMessage-ID: folded\r\n\r\n", False, False),
    # Other fields whose names end in "date" or "message-id" do not count.
    (b"Delivery-Date: x\r\nResent-Message-ID: <a@b>\r\n\r\n", False, False),
    # In the body, after the blank line, nothing counts.
    (b"Subject: x\r\n\r\nDate: y\r\nMessage-ID: <a@b>\r\n", False, False),
    # No header section at all: the content starts with the blank line.
    (b"\r\nDate: y\r\n", False, False),
]


def scan(*chunks: bytes) -> HeaderScanner:
    scanner = HeaderScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner


@pytest.mark.parametrize(("content", "message_id", "date"), CASES)
def test_fields_are_found_whole_and_across_every_split(
    content: bytes, message_id: bool, date: bool
) -> None:
    for cut in range(len(content) + 1):
        scanner = scan(content[:cut], content[cut:])
        assert (scanner.has_message_id, scanner.has_date) == (message_id, date), cut


def test_scanning_stops_at_the_end_of_the_header_section() -> None:
    scanner = scan(b"Subject: x\r\n\r\n")
    assert scanner.done
    scanner.feed(b"Date: y\r\n")
    assert not scanner.has_date


def test_an_endless_header_section_is_given_up_after_the_limit() -> None:
    scanner = scan(b"X-Filler: " + b"a" * MAX_HEADER_SCAN_OCTETS + b"\r\n")
    assert scanner.done
    scanner.feed(b"Date: y\r\n\r\n")
    assert not scanner.has_date
