"""Skeleton of a policy check: copy to src/postguard/policy/<name>.py and fill in.

A check is a pure function over values: no I/O loops, no logging (the session logs the
decision's ``detail``). Anything that needs the network (DNS) is fetched by the caller and
passed in, so the check stays testable from tables.
"""

from __future__ import annotations

from postguard.policy.decision import Accept, Decision, Reject
from postguard.protocol import replies
from postguard.protocol.grammar import Address


def check_sender(reverse_path: Address | None, *, blocked_domains: frozenset[str]) -> Decision:
    """Refuse senders from blocked domains (example)."""
    if reverse_path is not None and reverse_path.domain_key in blocked_domains:
        return Reject(replies.R550_RELAY_DENIED, f"sender domain {reverse_path.domain_key} blocked")
    return Accept()
