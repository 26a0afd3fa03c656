"""One ``/metrics`` for several workers: worker 0 scrapes the others and adds their numbers up.

With ``workers > 1`` every worker process keeps its own counters (the hot path only increments
integers in its own memory). Rather than share memory between processes, worker 0's admin API
asks each other worker's admin port for its metrics when it is itself scraped, and merges them:

- counters, histograms and load gauges (requests in flight, queued, connections) are summed;
- replica state gauges say what the workers agree on: healthy only if healthy in every worker,
  ejected if ejected in any, the weight as configured (the largest, normally all equal).

A worker that cannot be read makes the scrape fail (503) instead of answering a smaller sum:
Prometheus would read a counter that went down as a reset and invent a burst of traffic.

>>> text = '# TYPE x_total counter\\nx_total{a="1"} 2.0\\n'
>>> [line for line in merge_metrics([text, text]).decode().splitlines() if line[0] != "#"]
['x_total{a="1"} 4.0', 'gyro_gateway_workers 2.0']
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = ["PeerMetricsError", "gather_metrics", "merge_metrics"]

PEER_HEADER = "x-gyro-peer"  # a peer answers with its own metrics only, never a merge
PEER_TIMEOUT = 5.0  # seconds; a worker that takes longer is stuck, and the scrape says so

# Gauges that describe a replica's state rather than a load: summing them would be wrong.
_STATE: dict[str, Callable[[float, float], float]] = {
    "gyro_gateway_backend_healthy": min,
    "gyro_gateway_backend_ejected": max,
    "gyro_gateway_backend_weight": max,
}

Key = tuple[str, tuple[tuple[str, str], ...]]


class PeerMetricsError(Exception):
    """A worker's metrics could not be read (it is still starting, or stuck)."""


class _Merged(Collector):
    """A collector over the merged families (one scrape's worth)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge_metrics(texts: Sequence[str]) -> bytes:
    """The Prometheus text of several workers as one: samples with equal name and labels combined."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[Key, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                values[family.name] = {}
            combine = _STATE.get(family.name, _add)
            samples = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                old = samples.get(key)
                samples[key] = sample.value if old is None else combine(old, sample.value)
    for name, merged in families.items():
        for (sample_name, labels), value in values[name].items():
            merged.add_sample(sample_name, dict(labels), value)
    workers = Metric("gyro_gateway_workers", "Worker processes these metrics add up", "gauge")
    workers.add_sample("gyro_gateway_workers", {}, float(len(texts)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged([*families.values(), workers]))
    return generate_latest(registry)


def _add(a: float, b: float) -> float:
    return a + b


async def gather_metrics(own: str, peers: Sequence[str], token: str | None) -> bytes:
    """``own`` merged with each peer's ``/metrics``; raises ``PeerMetricsError`` if one fails."""
    headers = {PEER_HEADER: "1"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=PEER_TIMEOUT, headers=headers, trust_env=False) as client:
        answers = await asyncio.gather(
            *(client.get(f"{peer}/metrics") for peer in peers), return_exceptions=True
        )
    texts = [own]
    for peer, answer in zip(peers, answers, strict=True):
        if isinstance(answer, BaseException):
            raise PeerMetricsError(f"worker at {peer} did not answer: {answer!r}")
        if answer.status_code != 200:
            raise PeerMetricsError(f"worker at {peer} answered {answer.status_code}")
        texts.append(answer.text)
    return merge_metrics(texts)
