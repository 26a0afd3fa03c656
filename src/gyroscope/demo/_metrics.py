"""Prometheus metrics of one demo replica, named as vLLM names them.

Dashboards and alert rules written for vLLM (``vllm:num_requests_running``,
``vllm:time_to_first_token_seconds``, ...) work unchanged against the demo server; what only the
simulation knows (HTTP answers by status, injected faults) lives under ``gyro_demo_``. Each replica
has its own registry, since several run in one process under ``gyro up``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DemoMetrics"]

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                 0.75, 1.0, 2.5)  # fmt: skip
_E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0,
                20.0, 30.0, 40.0, 50.0, 60.0, 120.0)  # fmt: skip
_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class DemoMetrics:
    """The metrics of one replica; ``registry`` is what ``/metrics`` serves."""

    def __init__(
        self, model: str, *, running: Callable[[], float], waiting: Callable[[], float], slots: int
    ) -> None:
        self.registry = reg = CollectorRegistry()
        labels = ["model_name"]
        g = Gauge("vllm:num_requests_running", "Requests in batch slots.", labels, registry=reg)
        g.labels(model).set_function(running)
        g = Gauge("vllm:num_requests_waiting", "Requests waiting for a slot.", labels, registry=reg)
        g.labels(model).set_function(waiting)
        g = Gauge(
            "vllm:gpu_cache_usage_perc", "Share of slots in use (0..1).", labels, registry=reg
        )
        g.labels(model).set_function(lambda: running() / slots)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prefilled prompt tokens.", labels, registry=reg
        ).labels(model)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Generated tokens.", labels, registry=reg
        ).labels(model)
        self._success = Counter(
            "vllm:request_success",
            "Finished requests.",
            [*labels, "finished_reason"],
            registry=reg,
        )
        self.success = {r: self._success.labels(model, r) for r in ("stop", "length")}

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=reg).labels(model)

        self.ttft = hist("vllm:time_to_first_token_seconds", "Time to first token.", _TTFT_BUCKETS)
        self.tpot = hist(
            "vllm:time_per_output_token_seconds", "Time per output token.", _TPOT_BUCKETS
        )
        self.e2e = hist("vllm:e2e_request_latency_seconds", "Request latency.", _E2E_BUCKETS)
        self.queue = hist(
            "vllm:request_queue_time_seconds", "Time waiting for a slot.", _E2E_BUCKETS
        )
        self.prompt_len = hist("vllm:request_prompt_tokens", "Prompt tokens.", _TOKEN_BUCKETS)
        self.output_len = hist("vllm:request_generation_tokens", "Output tokens.", _TOKEN_BUCKETS)
        self._requests = Counter(
            "gyro_demo_requests", "HTTP answers by endpoint and status.", ["endpoint", "status"],
            registry=reg,
        )  # fmt: skip
        self._by_status: dict[tuple[str, int], Counter] = {}
        self._faults = Counter(
            "gyro_demo_faults_injected", "Requests a fault acted on.", ["fault"], registry=reg
        )
        self.aborted = Counter(
            "gyro_demo_requests_aborted", "Requests whose client left early.", registry=reg
        )
        self.rejected = Counter(
            "gyro_demo_requests_rejected", "Requests refused: queue full.", registry=reg
        )
        Gauge("gyro_demo_slots", "Batch slots.", registry=reg).set(slots)

    def request(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        child = self._by_status.get(key)
        if child is None:
            child = self._by_status[key] = self._requests.labels(endpoint, str(status))
        child.inc()

    def fault(self, name: str) -> None:
        self._faults.labels(name).inc()

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
        self.success[reason].inc()
        self.ttft.observe(ttft_s)
        self.e2e.observe(e2e_s)
        self.queue.observe(queue_s)
        self.prompt_len.observe(prompt_tokens)
        self.output_len.observe(output_tokens)
        if output_tokens > 1:
            self.tpot.observe(decode_s / (output_tokens - 1))
