"""The trace header intake prepends: Received (RFC 5321 §4.4, RFC 3848 protocol names).

Example::

    Received: from client.example ([192.0.2.7])
    \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits))
    \tby mx.example.org (postguard) with ESMTPS id 0G5XK2M3Q1ABCDEF
    \tfor <user@example.org>; Sat, 28 Nov 2026 12:00:00 +0000
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

from ..server.envelope import Provenance


def with_protocol(*, esmtp: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The "with" keyword: SMTP/ESMTP(S)(A) of RFC 3848, UTF8SMTP(S)(A) of RFC 6531 §4.3."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def received_header(
    provenance: Provenance,
    *,
    hostname: str,
    queue_id: str,
    for_recipient: str | None,
    smtputf8: bool,
    timestamp: float,
    show_auth_identity: bool = False,
) -> bytes:
    """Render the Received header, folded, CRLF-terminated.

    ``for_recipient`` is given only for single-recipient messages, so one
    recipient's copy never lists the others (Postfix does the same).
    """
    client = (
        f"[{provenance.client_ip}]"
        if ":" not in provenance.client_ip
        else (f"[IPv6:{provenance.client_ip}]")
    )
    lines = [f"Received: from {provenance.ehlo_domain} ({client})"]
    if provenance.tls is not None:
        tls = provenance.tls
        lines.append(f"\t(using {tls.version} with cipher {tls.cipher} ({tls.bits} bits))")
    if show_auth_identity and provenance.auth_identity:
        lines.append(f"\t(authenticated sender: {provenance.auth_identity})")
    protocol = with_protocol(
        esmtp=provenance.esmtp,
        tls=provenance.tls is not None,
        authenticated=provenance.auth_identity is not None,
        smtputf8=smtputf8,
    )
    lines.append(f"\tby {hostname} (postguard) with {protocol} id {queue_id}")
    date = rfc5322_date(int(timestamp))
    if for_recipient:
        lines.append(f"\tfor <{for_recipient}>; {date}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{date}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


@lru_cache(maxsize=4)
def rfc5322_date(seconds: int) -> str:
    """RFC 5322 date-time of a whole second, UTC (cached: a busy second has many messages)."""
    return format_datetime(datetime.fromtimestamp(seconds, UTC))
