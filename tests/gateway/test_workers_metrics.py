"""With --workers N, the admin /metrics adds up every worker's numbers."""

from __future__ import annotations

import asyncio
import os
import re

import httpx
import psutil
import pytest

from gyroscope.gateway._aggregate import merge_metrics
from gyroscope.testing import free_port
from tests.gateway.conftest import CHAT
from tests.gateway.test_admin_cli import start_gateway, stop, two_free_ports, wait_port

WORKER_TEXT = """\
# HELP gyro_gateway_requests_total Requests answered
# TYPE gyro_gateway_requests_total counter
gyro_gateway_requests_total{backend="d0",code="2xx",route="default"} %(ok)s
# HELP gyro_gateway_request_duration_seconds Latency
# TYPE gyro_gateway_request_duration_seconds histogram
gyro_gateway_request_duration_seconds_bucket{backend="d0",le="0.1",route="default"} %(ok)s
gyro_gateway_request_duration_seconds_bucket{backend="d0",le="+Inf",route="default"} %(ok)s
gyro_gateway_request_duration_seconds_count{backend="d0",route="default"} %(ok)s
gyro_gateway_request_duration_seconds_sum{backend="d0",route="default"} 0.5
# HELP gyro_gateway_backend_healthy 1 when active health checks pass
# TYPE gyro_gateway_backend_healthy gauge
gyro_gateway_backend_healthy{backend="d0"} %(healthy)s
# HELP gyro_gateway_backend_ejected 1 while ejected
# TYPE gyro_gateway_backend_ejected gauge
gyro_gateway_backend_ejected{backend="d0"} %(ejected)s
# HELP gyro_gateway_backend_weight Configured weight
# TYPE gyro_gateway_backend_weight gauge
gyro_gateway_backend_weight{backend="d0"} 2.0
# HELP gyro_gateway_in_flight Requests in flight per replica
# TYPE gyro_gateway_in_flight gauge
gyro_gateway_in_flight{backend="d0"} 3.0
"""


def metric(text: str, name: str, labels: str = "") -> list[float]:
    pattern = re.escape(name) + (r"\{" + labels + r"[^}]*\}" if labels else r"(?:\{[^}]*\})?")
    return [float(v) for v in re.findall("^" + pattern + r" (\S+)$", text, re.M)]


def test_merge_sums_counters_histograms_and_loads_but_not_replica_state():
    a = WORKER_TEXT % {"ok": "3.0", "healthy": "1.0", "ejected": "0.0"}
    b = WORKER_TEXT % {"ok": "4.0", "healthy": "0.0", "ejected": "1.0"}
    text = merge_metrics([a, b]).decode()
    assert metric(text, "gyro_gateway_requests_total") == [7.0]
    assert metric(text, "gyro_gateway_request_duration_seconds_count") == [7.0]
    assert metric(
        text, "gyro_gateway_request_duration_seconds_bucket", 'backend="d0",le="0.1"'
    ) == [7.0]
    assert metric(text, "gyro_gateway_request_duration_seconds_sum") == [1.0]
    assert metric(text, "gyro_gateway_in_flight") == [6.0]
    assert metric(text, "gyro_gateway_backend_healthy") == [0.0]  # healthy only if in every one
    assert metric(text, "gyro_gateway_backend_ejected") == [1.0]  # ejected if in any
    assert metric(text, "gyro_gateway_backend_weight") == [2.0]
    assert metric(text, "gyro_gateway_workers") == [2.0]
    assert "# TYPE gyro_gateway_requests_total counter" in text


def test_merge_keeps_series_only_one_worker_has():
    a = WORKER_TEXT % {"ok": "3.0", "healthy": "1.0", "ejected": "0.0"}
    b = a.replace('backend="d0"', 'backend="d1"')
    text = merge_metrics([a, b]).decode()
    assert metric(text, "gyro_gateway_requests_total", 'backend="d0"') == [3.0]
    assert metric(text, "gyro_gateway_requests_total", 'backend="d1"') == [3.0]


def answered(text: str) -> float:
    return sum(metric(text, "gyro_gateway_requests_total", 'backend="d0",code="2xx"'))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux SO_REUSEPORT")
async def test_admin_metrics_add_up_every_worker(demos):
    (server,) = await demos(1)
    port, admin_port = free_port(), two_free_ports()
    proc = await start_gateway(
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin_port}",
        "--workers",
        "2",
        "--upstream",
        f"d0=127.0.0.1:{server.port}",
    )
    n = 40
    try:
        for p in (admin_port, admin_port + 1, port):
            await wait_port(p)
        for _ in range(n):
            # a new connection each time, so the kernel spreads them over both workers
            async with httpx.AsyncClient(timeout=30) as fresh:
                r = await fresh.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT)
                assert r.status_code == 200
        async with httpx.AsyncClient(timeout=30) as admin:
            merged = ""

            async def scrape() -> bool:
                nonlocal merged
                r = await admin.get(f"http://127.0.0.1:{admin_port}/metrics")
                merged = r.text if r.status_code == 200 else ""
                return answered(merged) == n

            # the last answers are counted a moment after the client has read them
            for _ in range(250):
                if await scrape():
                    break
                await asyncio.sleep(0.04)
            worker1 = (await admin.get(f"http://127.0.0.1:{admin_port + 1}/metrics")).text
        assert answered(merged) == n, merged
        assert sum(metric(merged, "gyro_gateway_request_duration_seconds_count")) == n
        assert metric(merged, "gyro_gateway_workers") == [2.0]
        assert metric(merged, "gyro_gateway_backend_healthy") == [1.0]
        # both workers served: the sum is not just one worker's numbers
        assert 0 < answered(worker1) < n, worker1
    finally:
        assert await stop(proc) == 0


def worker_process(parent_pid: int, index: int) -> psutil.Process:
    for child in psutil.Process(parent_pid).children():
        if child.environ().get("GYRO_GATEWAY_WORKER_INDEX") == str(index):
            return child
    raise AssertionError(f"no worker {index} under {parent_pid}")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux SO_REUSEPORT")
async def test_admin_metrics_fail_rather_than_undercount_while_a_worker_is_stuck(demos):
    """Worker 1 frozen (SIGSTOP): worker 0 answers 503, not a smaller sum (a false reset)."""
    (server,) = await demos(1)
    port, admin_port = free_port(), two_free_ports()
    proc = await start_gateway(
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin_port}",
        "--workers",
        "2",
        "--upstream",
        f"d0=127.0.0.1:{server.port}",
    )
    worker1 = None
    try:
        for p in (admin_port, admin_port + 1, port):
            await wait_port(p)
        worker1 = worker_process(proc.pid, 1)
        async with httpx.AsyncClient(timeout=30) as admin:
            own = await admin.get(f"http://127.0.0.1:{admin_port + 1}/metrics")
            # a worker's own port shows its own numbers, never a merge
            assert own.status_code == 200 and "gyro_gateway_workers" not in own.text
            worker1.suspend()
            r = await admin.get(f"http://127.0.0.1:{admin_port}/metrics")
            assert r.status_code == 503, r.text
            assert "did not answer" in r.json()["error"]["message"]
            worker1.resume()
            r = await admin.get(f"http://127.0.0.1:{admin_port}/metrics")
            assert r.status_code == 200 and metric(r.text, "gyro_gateway_workers") == [2.0]
    finally:
        if worker1 is not None:
            worker1.resume()
        assert await stop(proc) == 0
