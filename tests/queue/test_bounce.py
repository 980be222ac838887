"""DSN construction (RFC 3464): parse the result with the email package and check every field."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from postguard.queue.bounce import (
    Action,
    RecipientReport,
    build_dsn,
    status_from_reply,
    wants_report,
)

ORIGINAL = (
    b"Received: from client ([127.0.0.1]) by mx.test; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Subject: hello\r\nMessage-ID: <orig@test>\r\n\r\nThe body line.\r\n"
)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def failed_dsn(*, ret_full: bool = False, envid: str | None = "ENV123") -> EmailMessage:
    raw = build_dsn(
        reporting_mta="mx.test",
        original_sender="alice@example.org",
        original=ORIGINAL,
        arrival_date=1_790_000_000.0,
        reports=[
            RecipientReport(
                final_recipient="bob@localhost",
                original_recipient="rfc822;Bob@localhost",
                action=Action.FAILED,
                status="5.1.1",
                diagnostic="550 5.1.1 No such user here",
                last_attempt=1_790_000_100.0,
            ),
            RecipientReport(
                final_recipient="carol@localhost",
                action=Action.FAILED,
                status="4.4.7",
                diagnostic="451 4.3.0 expired after 5 days",
                last_attempt=1_790_000_200.0,
            ),
        ],
        ret_full=ret_full,
        envid=envid,
        now=1_790_000_300.0,
        boundary="BOUNDARY-xyz",
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    return parse(raw)


def test_failure_dsn_is_a_multipart_report_with_three_parts() -> None:
    msg = failed_dsn()
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in msg.iter_parts()] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.test>"
    assert msg["To"] == "alice@example.org"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"


def test_delivery_status_fields_per_message_and_per_recipient() -> None:
    status = list(failed_dsn().iter_parts())[1]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    per_message, bob, carol = blocks
    assert per_message["Reporting-MTA"] == "dns; mx.test"
    assert per_message["Original-Envelope-Id"] == "ENV123"
    assert per_message["Arrival-Date"] == "Mon, 21 Sep 2026 14:13:20 +0000"
    assert bob["Original-Recipient"] == "rfc822;Bob@localhost"
    assert bob["Final-Recipient"] == "rfc822; bob@localhost"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user here"
    assert "Last-Attempt-Date" in bob
    assert carol["Original-Recipient"] is None
    assert carol["Status"] == "4.4.7"


def test_headers_only_are_returned_by_default() -> None:
    returned = list(failed_dsn().iter_parts())[2]
    text = returned.get_content()
    assert "Subject: hello" in text
    assert "The body line." not in text


def test_full_message_is_returned_with_ret_full() -> None:
    returned = list(failed_dsn(ret_full=True).iter_parts())[2]
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_content()
    assert inner["Subject"] == "hello"
    assert "The body line." in inner.get_content()


def test_no_envid_means_no_original_envelope_id() -> None:
    per_message = list(failed_dsn(envid=None).iter_parts())[1].get_payload()[0]
    assert per_message["Original-Envelope-Id"] is None


def test_delay_dsn_says_when_we_give_up() -> None:
    raw = build_dsn(
        reporting_mta="mx.test",
        original_sender="a@example.org",
        original=ORIGINAL,
        arrival_date=0.0,
        ret_full=False,
        envid=None,
        now=100.0,
        boundary="B0",
        reports=[
            RecipientReport(
                "b@localhost",
                Action.DELAYED,
                "4.3.0",
                "451 4.3.0 later",
                last_attempt=50.0,
                will_retry_until=432000.0,
            )
        ],
    )
    msg = parse(raw)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    block = list(msg.iter_parts())[1].get_payload()[1]
    assert block["Action"] == "delayed"
    assert block["Will-Retry-Until"].startswith("Tue, 06 Jan 1970")


@pytest.mark.parametrize(
    ("notify", "action", "expected"),
    [
        ((), Action.FAILED, True),
        ((), Action.DELAYED, True),
        ((), Action.DELIVERED, False),
        (("NEVER",), Action.FAILED, False),
        (("SUCCESS",), Action.FAILED, False),
        (("SUCCESS",), Action.DELIVERED, True),
        (("FAILURE", "DELAY"), Action.DELAYED, True),
        (("failure",), Action.FAILED, True),
    ],
)
def test_notify_decides_who_gets_a_report(
    notify: tuple[str, ...], action: Action, expected: bool
) -> None:
    assert wants_report(notify, action) is expected


@pytest.mark.parametrize(
    ("reply", "status"),
    [("550 5.1.1 No such user", "5.1.1"), ("451 local error", "4.0.0"), ("554 oops", "5.0.0")],
)
def test_status_comes_from_the_enhanced_code(reply: str, status: str) -> None:
    assert status_from_reply(reply) == status


def test_boundary_inside_the_original_is_refused() -> None:
    with pytest.raises(ValueError):
        build_dsn(
            reporting_mta="mx.test",
            original_sender="a@b",
            original=b"--B0\r\n",
            arrival_date=0,
            reports=[RecipientReport("b@c", Action.FAILED, "5.0.0", "550", 0.0)],
            ret_full=True,
            envid=None,
            now=0,
            boundary="B0",
        )
