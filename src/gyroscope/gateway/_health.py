"""Health decisions: active check thresholds, passive outlier detection, panic mode, slow start.

All pure, with time passed in. The active checker that does the I/O lives in ``_checker.py``.

Outlier detection follows Envoy's: a replica is ejected after ``consecutive_5xx`` 5xx answers or
``consecutive_gateway_errors`` gateway failures (502/503/504, refused or reset connections) in a
row, or when its success rate over an ``interval`` falls below ``success_rate_threshold``. Each
ejection lasts ``base_ejection_time x times ejected`` (capped). At most ``max_ejection_percent`` of
the replicas are ejected at once, and when fewer than ``panic_threshold`` percent are usable the
balancer ignores health altogether (better some errors than none served at all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from gyroscope.gateway._endpoint import Endpoint

__all__ = ["HealthThresholds", "OutlierDetector", "available", "slow_start_weight"]


@dataclass(slots=True)
class HealthThresholds:
    """Rise/fall counting for active checks: ``observe`` returns True when the state flips.

    >>> h = HealthThresholds(rise=2, fall=2)
    >>> h.observe(False), h.observe(False), h.healthy
    (False, True, False)
    """

    rise: int
    fall: int
    healthy: bool = True
    _streak: int = 0

    def observe(self, ok: bool) -> bool:
        if ok == self.healthy:
            self._streak = 0
            return False
        self._streak += 1
        if self._streak >= (self.rise if ok else self.fall):
            self.healthy = ok
            self._streak = 0
            return True
        return False


@dataclass(slots=True)
class _Counts:
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    ok: int = 0
    total: int = 0


@dataclass(slots=True)
class OutlierDetector:
    """Passive ejection from live results; ``record`` returns True when it ejects the replica."""

    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 3
    success_rate_min_requests: int = 20
    success_rate_threshold: float = 0.5
    base_ejection_time: float = 10.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 50.0
    _counts: dict[str, _Counts] = field(default_factory=dict)

    def record(
        self,
        ep: Endpoint,
        status: int,
        gateway_error: bool,
        now: float,
        all_eps: Sequence[Endpoint],
    ) -> bool:
        counts = self._counts.get(ep.name)
        if counts is None:
            counts = self._counts[ep.name] = _Counts()
        counts.total += 1
        if gateway_error or status >= 500:
            counts.consecutive_5xx += 1
            counts.consecutive_gateway += 1 if gateway_error or status in (502, 503, 504) else 0
        else:
            counts.ok += 1
            counts.consecutive_5xx = counts.consecutive_gateway = 0
            return False
        trip = (
            0 < self.consecutive_5xx <= counts.consecutive_5xx
            or 0 < self.consecutive_gateway_errors <= counts.consecutive_gateway
        )
        return trip and self._eject(ep, now, all_eps)

    def sweep(self, now: float, all_eps: Sequence[Endpoint]) -> list[Endpoint]:
        """Once per interval: eject replicas whose success rate is below the threshold."""
        ejected = []
        for ep in all_eps:
            counts = self._counts.get(ep.name)
            if counts is None or counts.total < self.success_rate_min_requests:
                continue
            if counts.ok / counts.total < self.success_rate_threshold and self._eject(
                ep, now, all_eps
            ):
                ejected.append(ep)
        for counts in self._counts.values():
            counts.ok = counts.total = 0
        return ejected

    def forget(self, name: str) -> None:
        self._counts.pop(name, None)

    def _eject(self, ep: Endpoint, now: float, all_eps: Sequence[Endpoint]) -> bool:
        if ep.ejected(now):
            return False
        already = sum(1 for other in all_eps if other.ejected(now))
        # Like Envoy, one replica may always be ejected whatever the percentage says.
        allowed = max(1, math.floor(self.max_ejection_percent * len(all_eps) / 100))
        if already >= allowed:
            return False
        ep.ejections += 1
        duration = min(self.base_ejection_time * ep.ejections, self.max_ejection_time)
        ep.ejected_until = now + duration
        counts = self._counts[ep.name]
        counts.consecutive_5xx = counts.consecutive_gateway = 0
        return True


def available(endpoints: Sequence[Endpoint], now: float, panic_threshold: float) -> list[Endpoint]:
    """The replicas a policy may choose from: healthy, not ejected, not draining.

    In panic (fewer than ``panic_threshold`` percent usable) every non-draining replica is used.
    """
    serving = [ep for ep in endpoints if not ep.draining]
    usable = [ep for ep in serving if ep.healthy and not ep.ejected(now)]
    if serving and len(usable) * 100 < panic_threshold * len(serving):
        return serving
    return usable


def slow_start_weight(ep: Endpoint, now: float, window: float, floor: float = 0.1) -> float:
    """A recovered replica's weight ramps linearly from ``floor`` to its full weight over ``window``."""
    if window <= 0 or ep.recovered_at is None:
        return float(ep.weight)
    progress = (now - ep.recovered_at) / window
    if progress >= 1:
        return float(ep.weight)
    return ep.weight * max(floor, min(1.0, progress))
