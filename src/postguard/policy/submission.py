"""Listener rules: what a client may do before TLS and before authentication.

* ``mx`` (port 25 style): everything is allowed in plaintext when TLS is
  opportunistic; with ``tls = "required"``, MAIL before STARTTLS is 530 5.7.0.
* ``submission`` (587): before TLS only EHLO, HELO, NOOP, RSET, QUIT and
  STARTTLS (530 5.7.0 "Must issue a STARTTLS command first"); MAIL before
  AUTH is 530 5.7.0 "Authentication required" (RFC 6409 §4.3, RFC 8314).
* ``submissions`` (465): TLS from the first byte; then as submission.

Must not: do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import commands as c
from ..protocol import replies
from ..protocol.replies import Reply

_ALWAYS_ALLOWED = (c.Ehlo, c.Helo, c.Noop, c.Rset, c.Quit, c.StartTls)


@dataclass(frozen=True, slots=True)
class ListenerRules:
    """The security rules of one listener.

    Attributes:
        name: "mx", "submission" or "submissions".
        implicit_tls: TLS from the first byte (RFC 8314).
        starttls_required: nothing but the always-allowed commands before TLS.
        mail_requires_tls: MAIL before TLS is refused (mx with tls = "required").
        auth_required: MAIL before successful AUTH is refused.
        auth_offered: AUTH is advertised and accepted on this listener.
        auth_requires_tls: AUTH only under TLS (538 5.7.11 otherwise).
    """

    name: str
    implicit_tls: bool = False
    starttls_required: bool = False
    mail_requires_tls: bool = False
    auth_required: bool = False
    auth_offered: bool = False
    auth_requires_tls: bool = True


def check_command(
    rules: ListenerRules, command: c.Command, *, tls_active: bool, authenticated: bool
) -> Reply | None:
    """The refusal for ``command`` under ``rules``, or None when it may proceed."""
    if isinstance(command, _ALWAYS_ALLOWED):
        return None
    if not tls_active and rules.starttls_required:
        return replies.R530_STARTTLS_FIRST
    if isinstance(command, c.MailFrom):
        if not tls_active and rules.mail_requires_tls:
            return replies.R530_STARTTLS_FIRST
        if rules.auth_required and not authenticated:
            return replies.R530_AUTH_REQUIRED
    return None
