"""Prometheus metrics of one demo replica, named as vLLM names them.

Dashboards and alert rules written for vLLM (``vllm:num_requests_running``,
``vllm:time_to_first_token_seconds``, ...) work unchanged against the demo server; what only the
simulation knows (HTTP answers by status, injected faults) lives under ``gyro_demo_``. Each replica
has its own registry, since several run in one process under ``gyro up``.

Why a custom collector rather than prometheus_client's ``Counter``/``Histogram``: a request records
about a dozen samples, and the library's thread-safe values take a lock for each, which was a
sixth of the server's CPU per request. One replica lives on one event loop, so plain numbers are
safe here; prometheus_client still builds the families and the exposition format.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["Count", "DemoMetrics", "Hist"]

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                 0.75, 1.0, 2.5)  # fmt: skip
_E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0,
                20.0, 30.0, 40.0, 50.0, 60.0, 120.0)  # fmt: skip
_TOKEN_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
                  10000.0)  # fmt: skip


class Count:
    """A counter for one event loop (no lock)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Hist:
    """A histogram for one event loop: per-bucket counts, made cumulative only when scraped."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: the first bound >= value
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if math.isinf(bound) else repr(bound), running))
        return out


class DemoMetrics:
    """The metrics of one replica; ``registry`` is what ``/metrics`` serves."""

    def __init__(
        self, model: str, *, running: Callable[[], float], waiting: Callable[[], float], slots: int
    ) -> None:
        self.model = model
        self.slots = slots
        self._running = running
        self._waiting = waiting
        self.prompt_tokens = Count()
        self.generation_tokens = Count()
        self.success = {"stop": Count(), "length": Count()}
        self.ttft = Hist(_TTFT_BUCKETS)
        self.tpot = Hist(_TPOT_BUCKETS)
        self.e2e = Hist(_E2E_BUCKETS)
        self.queue = Hist(_E2E_BUCKETS)
        self.prompt_len = Hist(_TOKEN_BUCKETS)
        self.output_len = Hist(_TOKEN_BUCKETS)
        self.aborted = Count()
        self.rejected = Count()
        self._by_status: dict[tuple[str, int], Count] = {}
        self._faults: dict[str, Count] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def request(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        count = self._by_status.get(key)
        if count is None:
            count = self._by_status[key] = Count()
        count.value += 1

    def fault(self, name: str) -> None:
        count = self._faults.get(name)
        if count is None:
            count = self._faults[name] = Count()
        count.value += 1

    def finished(
        self,
        *,
        reason: str,
        prompt_tokens: int,
        output_tokens: int,
        queue_s: float,
        ttft_s: float,
        e2e_s: float,
        decode_s: float,
    ) -> None:
        self.success[reason].value += 1
        self.ttft.observe(ttft_s)
        self.e2e.observe(e2e_s)
        self.queue.observe(queue_s)
        self.prompt_len.observe(prompt_tokens)
        self.output_len.observe(output_tokens)
        if output_tokens > 1:
            self.tpot.observe(decode_s / (output_tokens - 1))

    # -- exposition ------------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        m = [self.model]
        yield _gauge("vllm:num_requests_running", "Requests in batch slots.", m, self._running())
        yield _gauge(
            "vllm:num_requests_waiting", "Requests waiting for a slot.", m, self._waiting()
        )
        usage = self._running() / self.slots
        yield _gauge("vllm:gpu_cache_usage_perc", "Share of slots in use (0..1).", m, usage)
        yield _counter("vllm:prompt_tokens", "Prefilled prompt tokens.", m, self.prompt_tokens)
        yield _counter("vllm:generation_tokens", "Generated tokens.", m, self.generation_tokens)
        family = CounterMetricFamily(
            "vllm:request_success", "Finished requests.", labels=["model_name", "finished_reason"]
        )
        for reason, count in self.success.items():
            family.add_metric([self.model, reason], count.value)
        yield family
        for name, doc, hist in (
            ("vllm:time_to_first_token_seconds", "Time to first token.", self.ttft),
            ("vllm:time_per_output_token_seconds", "Time per output token.", self.tpot),
            ("vllm:e2e_request_latency_seconds", "Request latency.", self.e2e),
            ("vllm:request_queue_time_seconds", "Time waiting for a slot.", self.queue),
            ("vllm:request_prompt_tokens", "Prompt tokens per request.", self.prompt_len),
            ("vllm:request_generation_tokens", "Output tokens per request.", self.output_len),
        ):
            family_h = HistogramMetricFamily(name, doc, labels=["model_name"])
            family_h.add_metric(m, buckets=hist.buckets(), sum_value=hist.total)
            yield family_h
        yield from self._gyro_families()

    def _gyro_families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "gyro_demo_requests",
            "HTTP answers by endpoint and status.",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), count in self._by_status.items():
            requests.add_metric([endpoint, str(status)], count.value)
        yield requests
        faults = CounterMetricFamily(
            "gyro_demo_faults_injected", "Requests a fault acted on.", labels=["fault"]
        )
        for name, count in self._faults.items():
            faults.add_metric([name], count.value)
        yield faults
        yield _counter(
            "gyro_demo_requests_aborted", "Requests whose client left.", [], self.aborted
        )
        yield _counter("gyro_demo_requests_rejected", "Refused: queue full.", [], self.rejected)
        yield _gauge("gyro_demo_slots", "Batch slots.", [], self.slots)


def _gauge(name: str, doc: str, labels: list[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["model_name"] if labels else None)
    family.add_metric(labels, value)
    return family


def _counter(name: str, doc: str, labels: list[str], count: Count) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["model_name"] if labels else None)
    family.add_metric(labels, count.value)
    return family
