"""SMTP AUTH (RFC 4954) for a session: drives a SASL mechanism against the account store.

The engine has parsed ``AUTH`` and decoded every response; the mechanisms in
``sasl/`` are pure state machines that ask for what they need (a password
check, SCRAM keys, a CRAM secret, a token validation). This module answers
those requests with I/O (argon2 in a thread, an HTTPS token check), applies
the brute-force throttle, and turns the outcome into replies:

=====================================  ===========
outcome                                reply
=====================================  ===========
challenge                              334 <base64>
success                                235 2.7.0
wrong credentials / identity           535 5.7.8 (after the throttle's delay)
malformed exchange                     501 5.5.2
store or token service down            454 4.7.0
too many failures (IP or account)      421 4.7.0, connection closed
mechanism not offered                  504 5.5.4
=====================================  ===========

Unknown accounts and wrong passwords take the same path and the same work
(dummy argon2 hash, SCRAM mock credentials), so replies do not tell them apart.

Must not: log a password, token or SASL payload (only mechanism, account
name tried, client IP and outcome).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..accounts.oauth import TokenServiceUnavailable, TokenValidator
from ..accounts.store import CredentialStore, StoreUnavailable
from ..observability.events import AuthEvent
from ..observability.logging import log_event
from ..policy.auth_throttle import AuthThrottle
from ..protocol import replies
from ..protocol.replies import Reply
from ..sasl import (
    OAUTHBEARER,
    SERVER_MECHANISMS,
    XOAUTH2,
    Challenge,
    CramLookup,
    Failure,
    FailureKind,
    NeedCramSecret,
    NeedPassword,
    NeedScramCredentials,
    NeedTokenValidation,
    PasswordVerdict,
    Resumption,
    SaslServerContext,
    SaslServerMechanism,
    ScramCredentials,
    ScramLookup,
    Step,
    Success,
    TokenVerdict,
    VerifierUnavailable,
    advertised_mechanisms,
    saslprep,
)

_TOKEN_MECHANISMS = frozenset({OAUTHBEARER, XOAUTH2})


@dataclass
class AuthSettings:
    """What every session's AUTH shares (built once per server)."""

    hostname: str
    enabled: tuple[str, ...]
    store: CredentialStore
    throttle: AuthThrottle
    mock_seed: bytes = field(repr=False)
    validator: TokenValidator | None = None
    scram_iterations: int = 4096
    clock: Callable[[], float] = time.monotonic

    def offered(self) -> tuple[str, ...]:
        """Mechanisms to advertise, strongest first: enabled and servable by the store."""
        available = set(self.store.mechanisms_available())
        if self.validator is not None:
            available |= _TOKEN_MECHANISMS
        names = [m for m in self.enabled if m in available or m == "SCRAM-SHA-256-PLUS"]
        # Python's ssl cannot export keying material (no tls-exporter), so -PLUS is
        # never offered; see sasl/scram.py.
        return advertised_mechanisms(
            [m for m in names if m != "SCRAM-SHA-256-PLUS"], channel_binding_available=False
        )


@dataclass
class AuthResult:
    """The reply for one AUTH step, and what it means for the session."""

    reply: Reply
    account: str | None = None  # set on success
    close: bool = False  # 421: the connection must end


