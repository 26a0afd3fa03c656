"""Pure decisions of the lock client: how long to wait between attempts, when to renew a lease,
when a lease must be considered lost. No I/O; time comes from an injected ``Clock``.

The driver in ``_lock.py`` asks and acts::

    >>> from gyroscope.testing import FakeClock
    >>> clock = FakeClock()
    >>> attempts = Attempts(clock=clock, timeout=1.0, notifies=True, ttl=3.0)
    >>> attempts.after_busy(retry_after=None)       # notified waiters still poll, boundedly
    0.5
    >>> clock.advance(0.75); attempts.after_busy(retry_after=None)  # never past the deadline
    0.25
    >>> clock.advance(0.25); attempts.after_busy(retry_after=None) is None   # give up
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from gyroscope.core import Clock

__all__ = ["Attempts", "Lease", "RetryPolicy", "shared_admits"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Bounds of the waiting loop.

    ``fallback_poll`` bounds how long a notified waiter sleeps (a lost notification costs at most
    this); engines without notification (SQLite) back off from ``poll_min`` to ``poll_max``.
    ``error_grace`` is how long a blocking acquire without a timeout rides out backend errors.
    """

    poll_min: float = 0.002
    poll_max: float = 0.1
    fallback_poll: float = 0.5
    backoff: float = 2.0
    error_grace: float = 10.0
    #: added to a holder's remaining ttl so we try just after its expiry, not just before
    expiry_slack: float = 0.005


DEFAULT_POLICY = RetryPolicy()


class Attempts:
    """The wait between acquisition attempts; ``None`` means stop (deadline passed)."""

    def __init__(
        self,
        *,
        clock: Clock,
        timeout: float | None,
        notifies: bool,
        ttl: float,
        blocking: bool = True,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self._clock = clock
        self._policy = policy
        self._notifies = notifies
        self._blocking = blocking
        self._ttl = ttl
        start = clock.monotonic()
        self._deadline = None if timeout is None else start + max(0.0, timeout)
        self._poll = policy.poll_min
        self._errors_since: float | None = None

    def remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock.monotonic())

    def after_busy(self, *, retry_after: float | None) -> float | None:
        """Someone else holds the lock: seconds to wait for a notification, or None to give up."""
        self._errors_since = None
        if not self._blocking:
            return None
        if self._notifies:
            # A waiter keeps its queue entry alive by retrying, so never sleep past ttl/3.
            wait = min(self._policy.fallback_poll, self._ttl / 3)
        else:
            wait = self._poll
            self._poll = min(self._poll * self._policy.backoff, self._policy.poll_max)
        if retry_after is not None:
            wait = min(wait, max(0.0, retry_after) + self._policy.expiry_slack)
        return self._bounded(wait)

    def after_error(self) -> float | None:
        """The backend failed: seconds before retrying, or None to raise the error."""
        now = self._clock.monotonic()
        if self._errors_since is None:
            self._errors_since = now
        if not self._blocking:
            return None
        if self._deadline is None and now - self._errors_since >= self._policy.error_grace:
            return None
        wait = self._poll
        self._poll = min(self._poll * self._policy.backoff, self._policy.fallback_poll)
        return self._bounded(wait)

    def _bounded(self, wait: float) -> float | None:
        remaining = self.remaining()
        if remaining is None:
            return wait
        if remaining <= 0.0:
            return None
        return min(wait, remaining)


class Lease:
    """The holder's own, conservative view of its lease.

    The engine starts its ttl when it *receives* a request, so a lease counted from the moment the
    request was *sent* ends no later than the engine's: the holder always believes it lost the lock
    before anyone else can get it (clock drift aside, which ttl-based locks cannot rule out).

    >>> from gyroscope.testing import FakeClock
    >>> clock = FakeClock()
    >>> lease = Lease(clock=clock, sent_at=0.0, ttl=3.0)
    >>> lease.renew_delay(), lease.expired()
    (1.0, False)
    >>> clock.advance(3.0); lease.expired()
    True
    """

    def __init__(self, *, clock: Clock, sent_at: float, ttl: float) -> None:
        self._clock = clock
        self.ttl = ttl
        self.valid_until = sent_at + ttl
        self._renew_at = sent_at + ttl / 3

    def renewed(self, *, sent_at: float, ttl: float) -> None:
        self.ttl = ttl
        self.valid_until = max(self.valid_until, sent_at + ttl)
        self._renew_at = sent_at + ttl / 3

    def renew_failed(self) -> None:
        """Retry soon, but often enough to get several tries in before the lease ends."""
        now = self._clock.monotonic()
        self._renew_at = now + max(0.01, min(self.ttl / 10, self.remaining() / 3))

    def remaining(self) -> float:
        return max(0.0, self.valid_until - self._clock.monotonic())

    def expired(self) -> bool:
        return self._clock.monotonic() >= self.valid_until

    def renew_delay(self) -> float:
        return max(0.0, self._renew_at - self._clock.monotonic())


def shared_admits(mode: str, limit: int, ahead: list[str]) -> bool:
    """Whether a queued holder in ``mode`` holds a shared lock, given the modes queued ahead.

    Writers (``"w"``) need an empty queue ahead; readers (``"r"``) pass readers but never a writer
    queued ahead of them (so writers are not starved); semaphore holders (``"s"``) need fewer than
    ``limit`` ahead.

    >>> shared_admits("r", 1, ["r", "r"]), shared_admits("r", 1, ["r", "w"]), shared_admits("s", 2, ["s"])
    (True, False, True)
    """
    if mode == "r":
        return "w" not in ahead
    if mode == "s":
        return len(ahead) < limit
    return not ahead
