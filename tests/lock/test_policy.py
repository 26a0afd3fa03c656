"""The pure acquire/renew decisions, with a fake clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gyroscope.lock import Attempts, Lease, RetryPolicy
from gyroscope.testing import FakeClock


def test_non_blocking_gives_up_at_once() -> None:
    attempts = Attempts(clock=FakeClock(), timeout=None, notifies=True, ttl=2, blocking=False)
    assert attempts.after_busy(retry_after=1.0) is None
    assert attempts.after_error() is None


def test_polling_backs_off_to_a_cap_and_wakes_at_holder_expiry() -> None:
    clock = FakeClock()
    policy = RetryPolicy(poll_min=0.01, poll_max=0.08)
    attempts = Attempts(clock=clock, timeout=None, notifies=False, ttl=10, policy=policy)
    waits = [attempts.after_busy(retry_after=None) for _ in range(6)]
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]
    assert attempts.after_busy(retry_after=0.001) == 0.001 + policy.expiry_slack


def test_notified_waiter_polls_at_most_every_third_of_ttl() -> None:
    attempts = Attempts(clock=FakeClock(), timeout=None, notifies=True, ttl=0.6)
    assert attempts.after_busy(retry_after=None) == 0.6 / 3


def test_errors_are_retried_until_grace_then_raised() -> None:
    clock = FakeClock()
    attempts = Attempts(
        clock=clock, timeout=None, notifies=True, ttl=2, policy=RetryPolicy(error_grace=5)
    )
    assert attempts.after_error() is not None
    clock.advance(5)
    assert attempts.after_error() is None


@given(
    timeout=st.floats(0, 30),
    steps=st.lists(st.floats(0, 5), max_size=20),
    notifies=st.booleans(),
    retry_after=st.none() | st.floats(0, 10),
)
def test_never_waits_past_the_deadline(
    timeout: float, steps: list[float], notifies: bool, retry_after: float | None
) -> None:
    clock = FakeClock()
    attempts = Attempts(clock=clock, timeout=timeout, notifies=notifies, ttl=3)
    for step in steps:
        clock.advance(step)
        wait = attempts.after_busy(retry_after=retry_after)
        if clock.monotonic() >= timeout:
            assert wait is None
        if wait is not None:
            assert 0 <= wait <= timeout - clock.monotonic() + 1e-9


def test_lease_counts_from_send_and_renews_a_third_in() -> None:
    clock = FakeClock()
    lease = Lease(clock=clock, sent_at=0.0, ttl=3.0)
    clock.advance(1.0)
    assert lease.renew_delay() == 0.0 and not lease.expired()
    lease.renewed(sent_at=1.0, ttl=3.0)
    assert lease.valid_until == 4.0 and lease.renew_delay() == 1.0
    lease.renew_failed()
    assert 0 < lease.renew_delay() <= 0.3 + 1e-9
    clock.advance(3.0)
    assert lease.expired() and lease.remaining() == 0.0
