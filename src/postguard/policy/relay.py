"""Who we accept mail for: local domains, mailboxes and aliases. Never an open relay.

An unauthenticated client may only reach local recipients: an unknown local
recipient is 550 5.1.1, any other domain 550 5.7.1. There is no setting that
turns this off; relaying for authenticated users arrives with AUTH and goes
through its own check.

Must not: do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..protocol import replies
from ..protocol.grammar import Address
from .decision import Accept, Decision, Reject


class LocalRecipients:
    """The local domains and the mailboxes (and aliases) within them."""

    def __init__(
        self, domains: Iterable[str], mailboxes: Iterable[str], aliases: Mapping[str, str]
    ) -> None:
        self.domains = tuple(d.lower() for d in domains)
        self._domain_set = frozenset(self.domains)
        self._mailboxes = frozenset(m.lower() for m in mailboxes)
        self._aliases = {k.lower(): v.lower() for k, v in aliases.items()}

    @property
    def primary_domain(self) -> str:
        return self.domains[0] if self.domains else "localhost"

    def is_local_domain(self, domain: str) -> bool:
        """Whether mail for ``domain`` is ours to keep."""
        return domain.lower() in self._domain_set

    def check_recipient(self, address: Address) -> Decision:
        """Resolve a RCPT TO address to a local mailbox, or refuse it."""
        domain = address.domain_key or self.primary_domain  # "<Postmaster>" has no domain
        if not self.is_local_domain(domain):
            return Reject(replies.R550_RELAY_DENIED, f"relay to {domain} denied")
        # RFC 5321 §2.4: the local part is case-sensitive in principle; like nearly
        # every server we treat it case-insensitively for lookup.
        key = f"{address.local_part.lower()}@{domain}"
        key = self._aliases.get(key, key)
        if key in self._mailboxes:
            return Accept(mailbox=key)
        return Reject(replies.R550_NO_SUCH_USER, f"no mailbox {key}")
