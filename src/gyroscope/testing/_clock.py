"""A clock that only moves when told to, for decisions that take an injected ``Clock``."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A manual clock.

    >>> clock = FakeClock(start=100.0)
    >>> clock.advance(2.5)
    >>> clock.monotonic(), clock.time()
    (102.5, 1700000102.5)
    """

    def __init__(self, start: float = 0.0, *, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._wall_offset + self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._now += seconds
