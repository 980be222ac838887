"""AuthExchange when the credential store is unreachable: 454 4.7.0, never 535 or a crash.

The file store cannot fail this way (it serves from memory), so this uses a store that
implements the CredentialStore contract of a network back end (SQL, LDAP) that is down:
every lookup raises StoreUnavailable. Everything else is real: the PLAIN and SCRAM
mechanisms, the throttle, the reply catalogue.
"""

from __future__ import annotations

from postguard.accounts.model import Account
from postguard.accounts.store import StoreUnavailable
from postguard.policy.auth_throttle import AuthThrottle, ThrottleSettings
from postguard.server.authenticator import AuthExchange, AuthSettings


class DownStore:
    """A CredentialStore whose back end does not answer."""

    def get(self, name: str) -> Account | None:
        raise StoreUnavailable("connection refused")

    def find_by_address(self, address: str) -> Account | None:
        raise StoreUnavailable("connection refused")

    async def verify_password(self, name: str, password: str) -> Account | None:
        raise StoreUnavailable("connection refused")

    def has_cram_secrets(self) -> bool:
        return False

    def mechanisms_available(self) -> set[str]:
        return {"PLAIN", "LOGIN", "SCRAM-SHA-256"}


def settings() -> AuthSettings:
    return AuthSettings(
        hostname="mx.test",
        enabled=("SCRAM-SHA-256", "PLAIN"),
        store=DownStore(),  # type: ignore[arg-type]
        throttle=AuthThrottle(ThrottleSettings(base_delay=0.001, max_delay=0.001)),
        mock_seed=b"s" * 32,
    )


async def test_plain_with_the_store_down_is_454_temporary() -> None:
    exchange = AuthExchange(settings(), "PLAIN", client_ip="192.0.2.1", session_id="t1")
    result = await exchange.start(b"\0alice\0secret")
    assert (result.reply.code, result.reply.enhanced) == (454, "4.7.0")
    assert result.account is None and not result.close


async def test_scram_with_the_store_down_is_454_temporary() -> None:
    exchange = AuthExchange(settings(), "SCRAM-SHA-256", client_ip="192.0.2.1", session_id="t2")
    result = await exchange.start(b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL")
    assert (result.reply.code, result.reply.enhanced) == (454, "4.7.0")


async def test_store_outage_does_not_count_as_a_failed_guess() -> None:
    s = settings()
    for _ in range(15):  # more than max_failures_per_ip (10)
        exchange = AuthExchange(s, "PLAIN", client_ip="192.0.2.9", session_id="t3")
        await exchange.start(b"\0alice\0secret")
    assert not s.throttle.is_blocked("192.0.2.9", "alice", s.clock())
