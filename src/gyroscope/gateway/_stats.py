"""Prometheus metrics of one gateway, kept as plain counters and exposed by a custom collector.

The hot path only increments integers on a per-(route, replica) object bound in advance; the
collector turns them into metric families when Prometheus scrapes, in the gateway's own
``CollectorRegistry``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gyroscope.gateway._endpoint import Endpoint

__all__ = ["BUCKETS", "ExchangeStats", "GatewayCollector", "RouteCounters"]

# Variable-length, so compiled code keeps one tuple object instead of boxing 15 floats per use.
BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")


class ExchangeStats:
    """Counters for one (route, replica) pair: status classes and a latency histogram."""

    __slots__ = ("buckets", "codes", "total_seconds")

    def __init__(self) -> None:
        self.codes = [0] * 6
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total_seconds = 0.0

    def observe(self, status: int, seconds: float) -> None:
        cls = status // 100
        self.codes[cls if 0 < cls < 6 else 0] += 1
        i = 0  # the first bucket whose bound is not below (bisect_left); most land in the first
        for bound in BUCKETS:
            if seconds <= bound:
                break
            i += 1
        self.buckets[i] += 1
        self.total_seconds += seconds


class RouteCounters:
    """Per-route events that have no replica: retries, shed requests, rate limits, cache."""

    __slots__ = ("cache_hits", "cache_misses", "rate_limited", "retries", "shed")

    def __init__(self) -> None:
        self.retries = 0
        self.shed: dict[str, int] = {}
        self.rate_limited: dict[str, int] = {}
        self.cache_hits = 0
        self.cache_misses = 0


class GatewayCollector(Collector):
    """Reads the gateway's counters and endpoint state at scrape time."""

    def __init__(
        self,
        stats: Callable[[], Iterable[tuple[str, str, ExchangeStats]]],
        routes: Callable[[], Iterable[tuple[str, RouteCounters]]],
        endpoints: Callable[[], Iterable[Endpoint]],
        extra: Callable[[], dict[str, float]],
    ) -> None:
        self._stats = stats
        self._routes = routes
        self._endpoints = endpoints
        self._extra = extra

    def collect(self) -> Iterator[Any]:
        yield from self._exchange_families()
        yield from self._route_families()
        yield from self._endpoint_families()
        for name, value in self._extra().items():
            yield GaugeMetricFamily(f"gyro_gateway_{name}", name.replace("_", " "), value=value)

    def _exchange_families(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "gyro_gateway_requests",
            "Requests answered, by route, replica and status class",
            labels=["route", "backend", "code"],
        )
        latency = HistogramMetricFamily(
            "gyro_gateway_request_duration_seconds",
            "Time from request head to the last response byte",
            labels=["route", "backend"],
        )
        for route, backend, stats in self._stats():
            for cls, count in zip(_CLASSES, stats.codes, strict=True):
                if count:
                    requests.add_metric([route, backend, cls], count)
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), stats.buckets, strict=True):
                cumulative += count
                buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
            latency.add_metric([route, backend], buckets, stats.total_seconds)
        yield requests
        yield latency

    def _route_families(self) -> Iterator[Any]:
        retries = CounterMetricFamily("gyro_gateway_retries", "Retries", labels=["route"])
        shed = CounterMetricFamily(
            "gyro_gateway_shed",
            "Requests refused with 503 (queue full, no replica)",
            labels=["route", "reason"],
        )
        limited = CounterMetricFamily(
            "gyro_gateway_rate_limited", "Requests refused with 429", labels=["route", "reason"]
        )
        cache = CounterMetricFamily(
            "gyro_gateway_cache", "Response cache lookups", labels=["route", "result"]
        )
        for route, counters in self._routes():
            retries.add_metric([route], counters.retries)
            for reason, count in counters.shed.items():
                shed.add_metric([route, reason], count)
            for reason, count in counters.rate_limited.items():
                limited.add_metric([route, reason], count)
            cache.add_metric([route, "hit"], counters.cache_hits)
            cache.add_metric([route, "miss"], counters.cache_misses)
        yield from (retries, shed, limited, cache)

    def _endpoint_families(self) -> Iterator[Any]:
        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"gyro_gateway_{name}", doc, labels=["backend"])

        in_flight = gauge("in_flight", "Requests in flight per replica")
        healthy = gauge("backend_healthy", "1 when active health checks pass")
        ejected = gauge("backend_ejected", "1 while outlier detection ejects the replica")
        weight = gauge("backend_weight", "Configured weight")
        idle = gauge("upstream_idle_connections", "Idle keep-alive connections in the pool")
        ejections = CounterMetricFamily(
            "gyro_gateway_ejections", "Outlier ejections", labels=["backend"]
        )
        opened = CounterMetricFamily(
            "gyro_gateway_upstream_connections_opened",
            "New upstream connections (0 growth in steady state)",
            labels=["backend"],
        )
        for ep in self._endpoints():
            label = [ep.name]
            in_flight.add_metric(label, ep.in_flight)
            healthy.add_metric(label, 1.0 if ep.healthy else 0.0)
            ejected.add_metric(label, 1.0 if ep.ejected_until > 0 and ep.ejected(_now()) else 0.0)
            weight.add_metric(label, ep.weight)
            ejections.add_metric(label, ep.ejections)
            idle.add_metric(label, len(ep.pool.idle))
            opened.add_metric(label, ep.pool.opened)
        yield from (in_flight, healthy, ejected, weight, idle, ejections, opened)


def _now() -> float:
    import time

    return time.monotonic()
