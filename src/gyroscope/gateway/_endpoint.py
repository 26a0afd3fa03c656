"""The state the balancer keeps per replica: weight, requests in flight, latency, health.

Pure state with no I/O: policies read it, the proxy updates it. ``lb_weight`` is what policies
use; it equals ``weight`` except while a recovered replica ramps up (slow start).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gyroscope.gateway._upstream import Pool

__all__ = ["Endpoint"]


class Endpoint:
    """One replica as the balancer sees it.

    >>> ep = Endpoint("d1", "127.0.0.1", 8001, weight=2)
    >>> ep.observe_latency(0.050, now=1.0); round(ep.cost(now=1.0), 3)
    0.05
    """

    # The upstream connection pool, set by the gateway (the I/O layer) as it adds the replica;
    # typed, so compiled code calls it directly. Policies and health never touch it.
    pool: Pool

    __slots__ = (
        "address",
        "draining",
        "ejected_until",
        "ejections",
        "ewma",
        "ewma_stamp",
        "healthy",
        "host",
        "in_flight",
        "lb_weight",
        "max_concurrent",
        "name",
        "pool",
        "port",
        "recovered_at",
        "stats",
        "weight",
    )

    def __init__(
        self, name: str, host: str, port: int, *, weight: int = 1, max_concurrent: int = 0
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.weight = weight
        self.lb_weight: float = float(weight)
        self.max_concurrent = max_concurrent
        self.in_flight = 0
        self.ewma = 0.0  # seconds, peak-sensitive moving average of response time
        self.ewma_stamp = 0.0
        self.healthy = True  # active checks (True until proven otherwise)
        self.ejected_until = 0.0  # passive outlier detection
        self.ejections = 0
        self.draining = False
        self.recovered_at: float | None = None
        self.stats: Any = None  # metrics children (I/O layer)

    def __repr__(self) -> str:
        return (
            f"Endpoint({self.name!r}, {self.address}, w={self.weight}, in_flight={self.in_flight})"
        )

    def ejected(self, now: float) -> bool:
        return self.ejected_until > now

    def full(self) -> bool:
        return 0 < self.max_concurrent <= self.in_flight

    def observe_latency(self, seconds: float, now: float, decay: float = 10.0) -> None:
        """Peak EWMA (Finagle): jump up to a slow sample at once, decay towards fast ones."""
        if seconds > self.ewma:
            self.ewma = seconds
        else:
            w = math.exp(-max(now - self.ewma_stamp, 0.0) / decay)
            self.ewma = self.ewma * w + seconds * (1.0 - w)
        self.ewma_stamp = now

    def cost(self, now: float, decay: float = 10.0) -> float:
        """Expected wait: latency EWMA times the queue it would join (peak-EWMA load metric)."""
        ewma = self.ewma
        if ewma == 0.0:
            # No sample yet: prefer it while idle, but do not pile every request onto it.
            return 0.0 if self.in_flight == 0 else 1e3 * self.in_flight
        return ewma * (self.in_flight + 1) / max(self.lb_weight, 1e-9)
