"""Test helpers: an in-memory verifier and a loop that runs a client half against a server half.

:class:`Verifier` plays the caller's part (the account store and the token validator) for
every ``Need...`` step; :func:`run_exchange` plays the session, recording the transcript the
way it would go over the wire (``C:`` client data, ``S:`` challenge data, decoded).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from postguard.sasl import (
    Challenge,
    CramLookup,
    Failure,
    NeedCramSecret,
    NeedPassword,
    NeedScramCredentials,
    NeedTokenValidation,
    PasswordVerdict,
    Resumption,
    SaslClientMechanism,
    SaslServerMechanism,
    ScramCredentials,
    ScramLookup,
    Step,
    Success,
    TokenVerdict,
    scram_keys,
)

SALT = bytes(range(16))
ITERATIONS = 4096
MOCK_SEED = b"0123456789abcdef-test-mock-seed"
EXPORTER = bytes(range(32))  # stands in for a tls-exporter value (RFC 9266: 32 octets)


@dataclass
class Verifier:
    """Accounts ``name → password`` and tokens ``token → account``; answers Need... steps."""

    passwords: dict[str, str] = field(default_factory=lambda: {"alice": "correct horse"})
    tokens: dict[str, str] = field(default_factory=lambda: {"ya29.good-token": "alice"})
    _scram: dict[str, ScramCredentials] = field(default_factory=dict)

    def answer(self, step: Step) -> Resumption:
        if isinstance(step, NeedPassword):
            known = self.passwords.get(step.authcid)
            ok = known is not None and hmac.compare_digest(known.encode(), step.password.encode())
            return PasswordVerdict(step.authcid if ok else None)
        if isinstance(step, NeedScramCredentials):
            return ScramLookup(self.scram_credentials(step.username))
        if isinstance(step, NeedCramSecret):
            secret = self.passwords.get(step.username)
            return CramLookup(secret, step.username if secret is not None else None)
        if isinstance(step, NeedTokenValidation):
            account = self.tokens.get(step.token)
            if account is None or (step.authzid is not None and step.authzid != account):
                return TokenVerdict(None)
            return TokenVerdict(account)
        raise AssertionError(f"not a Need step: {step!r}")

    def scram_credentials(self, username: str) -> ScramCredentials | None:
        if username not in self.passwords:
            return None
        if username not in self._scram:
            stored, server = scram_keys(self.passwords[username], SALT, ITERATIONS)
            self._scram[username] = ScramCredentials(SALT, ITERATIONS, stored, server, username)
        return self._scram[username]


def run_exchange(
    client: SaslClientMechanism,
    server: SaslServerMechanism,
    verifier: Verifier,
    *,
    send_initial: bool = True,
) -> tuple[Success | Failure, list[tuple[str, bytes]]]:
    """Drive both halves to the end, as the SMTP session and the client library would."""
    transcript: list[tuple[str, bytes]] = []
    initial = client.initial_response() if send_initial else None
    if initial is not None:
        transcript.append(("C", initial))
    step = server.start(initial)
    for _ in range(10):
        if isinstance(step, Success | Failure):
            if isinstance(step, Success):
                client.verify_final()
            return step, transcript
        if isinstance(step, Challenge):
            transcript.append(("S", step.data))
            answer = client.respond(step.data)
            transcript.append(("C", answer))
            step = server.respond(answer)
        else:
            step = server.resume(verifier.answer(step))
    raise AssertionError("exchange did not end")


def drive_server(server: SaslServerMechanism, verifier: Verifier, *messages: bytes | None) -> Step:
    """Feed a server the given client messages (first to start), answering Need... steps."""
    step = server.start(messages[0])
    for message in messages[1:]:
        while not isinstance(step, Challenge | Success | Failure):
            step = server.resume(verifier.answer(step))
        assert isinstance(step, Challenge), step
        assert message is not None
        step = server.respond(message)
    while not isinstance(step, Challenge | Success | Failure):
        step = server.resume(verifier.answer(step))
    return step
