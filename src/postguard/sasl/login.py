"""LOGIN (draft-murchison-sasl-login): user name and password, one challenge each.

Not an RFC, but what Outlook and many devices speak. The challenges are the exact strings
``Username:`` and ``Password:`` (base64 ``VXNlcm5hbWU6`` / ``UGFzc3dvcmQ6``), as Postfix and
Exchange send them: some clients match on them. An initial response on ``AUTH LOGIN <b64>`` is
taken as the user name, as Dovecot and Cyrus do (Outlook sends one). Fields follow PLAIN's
rules: UTF-8, 1..255 octets, no controls in the user name, no NUL in the password.

Must not: do I/O, or compare passwords (the account store does).
"""

from __future__ import annotations

from .base import Challenge, NeedPassword, Resumption, SaslAuthenticationError, Step
from .mechanism import (
    ClientMechanismBase,
    ServerMechanismBase,
    check_client_field,
    decode_utf8,
    settle_password,
)

LOGIN = "LOGIN"
USERNAME_CHALLENGE = b"Username:"
PASSWORD_CHALLENGE = b"Password:"


class LoginServer(ServerMechanismBase):
    """Server half of LOGIN."""

    name = LOGIN

    def __init__(self) -> None:
        super().__init__()
        self._username: str | None = None

    def _on_start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Challenge(USERNAME_CHALLENGE)
        self._username = decode_utf8(initial_response)
        return Challenge(PASSWORD_CHALLENGE)

    def _on_respond(self, data: bytes) -> Step:
        if self._username is None:
            self._username = decode_utf8(data)
            return Challenge(PASSWORD_CHALLENGE)
        return NeedPassword(self._username, None, decode_utf8(data, secret=True))

    def _on_resume(self, result: Resumption) -> Step:
        return settle_password(result)


class LoginClient(ClientMechanismBase):
    """Client half of LOGIN: answers the first challenge with the name, the second with the
    password, whatever their text (servers differ: "Username:", "User Name", ...).

    Raises:
        ValueError: from the constructor, for a field LOGIN cannot carry.
    """

    name = LOGIN

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self._answers = [
            check_client_field(username, "username").encode(),
            check_client_field(password, "password", secret=True).encode(),
        ]

    def initial_response(self) -> bytes | None:
        """None: LOGIN has no initial response; the server asks first."""
        self._mark_initial()
        return None

    def respond(self, challenge: bytes) -> bytes:
        """The user name, then the password."""
        self._begin_respond(challenge)
        if not self._answers:
            raise SaslAuthenticationError("LOGIN: more than two challenges")
        return self._answers.pop(0)
