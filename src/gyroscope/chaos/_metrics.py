"""Prometheus metrics of one fault proxy, read from its counters at scrape time (no hot-path cost)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gyroscope.chaos._faults import Faults
from gyroscope.chaos._link import Counters

__all__ = ["ProxyCollector"]

_COUNTERS = (
    ("gyro_chaos_connections_accepted", "Connections accepted", "accepted"),
    ("gyro_chaos_connections_reset", "New connections reset by the reset fault", "reset"),
    ("gyro_chaos_connections_cut", "Open connections reset by cut", "cut"),
    ("gyro_chaos_connections_timed_out", "Connections closed by the timeout fault", "timed_out"),
    ("gyro_chaos_upstream_errors", "Failed connections to the upstream", "upstream_errors"),
    ("gyro_chaos_bytes_dropped", "Bytes dropped by blackhole or timeout", "bytes_dropped"),
)


class ProxyCollector(Collector):
    """Counters, open connections, bytes each way and the active faults of proxy ``name``."""

    def __init__(self, name: str, counters: Callable[[], Counters], faults: Callable[[], Faults]):
        self._name = name
        self._counters = counters
        self._faults = faults

    def collect(self) -> Iterator[Metric]:
        c = self._counters()
        for metric, doc, attr in _COUNTERS:
            family = CounterMetricFamily(metric, doc, labels=["proxy"])
            family.add_metric([self._name], getattr(c, attr))
            yield family
        moved = CounterMetricFamily(
            "gyro_chaos_bytes", "Bytes forwarded", labels=["proxy", "direction"]
        )
        moved.add_metric([self._name, "upstream"], c.bytes_upstream)
        moved.add_metric([self._name, "downstream"], c.bytes_downstream)
        yield moved
        active = GaugeMetricFamily(
            "gyro_chaos_connections_active", "Open connections", labels=["proxy"]
        )
        active.add_metric([self._name], c.active)
        yield active
        faults = GaugeMetricFamily(
            "gyro_chaos_fault",
            "Active faults (value of each non-default field)",
            labels=["proxy", "fault"],
        )
        for key, value in self._faults().model_dump(exclude_defaults=True).items():
            if isinstance(value, bool | int):
                faults.add_metric([self._name, key], float(value))
        yield faults
