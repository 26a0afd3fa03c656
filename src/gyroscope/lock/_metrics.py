"""Prometheus metrics of lock clients; each ``LockMetrics`` owns its ``CollectorRegistry``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["LockMetrics"]

_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60)
_HOLD_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800)


class LockMetrics:
    """Acquisitions, wait time, hold time and lost leases, labelled by lock name and backend.

    >>> from prometheus_client import generate_latest
    >>> metrics = LockMetrics()
    >>> metrics.acquired("jobs", "sqlite", wait=0.01)
    >>> b'gyro_lock_acquisitions_total{backend="sqlite",lock="jobs",outcome="acquired"} 1.0' in (
    ...     generate_latest(metrics.registry))
    True
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ("lock", "backend")
        self.acquisitions = Counter(
            "gyro_lock_acquisitions",
            "Acquisition attempts by outcome (acquired, timeout, error).",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.wait_seconds = Histogram(
            "gyro_lock_wait_seconds",
            "Time from acquire() to the grant.",
            labels,
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.hold_seconds = Histogram(
            "gyro_lock_hold_seconds",
            "Time from the grant to release or loss.",
            labels,
            buckets=_HOLD_BUCKETS,
            registry=self.registry,
        )
        self.lost_leases = Counter(
            "gyro_lock_lost_leases",
            "Leases lost while held (expired, broken, session lost).",
            labels,
            registry=self.registry,
        )

    def acquired(self, lock: str, backend: str, *, wait: float) -> None:
        self.acquisitions.labels(lock, backend, "acquired").inc()
        self.wait_seconds.labels(lock, backend).observe(wait)

    def failed(self, lock: str, backend: str, *, outcome: str) -> None:
        self.acquisitions.labels(lock, backend, outcome).inc()

    def released(self, lock: str, backend: str, *, held: float) -> None:
        self.hold_seconds.labels(lock, backend).observe(held)

    def lost(self, lock: str, backend: str, *, held: float) -> None:
        self.lost_leases.labels(lock, backend).inc()
        self.hold_seconds.labels(lock, backend).observe(held)
