"""Who an authenticated client may send as: only the addresses its account owns.

An account lists full addresses and domain wildcards (``*@example.org``).
MAIL FROM outside them is refused with 553 5.7.1 (RFC 4954 §6 leaves the
policy to us; Postfix's ``reject_sender_login_mismatch`` does the same). The
null sender ``<>`` is allowed: bounces and notifications use it.

Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..protocol.grammar import Address
from ..protocol.replies import R553_SENDER_NOT_OWNED
from .decision import Accept, Decision, Reject


def may_send_as(owned: Iterable[str], address: Address) -> bool:
    """Whether ``address`` matches one of the owned addresses or ``*@domain`` wildcards."""
    full = f"{address.local_part}@{address.domain}".lower()
    domain = address.domain.lower()
    for entry in owned:
        entry = entry.lower()
        if entry == full or (entry.startswith("*@") and entry[2:] == domain):
            return True
    return False


def check_sender(owned: Iterable[str], reverse_path: Address | None, account: str) -> Decision:
    """Accept MAIL FROM if the authenticated ``account`` owns ``reverse_path``."""
    if reverse_path is None or may_send_as(owned, reverse_path):
        return Accept()
    return Reject(R553_SENDER_NOT_OWNED, f"account {account} does not own {reverse_path}")
