"""The HTTP API (Prometheus and Alertmanager shapes) and the CLI against a running monitor.

The monitor runs in its own thread and event loop, so the synchronous CLI can call it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gyroscope.cli._main import COMMANDS
from gyroscope.cli._main import cli as root
from gyroscope.monitor import MonitorConfig, MonitorService


@pytest.fixture
def running(tmp_path: Path) -> Iterator[MonitorService]:
    cfg = MonitorConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "host": {"enabled": True, "interval": "1s"},
            "alerting": {"route": {"receiver": "default", "group_wait": 0}},
            "slos": [
                {
                    "name": "api",
                    "objective": 0.99,
                    "errors": 'req_total{code="500"}',
                    "total": "req_total",
                }
            ],
        }
    )
    service = MonitorService(cfg, tmp_path / "data")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        await service.start()
        started.set()
        await stop.wait()
        await service.stop(1.0)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(30), "monitor did not start"
    yield service
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    loop.close()


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Until the lead registers the group in cli/_main.py, register it here to test the real root.
    monkeypatch.setitem(COMMANDS, "monitor", "gyroscope.cli.monitor:monitor")


def cli(*args: str, service: MonitorService) -> tuple[int, str]:
    result = CliRunner().invoke(root, ["monitor", *args, "--url", service.url])
    return result.exit_code, result.output


def test_push_samples_then_query_series_labels(running: MonitorService) -> None:
    now_ms = int(time.time() * 1000)
    body = f'req_total{{code="200"}} 10 {now_ms - 20_000}\nreq_total{{code="200"}} 5 {now_ms + 3_600_000}\n'
    r = httpx.post(f"{running.url}/api/v1/push?job=app", content=body)
    assert r.status_code == 422 and r.json()["rejected"] == 1  # the skewed sample, not the good one
    r = httpx.get(f"{running.url}/api/v1/query", params={"query": 'req_total{job="app"}'})
    data = r.json()["data"]
    assert data["resultType"] == "vector"
    assert data["result"][0]["metric"] == {"__name__": "req_total", "code": "200", "job": "app"}
    assert data["result"][0]["value"][1] == "10"
    series = httpx.get(f"{running.url}/api/v1/series", params={"match[]": "req_total"}).json()
    assert series["status"] == "success" and len(series["data"]) == 1
    assert "code" in httpx.get(f"{running.url}/api/v1/labels").json()["data"]
    values = httpx.get(f"{running.url}/api/v1/label/job/values").json()["data"]
    assert "app" in values
    end = time.time()
    rng = httpx.get(
        f"{running.url}/api/v1/query_range",
        params={"query": "req_total", "start": end - 10, "end": end, "step": "1s"},
    ).json()
    assert rng["data"]["resultType"] == "matrix" and len(rng["data"]["result"][0]["values"]) >= 9
    code, out = cli("query", 'req_total{job="app"}', service=running)
    assert code == 0 and 'req_total{code="200",job="app"} 10' in out


def test_bad_promql_is_400_with_position(running: MonitorService) -> None:
    r = httpx.get(f"{running.url}/api/v1/query", params={"query": "sum(rate(x[5m])"})
    assert r.status_code == 400
    assert r.json()["errorType"] == "bad_data" and "position 3" in r.json()["error"]
    code, out = cli("query", "sum(", service=running)
    assert code != 0 and "bad PromQL" in out and "Traceback" not in out


def test_pushed_alert_silence_and_ack_through_cli(running: MonitorService) -> None:
    alert = [
        {"labels": {"alertname": "DiskFull", "instance": "h1"}, "annotations": {"summary": "x"}}
    ]
    assert httpx.post(f"{running.url}/api/v2/alerts", json=alert).status_code == 200
    code, out = cli("alerts", "--json", service=running)
    (item,) = json.loads(out)
    assert item["labels"]["alertname"] == "DiskFull" and item["status"]["state"] == "active"
    code, out = cli(
        "silence", "add", 'instance="h1"', "--duration", "1h", "--comment", "maint", service=running
    )
    assert code == 0
    silence_id = out.strip()
    code, out = cli("alerts", service=running)
    assert "suppressed" in out
    code, out = cli("silence", "list", service=running)
    assert silence_id in out and "active" in out
    code, out = cli("silence", "expire", silence_id, service=running)
    assert code == 0
    code, out = cli("ack", item["fingerprint"], "--by", "alice", service=running)
    assert code == 0
    code, out = cli("alerts", service=running)
    assert "acked by alice" in out and "active" in out
    code, out = cli("ack", "0000000000000000", service=running)
    assert code != 0 and "no firing alert" in out
    code, out = cli("history", "--alertname", "DiskFull", service=running)
    assert code == 0 and "acknowledged" in out and "alice" in out
    history = httpx.get(f"{running.url}/api/v1/history", params={"alertname": "DiskFull"}).json()[
        "data"
    ]
    assert [e["event"] for e in history][:2] == ["firing", "acknowledged"] or "acknowledged" in {
        e["event"] for e in history
    }


def test_rules_targets_and_host_metrics(running: MonitorService) -> None:
    groups = httpx.get(f"{running.url}/api/v1/rules").json()["data"]["groups"]
    assert groups[0]["name"] == "slo:api"
    assert [r["name"] for r in groups[0]["rules"]][-3:] == [
        "SLOBurnRateFast",
        "SLOBurnRateMedium",
        "SLOBurnRateSlow",
    ]
    code, out = cli("targets", "--json", service=running)
    assert code == 0 and json.loads(out) == []
    deadline = time.time() + 30
    while time.time() < deadline:
        result = httpx.get(
            f"{running.url}/api/v1/query", params={"query": "node_memory_total_bytes"}
        ).json()
        if result["data"]["result"]:
            break
        time.sleep(0.1)
    assert float(result["data"]["result"][0]["value"][1]) > 0
    assert running.health().data["gpu"].startswith("no GPU")


def test_unreachable_monitor_is_one_line() -> None:
    result = CliRunner().invoke(root, ["monitor", "alerts", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert result.output.startswith("gyro: error: cannot reach the monitor at http://127.0.0.1:9")
    assert len(result.output.strip().splitlines()) == 1


def test_grafana_style_post_forms(running: MonitorService) -> None:
    now = time.time()
    httpx.post(f"{running.url}/api/v1/push?job=g", content=f"temp 21.5 {int(now * 1000) - 5000}\n")
    form = {"query": "temp * 2", "time": f"{now:.3f}"}
    r = httpx.post(f"{running.url}/api/v1/query", data=form)
    assert r.json()["data"]["result"][0]["value"][1] == "43"
    form = {"query": "temp", "start": str(now - 4), "end": str(now), "step": "2"}
    r = httpx.post(f"{running.url}/api/v1/query_range", data=form)
    assert [v[1] for v in r.json()["data"]["result"][0]["values"]] == ["21.5"] * 3
    assert "job" in httpx.post(f"{running.url}/api/v1/labels").json()["data"]
    assert httpx.get(f"{running.url}/api/v1/status/buildinfo").json()["status"] == "success"
    assert httpx.get(f"{running.url}/api/v1/query_exemplars").json()["data"] == []


async def test_token_guards_every_endpoint_but_health(tmp_path: Path) -> None:
    from pydantic import SecretStr

    service = MonitorService(
        MonitorConfig(listen="127.0.0.1:0", token=SecretStr("s3cret"), host={"enabled": False}),  # type: ignore[arg-type]
        tmp_path / "d",
    )
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=service.url) as client:
            assert (await client.get("/-/healthy")).status_code == 200
            denied = await client.get("/api/v1/query", params={"query": "1"})
            assert denied.status_code == 401 and denied.json()["errorType"] == "unauthorized"
            wrong = await client.get("/api/v2/alerts", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            ok = await client.get(
                "/api/v1/query", params={"query": "1"}, headers={"authorization": "Bearer s3cret"}
            )
            assert ok.json()["data"]["result"][1] == "1"
    finally:
        await service.stop()
