"""Injected time, so decisions can be tested without sleeping."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "MonotonicClock"]


class Clock(Protocol):
    """What a decision needs to know about time: a monotonic reading and the wall clock."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class MonotonicClock:
    """The real clock.

    >>> clock = MonotonicClock()
    >>> clock.monotonic() <= clock.monotonic()
    True
    """

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()
