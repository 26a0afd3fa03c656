"""End to end: scrape a demo model server, kill it, receive the alert at a local webhook."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from gyroscope.demo import DemoServer, DemoServerConfig
from gyroscope.monitor import MonitorConfig, MonitorService
from gyroscope.testing import free_port
from tests.monitor.conftest import Receiver, wait_until

RULES = """
groups:
  - name: availability
    interval: 500ms
    rules:
      - alert: TargetDown
        expr: up == 0
        for: 2s
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job }} is down"
"""


def _config(tmp_path: Path, demo_address: str, hook: str, **alerting: object) -> MonitorConfig:
    (tmp_path / "rules.yaml").write_text(RULES)
    return MonitorConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "scrape": [{"job": "demo", "targets": [demo_address], "interval": "500ms"}],
            "rule_files": [str(tmp_path / "rules.yaml")],
            "host": {"enabled": False},
            "alerting": {
                "route": {
                    "receiver": "hook",
                    "group_by": ["alertname"],
                    "group_wait": 0,
                    "group_interval": "1s",
                    **alerting,
                },
                "receivers": [{"name": "hook", "webhook": {"url": hook}}],
            },
        }
    )


async def test_killed_demo_server_fires_webhook(tmp_path: Path, receiver: Receiver) -> None:
    demo = DemoServer(DemoServerConfig(name="d1", listen="127.0.0.1:0"))
    await demo.start()
    address = demo.url.removeprefix("http://")
    monitor = MonitorService(_config(tmp_path, address, receiver.url), tmp_path / "data")
    await monitor.start()
    try:
        async with httpx.AsyncClient(base_url=monitor.url) as client:

            async def up_value() -> list[object]:
                body = (await client.get("/api/v1/query", params={"query": "up"})).json()
                return [r["value"][1] for r in body["data"]["result"]]

            values: list[object] = []

            async def poll() -> None:
                values[:] = await up_value()

            for _ in range(200):
                await poll()
                if values == ["1"]:
                    break
                await asyncio.sleep(0.05)
            assert values == ["1"]
            series = (await client.get("/api/v1/series", params={"match[]": "up"})).json()
            assert series["data"][0]["instance"] == address
            assert receiver.received == []
            await demo.stop()
            await wait_until(lambda: bool(receiver.received), timeout=30, what="the webhook")
            payload = receiver.received[0]
            assert payload["version"] == "4" and payload["status"] == "firing"
            alert = payload["alerts"][0]
            assert alert["labels"]["alertname"] == "TargetDown"
            assert alert["labels"]["instance"] == address
            assert alert["annotations"]["summary"] == f"{address} of demo is down"
            alerts = (await client.get("/api/v2/alerts")).json()
            assert [a["labels"]["alertname"] for a in alerts] == ["TargetDown"]
            history = (await client.get("/api/v1/history")).json()["data"]
            assert {"firing", "notified", "delivered"} <= {e["event"] for e in history}
    finally:
        await monitor.stop()
        await demo.stop()


async def test_demo_setup_fires_when_a_replica_dies_and_logs_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    from gyroscope.logs import LogsConfig, LogServer
    from gyroscope.monitor import demo_monitor_config

    demos = [DemoServer(DemoServerConfig(name=f"d{i}", listen="127.0.0.1:0")) for i in range(2)]
    for demo in demos:
        await demo.start()
    logs = LogServer(LogsConfig(listen="127.0.0.1:0"), tmp_path / "logs")
    await logs.start()
    addresses = [d.url.removeprefix("http://") for d in demos]
    cfg = demo_monitor_config(addresses, listen="127.0.0.1:0", webhook_url=receiver.url)
    cfg = cfg.model_copy(
        update={"alerting": cfg.alerting.model_copy(update={"log_store_url": logs.http.url})}
    )
    monitor = MonitorService(cfg, tmp_path / "data")
    await monitor.start()
    try:
        async with httpx.AsyncClient(base_url=monitor.url) as client:

            async def ups() -> list[str]:
                body = (
                    await client.get("/api/v1/query", params={"query": 'up{job="demo"}'})
                ).json()
                return sorted(r["value"][1] for r in body["data"]["result"])

            for _ in range(300):
                if await ups() == ["1", "1"]:
                    break
                await asyncio.sleep(0.05)
            assert await ups() == ["1", "1"]
            await demos[1].stop()
            await wait_until(lambda: bool(receiver.received), timeout=60, what="the webhook")
            (alert,) = receiver.received[0]["alerts"]
            assert alert["labels"]["alertname"] == "DemoReplicaDown"
            assert alert["labels"]["instance"] == addresses[1]
            assert alert["annotations"]["summary"] == f"demo replica {addresses[1]} is down"
            assert monitor.logship is not None
            await wait_until(
                lambda: monitor.logship is not None and monitor.logship.shipped >= 2,
                timeout=30,
                what="events in the log store",
            )
        async with httpx.AsyncClient(base_url=logs.http.url) as log_client:
            now_ns = time.time_ns()
            found = (
                await log_client.get(
                    "/loki/api/v1/query_range",
                    params={
                        "query": '{job="gyro-monitor", event="firing"}',
                        "start": str(now_ns - 600 * 10**9),
                        "end": str(now_ns + 10**9),
                        "limit": "10",
                    },
                )
            ).json()
            lines = [v[1] for s in found["data"]["result"] for v in s["values"]]
            assert any("DemoReplicaDown" in line for line in lines)
    finally:
        await monitor.stop()
        await logs.stop()
        for demo in demos:
            await demo.stop()


async def test_restart_keeps_firing_alert_without_notifying_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    config = _config(tmp_path, dead, receiver.url)
    monitor = MonitorService(config, tmp_path / "data")
    await monitor.start()
    try:
        await wait_until(lambda: bool(receiver.received), timeout=60, what="the first webhook")
        assert monitor.acknowledge(
            [receiver.received[0]["alerts"][0]["fingerprint"]], by="al", comment=""
        )
    finally:
        await monitor.stop()
    assert len(receiver.received) == 1
    fp = receiver.received[0]["alerts"][0]["fingerprint"]
    monitor = MonitorService(config, tmp_path / "data")
    await monitor.start()
    try:
        assert monitor.dispatcher.acks[fp]["by"] == "al"  # acknowledgements survive too
        # the rule's `for` state comes back from ALERTS_FOR_STATE: firing again on the first
        # evaluations, not after another 2 s of pending
        restored = [a for ev in monitor.evaluators for a in ev.alerts()]
        assert [a.labels["instance"] for a in restored] == [dead]

        def refired() -> bool:
            alert = monitor.dispatcher.alerts.get(fp)
            return alert is not None and not alert.resolved(time.time())

        await wait_until(refired, timeout=60, what="the alert firing after the restart")
        ticks = monitor.dispatcher.tick  # let the dispatcher run a few more rounds
        for _ in range(3):
            for note in ticks(time.time()):
                monitor.delivery.submit(note)
            await asyncio.sleep(0.3)
        assert not monitor.delivery.pending
    finally:
        await monitor.stop()
    assert len(receiver.received) == 1  # the receiver already knew; no second message
