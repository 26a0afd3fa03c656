"""A token bucket for the bandwidth fault: pure arithmetic over an injected clock.

The proxy asks ``wait(n)`` before forwarding ``n`` bytes; 0 means "go now". The bucket holds at most
``burst`` bytes (50 ms worth at the configured rate, at least one byte), so a transfer of N bytes
takes at least ``(N - burst) / rate`` seconds.

>>> from gyroscope.testing import FakeClock
>>> clock = FakeClock()
>>> bucket = TokenBucket(rate=1000, clock=clock)
>>> bucket.take(50), bucket.wait(100)  # then 50 bytes (one burst) need 50 ms
(50, 0.05)
"""

from __future__ import annotations

from gyroscope.core import Clock

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` bytes per second with a burst of ``rate / 20`` bytes."""

    def __init__(self, rate: int, *, clock: Clock) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = max(1, rate // 20)
        self._tokens = float(self.burst)
        self._stamp = clock.monotonic()

    def set_rate(self, rate: int) -> None:
        """Change the rate; tokens already earned stay (capped by the new burst)."""
        self._refill()
        self.rate = rate
        self.burst = max(1, rate // 20)
        self._tokens = min(self._tokens, float(self.burst))

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` bytes' worth of whole tokens now; return how many were taken."""
        self._refill()
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted

    def wait(self, wanted: int) -> float:
        """Seconds until ``min(wanted, burst)`` bytes can be taken (0 when they can be now)."""
        self._refill()
        missing = min(wanted, self.burst) - self._tokens
        return max(0.0, missing / self.rate)
