"""When each request of an open-model run is meant to be sent: constant or Poisson arrivals.

Pure logic, no I/O: ``Schedule`` yields intended send times (seconds after the run's start) across
stages that hold or ramp the rate. Latency is measured from these times, not from when the request
actually left, so a stalled server cannot hide behind a stalled generator (no coordinated omission).

A rate split across ``workers`` processes gives each ``rate / workers`` and shifts worker ``i`` by
``i / workers`` of an interval, so together they send an even stream, not bursts of ``workers``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from gyroscope.bench._units import Stage

__all__ = ["Schedule", "stage_level"]


def stage_level(stages: Sequence[Stage], t: float) -> float | None:
    """The rate (or users) the stages ask for at ``t`` seconds; ``None`` past the last stage."""
    start = 0.0
    for stage in stages:
        if t < start + stage.duration:
            frac = (t - start) / stage.duration
            return stage.start + (stage.end - stage.start) * frac
        start += stage.duration
    return None


class Schedule:
    """Intended send times for one worker.

    >>> s = Schedule([Stage(duration=1.0, start=4.0, end=4.0, kind="rate")])
    >>> [round(s.next(), 3) for _ in range(4)], s.next()
    ([0.0, 0.25, 0.5, 0.75], None)
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        *,
        workers: int = 1,
        index: int = 0,
        poisson: bool = False,
        seed: int | None = None,
    ) -> None:
        self._stages = list(stages)
        self._workers = max(workers, 1)
        self._poisson = poisson
        self._rng = random.Random(None if seed is None else seed * 1000 + index)
        self._total = sum(s.duration for s in self._stages)
        first = stage_level(self._stages, 0.0) or 0.0
        per_worker = first / self._workers
        if poisson or per_worker <= 0:
            self._t = 0.0
        else:
            self._t = (index / self._workers) / per_worker
        self._started = False

    @property
    def total(self) -> float:
        return self._total

    def _rate(self, t: float) -> float | None:
        level = stage_level(self._stages, t)
        return None if level is None else level / self._workers

    def next(self) -> float | None:
        """The next intended send time, or ``None`` once the stages are over."""
        if not self._started:
            self._started = True
            if self._poisson:
                self._t = self._step(0.0)
            return self._t if self._t < self._total else None
        self._t = self._step(self._t)
        return self._t if self._t < self._total else None

    def _step(self, t: float) -> float:
        # A stage may start at rate 0 (a ramp up from nothing): creep forward until it is positive.
        while True:
            rate = self._rate(t)
            if rate is None:
                return self._total
            if rate > 1e-9:
                break
            t += 0.01
        if self._poisson:
            return t + self._rng.expovariate(rate)
        return t + 1.0 / rate
