"""PLAIN (RFC 4616): the password in one message, for use under TLS only.

    message = [authzid] NUL authcid NUL passwd        (RFC 4616 §2, UTF-8)

Server: parses the message (initial response, or the answer to an empty challenge when AUTH
came without one, RFC 4954 §4) and asks the caller to verify the password
(:class:`~postguard.sasl.base.NeedPassword`). An authzid is accepted only when empty or equal
to the authcid: postguard has no proxy-authorisation policy, so acting for someone else is
``AUTHZ_DENIED`` (RFC 4616 §4's "Ursel"/"Kurt" example). Each field is limited to 255 octets,
the floor RFC 4616 §2 makes servers accept.

Client: builds the message; sends it as the initial response or after the empty challenge.

Must not: do I/O, or compare passwords (the account store does, with argon2).
"""

from __future__ import annotations

from .base import (
    Challenge,
    Failure,
    FailureKind,
    NeedPassword,
    Resumption,
    SaslAuthenticationError,
    Step,
)
from .mechanism import (
    ClientMechanismBase,
    MalformedInput,
    ServerMechanismBase,
    check_client_field,
    decode_utf8,
    settle_password,
)

PLAIN = "PLAIN"


class PlainServer(ServerMechanismBase):
    """Server half of PLAIN."""

    name = PLAIN

    def _on_start(self, initial_response: bytes | None) -> Step:
        if initial_response is None:
            return Challenge(b"")  # RFC 4616 §2: the client speaks first; invite it.
        return self._parse(initial_response)

    def _on_respond(self, data: bytes) -> Step:
        return self._parse(data)

    def _on_resume(self, result: Resumption) -> Step:
        return settle_password(result)

    @staticmethod
    def _parse(message: bytes) -> Step:
        fields = message.split(b"\x00")
        if len(fields) != 3:
            raise MalformedInput("PLAIN message needs exactly two NULs")
        raw_authzid, raw_authcid, raw_passwd = fields
        authzid = decode_utf8(raw_authzid) if raw_authzid else None
        authcid = decode_utf8(raw_authcid)
        passwd = decode_utf8(raw_passwd, secret=True)
        # SECURITY: no proxy authorisation; acting as another identity is refused outright.
        if authzid is not None and authzid != authcid:
            return Failure("authzid differs from authcid", FailureKind.AUTHZ_DENIED)
        return NeedPassword(authcid, authzid, passwd)


class PlainClient(ClientMechanismBase):
    """Client half of PLAIN.

    Raises:
        ValueError: from the constructor, when a field is empty, over 255 octets, or holds a
            character PLAIN cannot carry (NUL; controls in identities).
    """

    name = PLAIN

    def __init__(self, username: str, password: str, *, authzid: str | None = None) -> None:
        super().__init__()
        self._message = b"\x00".join(
            (
                check_client_field(authzid, "authzid").encode() if authzid else b"",
                check_client_field(username, "username").encode(),
                check_client_field(password, "password", secret=True).encode(),
            )
        )

    def initial_response(self) -> bytes:
        """The whole PLAIN message."""
        self._mark_initial()
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        """Answer the empty challenge when no initial response was sent."""
        if self._begin_respond(challenge) and challenge == b"":
            return self._message
        raise SaslAuthenticationError("PLAIN: unexpected challenge from server")
