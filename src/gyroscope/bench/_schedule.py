"""When each request of an open-model run is meant to be sent: constant or Poisson arrivals.

Pure logic, no I/O: ``Schedule`` yields intended send times (seconds after the run's start) across
stages that hold or ramp the rate. Latency is measured from these times, not from when the request
actually left, so a stalled server cannot hide behind a stalled generator (no coordinated omission).

A rate split across ``workers`` processes gives each ``rate / workers`` and shifts worker ``i`` by
``i / workers`` of an interval, so together they send an even stream, not bursts of ``workers``.
"""

from __future__ import annotations

import math
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

    Arrivals are placed by the area under the rate curve: the next one comes when the integral of
    the rate since the last reaches 1 (even spacing) or an Exp(1) draw (Poisson; by the
    time-rescaling theorem this is an exact non-homogeneous Poisson process, ramps included).

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
        self._t = 0.0
        self._first_area = self._rng.expovariate(1.0) if poisson else index / self._workers
        self._started = False

    @property
    def total(self) -> float:
        return self._total

    def next(self) -> float | None:
        """The next intended send time, or ``None`` once the stages are over."""
        if not self._started:
            self._started = True
            area = self._first_area
        else:
            area = self._rng.expovariate(1.0) if self._poisson else 1.0
        self._t = self._advance(self._t, area)
        return self._t if self._t < self._total else None

    def _advance(self, t: float, area: float) -> float:
        """The time at which ``area`` more arrivals have accumulated after ``t``."""
        start = 0.0
        for stage in self._stages:
            end = start + stage.duration
            if t >= end:
                start = end
                continue
            slope = (stage.end - stage.start) / stage.duration / self._workers
            rate = (stage.start / self._workers) + slope * (t - start)
            span = end - t
            available = rate * span + slope * span * span / 2
            if available >= area:
                if abs(slope) < 1e-12:
                    return t + area / rate
                # Solve rate*d + slope*d^2/2 = area for the smallest d >= 0.
                return t + (-rate + math.sqrt(max(rate * rate + 2 * slope * area, 0.0))) / slope
            area -= available
            t = end
            start = end
        return self._total
