"""AuthThrottle: exponential slowdown and cut-off per IP and per account, injected clock."""

from __future__ import annotations

from postguard.policy.auth_throttle import AuthThrottle, ThrottleSettings

SETTINGS = ThrottleSettings(
    max_failures_per_ip=5,
    max_failures_per_account=3,
    window=600,
    lockout=900,
    base_delay=0.5,
    max_delay=4.0,
)


def test_delays_double_per_failure_up_to_the_cap() -> None:
    throttle = AuthThrottle(
        ThrottleSettings(
            max_failures_per_ip=100, max_failures_per_account=100, base_delay=0.5, max_delay=4.0
        )
    )
    delays = [throttle.record_failure("192.0.2.1", None, now=float(i)) for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_ip_is_cut_off_after_the_limit_and_freed_after_the_lockout() -> None:
    throttle = AuthThrottle(SETTINGS)
    for i in range(5):
        assert not throttle.is_blocked("192.0.2.1", None, now=float(i))
        throttle.record_failure("192.0.2.1", None, now=float(i))
    assert throttle.is_blocked("192.0.2.1", None, now=10.0)
    assert not throttle.is_blocked("192.0.2.2", None, now=10.0)
    assert throttle.is_blocked("192.0.2.1", None, now=4.0 + 899)
    assert not throttle.is_blocked("192.0.2.1", None, now=4.0 + 901)


def test_account_is_cut_off_from_every_ip() -> None:
    throttle = AuthThrottle(SETTINGS)
    for i in range(3):
        throttle.record_failure(f"198.51.100.{i}", "Alice", now=float(i))
    assert throttle.is_blocked("203.0.113.9", "alice", now=5.0)
    assert not throttle.is_blocked("203.0.113.9", "bob", now=5.0)


def test_failures_older_than_the_window_are_forgotten() -> None:
    throttle = AuthThrottle(SETTINGS)
    throttle.record_failure("192.0.2.1", None, now=0.0)
    assert throttle.record_failure("192.0.2.1", None, now=601.0) == 0.5


def test_success_clears_the_account_but_not_the_ip() -> None:
    throttle = AuthThrottle(SETTINGS)
    for i in range(2):
        throttle.record_failure("192.0.2.1", "alice", now=float(i))
    throttle.record_success("alice")
    assert throttle.record_failure("192.0.2.1", "alice", now=3.0) == 2.0  # IP count: 3rd


def test_memory_is_bounded_under_a_flood_of_addresses() -> None:
    throttle = AuthThrottle(SETTINGS, max_keys=100)
    for i in range(10_000):
        throttle.record_failure(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", None, now=1.0)
    assert len(throttle._ips._entries) == 100
