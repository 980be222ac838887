"""Delivery status notifications (RFC 3464) for failed, delayed and (on request) delivered mail.

A DSN is a ``multipart/report; report-type=delivery-status`` message with
three parts: a human-readable explanation, a ``message/delivery-status`` part
(per-message fields, then one block per recipient, RFC 3464 §2.2-2.3), and
the original message: in full (``message/rfc822``) when the sender asked for
RET=FULL, otherwise its header only (``text/rfc822-headers``) — RFC 3461 §4.3
leaves the default to us, and headers only leaks less.

Who gets one (RFC 3461 §4.1, RFC 5321 §6.1):

* never for a message with the null sender ``<>`` (that is how bounce loops
  are prevented);
* for a failure, unless the recipient said NOTIFY=NEVER or a NOTIFY list
  without FAILURE;
* for a delay, only when NOTIFY includes DELAY (or no NOTIFY was given);
* for a success, only when NOTIFY includes SUCCESS.

Must not: send anything; the queue commits the DSN as a new message from
``<>`` to the original sender.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

MAX_RETURNED_HEADER_OCTETS = 64 * 1024  # header block returned with RET=HDRS
MAX_RETURNED_MESSAGE_OCTETS = 10 * 1024 * 1024  # RET=FULL beyond this returns headers only


class Action(enum.Enum):
    """RFC 3464 §2.3.3 Action field values we send."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One recipient's block in a DSN.

    Attributes:
        final_recipient: the address delivery was attempted to.
        original_recipient: the ORCPT value ("rfc822;user@example.org"), if given.
        action: failed, delayed or delivered.
        status: the RFC 3463 code ("5.1.1").
        diagnostic: the remote or local reply text ("550 5.1.1 No such user").
        last_attempt: when the last attempt was made (epoch seconds).
        will_retry_until: for a delay, when we will give up (epoch seconds).
    """

    final_recipient: str
    action: Action
    status: str
    diagnostic: str
    last_attempt: float
    original_recipient: str | None = None
    will_retry_until: float | None = None


def wants_report(notify: Sequence[str], action: Action) -> bool:
    """Whether a recipient's NOTIFY (RFC 3461 §4.1) asks for a report of ``action``."""
    values = {v.upper() for v in notify}
    if "NEVER" in values:
        return False
    if not values:  # RFC 3461 §4.1: absent NOTIFY means FAILURE (and DELAY at our option)
        return action in (Action.FAILED, Action.DELAYED)
    wanted = {Action.FAILED: "FAILURE", Action.DELAYED: "DELAY", Action.DELIVERED: "SUCCESS"}
    return wanted[action] in values


def status_from_reply(reply: str) -> str:
    """The enhanced status code in a reply ("550 5.1.1 ..." → "5.1.1"); a class default else."""
    parts = reply.split()
    if len(parts) >= 2 and parts[1].count(".") == 2 and parts[1][0] in "245":
        return parts[1]
    return "5.0.0" if reply[:1] == "5" else "4.0.0" if reply[:1] == "4" else "2.0.0"


def _header_block(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    header = original if end < 0 else original[: end + 2]
    return header[:MAX_RETURNED_HEADER_OCTETS]


def _date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, UTC))


def build_dsn(
    *,
    reporting_mta: str,
    original_sender: str,
    original: bytes,
    arrival_date: float,
    reports: Sequence[RecipientReport],
    ret_full: bool,
    envid: str | None,
    now: float,
    boundary: str,
) -> bytes:
    """Render a DSN message (CRLF line endings) ready to be queued.

    Args:
        reporting_mta: our host name (Reporting-MTA: dns; ...).
        original_sender: the original reverse path (the DSN's To:).
        original: the original message as delivered (prepended headers + body).
        arrival_date: when we received the original.
        reports: one block per recipient; all of one DSN share an action class.
        ret_full: RET=FULL was requested.
        envid: the ENVID parameter, if any (RFC 3461 §4.4).
        now: the DSN's Date.
        boundary: the MIME boundary (callers pass a random token).

    Raises:
        ValueError: no reports, or the boundary occurs in the original.
    """
    if not reports:
        raise ValueError("a DSN needs at least one recipient report")
    if boundary.encode() in original:
        raise ValueError("boundary occurs in the original message")
    action = reports[0].action
    subject = {
        Action.FAILED: "Undelivered Mail Returned to Sender",
        Action.DELAYED: "Delayed Mail (still being retried)",
        Action.DELIVERED: "Successful Mail Delivery Report",
    }[action]
    explanation = {
        Action.FAILED: "Your message could not be delivered to the following recipients:",
        Action.DELAYED: "Your message has not been delivered yet; we will keep trying for:",
        Action.DELIVERED: "Your message was delivered to the following recipients:",
    }[action]
    human = [
        f"This is the mail system at {reporting_mta}.",
        "",
        explanation,
        "",
        *(f"  <{r.final_recipient}>: {r.diagnostic}" for r in reports),
        "",
    ]
    status = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:
        status.append(f"Original-Envelope-Id: {envid}")
    status.append(f"Arrival-Date: {_date(arrival_date)}")
    for r in reports:
        status.append("")
        if r.original_recipient:
            status.append(f"Original-Recipient: {r.original_recipient}")
        status += [
            f"Final-Recipient: rfc822; {r.final_recipient}",
            f"Action: {r.action.value}",
            f"Status: {r.status}",
            f"Diagnostic-Code: smtp; {r.diagnostic}",
            f"Last-Attempt-Date: {_date(r.last_attempt)}",
        ]
        if r.will_retry_until is not None:
            status.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
    full = ret_full and len(original) <= MAX_RETURNED_MESSAGE_OCTETS
    returned_type = "message/rfc822" if full else "text/rfc822-headers"
    returned = original if full else _header_block(original)
    if not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{original_sender}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5: no auto-replies to this
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Description: Notification",
        "",
        *human,
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        *status,
        "",
        f"--{boundary}",
        f"Content-Type: {returned_type}",
        "Content-Description: " + ("Undelivered Message" if full else "Message Headers"),
        "",
        "",
    ]
    tail = f"\r\n--{boundary}--\r\n".encode()
    return "\r\n".join(head).encode("utf-8") + returned + tail
