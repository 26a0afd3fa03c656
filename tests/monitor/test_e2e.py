"""End to end: scrape a demo model server, kill it, receive the alert at a local webhook."""

from __future__ import annotations

from pathlib import Path

import httpx

from gyroscope.demo import DemoServer, DemoServerConfig
from gyroscope.monitor import MonitorConfig, MonitorService
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
                await __import__("asyncio").sleep(0.05)
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
