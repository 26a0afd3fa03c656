"""Probes from several places with a quorum: three monitors probe one endpoint, a central monitor
federates their results (honor_labels) and alerts only when at least two places see it down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from gyroscope.core import HttpServer, Request, Response
from gyroscope.monitor import MonitorConfig, MonitorService
from gyroscope.testing import free_port
from tests.monitor.conftest import Receiver, wait_until

QUORUM = [
    {
        "name": "quorum",
        "interval": "500ms",
        "rules": [
            {
                "alert": "EndpointDownFromManyPlaces",
                "expr": 'count by (instance) (probe_success{job="api"} == 0) >= 2',
                "for": "1s",
            }
        ],
    }
]


async def _ok(request: Request) -> Response:
    return Response.text("ok\n")


def _place(url: str) -> MonitorConfig:
    return MonitorConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "host": {"enabled": False},
            "probes": [
                {
                    "name": "api",
                    "target": url,
                    "interval": "500ms",
                    "timeout": "1s",
                    "labels": {"instance": "api"},
                }
            ],
        }
    )


async def test_quorum_of_places(tmp_path: Path, receiver: Receiver) -> None:
    endpoint = HttpServer(_ok, port=0, name="endpoint")
    await endpoint.start()
    unreachable = f"http://127.0.0.1:{free_port()}/"  # the third place cannot reach the endpoint
    urls = [f"{endpoint.url}/health", f"{endpoint.url}/health", unreachable]
    places = [MonitorService(_place(u), tmp_path / f"place{i}") for i, u in enumerate(urls)]
    central: MonitorService | None = None
    try:
        for place in places:
            await place.start()
        scrape: list[dict[str, Any]] = [
            {
                "job": f"place-{i}",
                "targets": [p.url.removeprefix("http://")],
                "interval": "500ms",
                "metrics_path": "/federate?match[]=probe_success",
                "honor_labels": True,
                "labels": {"location": f"p{i}"},
            }
            for i, p in enumerate(places)
        ]
        central = MonitorService(
            MonitorConfig.model_validate(
                {
                    "listen": "127.0.0.1:0",
                    "host": {"enabled": False},
                    "scrape": scrape,
                    "rules": QUORUM,
                    "alerting": {
                        "route": {"receiver": "hook", "group_wait": 0},
                        "receivers": [{"name": "hook", "webhook": {"url": receiver.url}}],
                    },
                }
            ),
            tmp_path / "central",
        )
        await central.start()
        engine = central.engine

        def failing_places() -> list[float]:
            result = engine.instant(
                'count by (instance) (probe_success{job="api"} == 0)', time.time()
            )
            return [v for _, v in result]  # type: ignore[misc]

        def seen_from_all() -> bool:
            result = engine.instant('count(probe_success{job="api"})', time.time())
            return bool(result) and result[0][1] == 3  # type: ignore[index]

        await wait_until(seen_from_all, timeout=60, what="probe results from three places")
        await wait_until(lambda: failing_places() == [1.0], timeout=60, what="one place failing")
        for _ in range(4):  # longer than `for`: one place alone is no quorum
            await asyncio.sleep(0.5)
            assert failing_places() == [1.0]
            assert central.rule_alerts() == []
        assert receiver.received == []
        await endpoint.stop(0.1)
        await wait_until(lambda: bool(receiver.received), timeout=60, what="the quorum alert")
        (alert,) = receiver.received[0]["alerts"]
        assert alert["labels"] == {"alertname": "EndpointDownFromManyPlaces", "instance": "api"}
    finally:
        if central is not None:
            await central.stop()
        for place in places:
            await place.stop()
        await endpoint.stop(0.1)