class AuthExchange:
    """One AUTH command's exchange (a fresh mechanism per AUTH, RFC 4954 §4)."""

    def __init__(
        self, settings: AuthSettings, mechanism: str, *, client_ip: str, session_id: str
    ) -> None:
        self.settings = settings
        self.mechanism_name = mechanism
        self.client_ip = client_ip
        self.session_id = session_id
        self.username: str | None = None
        context = SaslServerContext(
            hostname=settings.hostname,
            nonce=secrets.token_urlsafe(18),
            timestamp=int(time.time()),
            mock_seed=settings.mock_seed,
            mock_iterations=settings.scram_iterations,
        )
        self.mechanism: SaslServerMechanism = SERVER_MECHANISMS[mechanism](context)

    async def start(self, initial_response: bytes | None) -> AuthResult:
        return await self._drive(self.mechanism.start(initial_response))

    async def respond(self, data: bytes) -> AuthResult:
        return await self._drive(self.mechanism.respond(data))

    async def _drive(self, step: Step) -> AuthResult:
        while True:
            if isinstance(step, Challenge):
                return AuthResult(replies.auth_challenge(step.data))
            if isinstance(step, Success):
                return await self._succeeded(step.account)
            if isinstance(step, Failure):
                return await self._failed(step)
            step = self.mechanism.resume(await self._answer(step))

    async def _answer(self, step: Step) -> Resumption:
        store = self.settings.store
        try:
            if isinstance(step, NeedPassword):
                self.username = step.authcid
                account = await store.verify_password(step.authcid, saslprep(step.password))
                return PasswordVerdict(account.name if account is not None else None)
            if isinstance(step, NeedScramCredentials):
                self.username = step.username
                found = store.get(step.username)
                if found is None or found.disabled or found.scram is None:
                    return ScramLookup(None)
                keys = found.scram
                return ScramLookup(
                    ScramCredentials(
                        keys.salt, keys.iterations, keys.stored_key, keys.server_key, found.name
                    )
                )
            if isinstance(step, NeedCramSecret):
                self.username = step.username
                found = store.get(step.username)
                if found is None or found.disabled or found.cram_secret is None:
                    return CramLookup(None, None)
                return CramLookup(found.cram_secret, found.name)
            if isinstance(step, NeedTokenValidation):
                return await self._validate_token(step)
        except StoreUnavailable as exc:
            return VerifierUnavailable(f"credential store: {exc}")
        raise AssertionError(f"unexpected SASL step {type(step).__name__}")

    async def _validate_token(self, step: NeedTokenValidation) -> Resumption:
        validator = self.settings.validator
        self.username = step.authzid
        if validator is None:
            return TokenVerdict(None, None)
        try:
            result = await validator.validate(step.token, step.authzid)
        except TokenServiceUnavailable as exc:
            return VerifierUnavailable(f"token service: {exc}")
        if result.subject_identity is None:
            return TokenVerdict(None, result.error)
        store = self.settings.store
        account = store.find_by_address(result.subject_identity) or store.get(
            result.subject_identity
        )
        if account is None or account.disabled:
            return TokenVerdict(None, result.error or {"status": "invalid_token"})
        self.username = account.name
        return TokenVerdict(account.name, None)

    async def _succeeded(self, account: str) -> AuthResult:
        found = self.settings.store.get(account)
        if found is None or found.disabled:
            return await self._failed(Failure("account disabled", FailureKind.AUTH_FAILED))
        throttle = self.settings.throttle
        if throttle.is_blocked(self.client_ip, account, self.settings.clock()):
            # SECURITY: a locked account stays locked even for the right password, or
            # guessing from many addresses would still find it during the lockout.
            log_event(
                AuthEvent.BLOCKED,
                logging.WARNING,
                session=self.session_id,
                client=self.client_ip,
                account=account,
            )
            return AuthResult(replies.R421_AUTH_BLOCKED, close=True)
        throttle.record_success(account)
        log_event(
            AuthEvent.SUCCEEDED,
            session=self.session_id,
            client=self.client_ip,
            mechanism=self.mechanism_name,
            account=account,
        )
        return AuthResult(replies.R235_AUTHENTICATED, account=account)

    async def _failed(self, failure: Failure) -> AuthResult:
        log_event(
            AuthEvent.FAILED,
            logging.WARNING,
            session=self.session_id,
            client=self.client_ip,
            mechanism=self.mechanism_name,
            account=self.username,
            kind=failure.kind.name,
            reason=failure.reason,
        )
        if failure.kind is FailureKind.TEMPORARY:
            return AuthResult(replies.R454_AUTH_TEMPORARY)
        if failure.kind is FailureKind.MALFORMED:
            reply = replies.R501_BAD_BASE64.with_text("Malformed authentication exchange")
        else:
            reply = replies.R535_AUTH_FAILED
        throttle = self.settings.throttle
        now = self.settings.clock()
        delay = throttle.record_failure(self.client_ip, self.username, now)
        # The slowdown: every failure costs the client more time (exponential, capped).
        await asyncio.sleep(delay)
        if throttle.is_blocked(self.client_ip, self.username, self.settings.clock()):
            log_event(
                AuthEvent.BLOCKED,
                logging.WARNING,
                session=self.session_id,
                client=self.client_ip,
                account=self.username,
            )
            return AuthResult(replies.R421_AUTH_BLOCKED, close=True)
        return AuthResult(reply)
