"""Latency is measured from the intended send time: a stalled server cannot hide (wrk2-style).

nginx is frozen with SIGSTOP for a known window in the middle of an open-model run. Requests due
during the window really wait until SIGCONT, so their true latencies are known exactly: the time
from their due time to the end of the stall. The measured p50 and p99 must match those within 10%.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from gyroscope.bench import LoadConfig, run_load
from tests.bench.conftest import completion_body
from tests.bench.servers import nginx, nginx_worker_pid

RATE, DURATION, STALL_AT, STALL = 100.0, 2.0, 0.3, 1.4


def true_percentiles(
    rate: float, duration: float, stall: float, service: float
) -> dict[str, float]:
    """Latencies (ms) of an even schedule when the server froze for ``stall`` seconds."""
    n = round(rate * duration)
    frozen = (
        np.arange(round(rate * stall)) / rate + service
    )  # due at the end of the stall ... start
    rest = np.full(n - len(frozen), service)
    lat = np.concatenate([frozen, rest]) * 1000
    return {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}


async def test_stalled_server_latency_matches_the_true_latencies(tmp_path: Path) -> None:
    with nginx(tmp_path) as (url, proc):
        worker = nginx_worker_pid(tmp_path, proc.pid)
        loop = asyncio.get_running_loop()
        stalls: list[float] = []

        def freeze() -> None:
            stalls.append(time.monotonic())
            os.kill(worker, signal.SIGSTOP)

        def thaw() -> None:
            os.kill(worker, signal.SIGCONT)
            stalls.append(time.monotonic())

        loop.call_later(STALL_AT, freeze)
        loop.call_later(STALL_AT + STALL, thaw)
        try:
            result = await run_load(LoadConfig(url=url + "/", rate=RATE, duration=DURATION))
        finally:
            os.kill(worker, signal.SIGCONT)
    actual_stall = stalls[1] - stalls[0]
    truth = true_percentiles(RATE, DURATION, actual_stall, service=0.001)
    assert result.data.counters["requests"] == pytest.approx(RATE * DURATION, abs=3)
    assert result.data.errors == {}
    assert result.metric("p50") == pytest.approx(truth["p50"], rel=0.10)
    assert result.metric("p99") == pytest.approx(truth["p99"], rel=0.10)


async def test_demo_server_latency_fault_shows_in_every_percentile(demo_server) -> None:
    base = demo_server(4, 2.0)
    slow = demo_server(4, 2.0, "--fault", "latency_ms=150")

    def cfg(url: str) -> LoadConfig:
        return LoadConfig(
            url=url + "/v1/completions",
            method="POST",
            rate=40,
            duration=1.5,
            headers=["Content-Type: application/json"],
            body=completion_body(1),
        )

    # Both runs at once, so a busy machine slows both alike and the difference is the fault.
    fast, stalled = await asyncio.gather(run_load(cfg(base)), run_load(cfg(slow)))
    assert fast.data.errors == {} and stalled.data.errors == {}
    assert stalled.data.counters["requests"] == pytest.approx(60, abs=3)
    for p in ("p50", "p90"):
        added = stalled.metric(p) - fast.metric(p)
        # The whole delay, counted once: not hidden (>= 90% of it), not doubled. Load only adds
        # (the server's timer fires late), so the upper bound leaves room for that.
        assert 135.0 <= added <= 200.0, (p, fast.metric(p), stalled.metric(p))
    # Every request carries the delay; none is measured below it (a tail spike on a busy machine
    # may add to p99, so p99 is bounded below only).
    assert stalled.metric("min") >= 150.0
    assert stalled.metric("p99") >= 150.0 + fast.metric("p50")


async def test_demo_server_hang_counts_timeouts_and_ends_on_time(demo_server) -> None:
    url = demo_server(4, 2.0, "--fault", "hang=true")
    cfg = LoadConfig(
        url=url + "/v1/completions",
        method="POST",
        connections=4,
        duration=1.5,
        timeout=0.4,
        headers=["Content-Type: application/json"],
        body=completion_body(1),
    )
    started = time.monotonic()
    result = await run_load(cfg)
    assert time.monotonic() - started < 1.5 + 0.4 + 2.0
    assert result.data.errors["timeout"] >= 4
    assert set(result.data.errors) == {"timeout"}
    assert result.data.counters["ok"] == 0


async def test_warns_loudly_when_the_rate_cannot_be_held(demo_server) -> None:
    url = demo_server(4, 2.0, "--fault", "latency_ms=300")
    cfg = LoadConfig(
        url=url + "/v1/completions",
        method="POST",
        rate=50,
        duration=1.0,
        max_connections=2,
        headers=["Content-Type: application/json"],
        body=completion_body(1),
    )
    result = await run_load(cfg)
    warnings = [w for w in result.data.warnings if "could not hold the rate" in w]
    assert warnings, result.data.warnings
    assert "connections were busy" in warnings[0]
    assert result.data.counters["unsent"] > 10
    # Latency still counts from the intended send times: queued requests show their wait.
    assert result.metric("p99") > 600
