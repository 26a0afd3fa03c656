"""How ``gyro up`` builds the monitor from the ``monitor:`` section, and the monitor ``--demo`` uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gyroscope.core import ServiceSpec
from gyroscope.monitor._config import MonitorConfig

__all__ = ["DEMO_RULES", "build_services", "demo_monitor_config"]

DEMO_RULES: list[dict[str, Any]] = [
    {
        "name": "demo",
        "interval": "1s",
        "rules": [
            {
                "alert": "DemoReplicaDown",
                "expr": 'up{job="demo"} == 0',
                "for": "5s",
                "labels": {"severity": "page"},
                "annotations": {"summary": "demo replica {{ $labels.instance }} is down"},
            },
            {
                "record": "job:vllm_requests:rate1m",
                "expr": "sum by (job) (rate(vllm:request_success_total[1m]))",
            },
        ],
    }
]


def build_services(
    section: MonitorConfig, data_dir: Path, config_dir: Path | None = None
) -> list[ServiceSpec]:
    """One ``ServiceSpec`` for the monitor; its data lives in ``data_dir / "monitor"``.

    >>> [s.name for s in build_services(MonitorConfig(), Path("/tmp/x"))]
    ['monitor']
    """
    from gyroscope.monitor._service import MonitorService

    return [
        ServiceSpec(
            name=section.name,
            config=section,
            factory=lambda: MonitorService(section, data_dir / "monitor", config_dir=config_dir),
        )
    ]


def demo_monitor_config(
    replicas: list[str], *, listen: str = "127.0.0.1:9464", webhook_url: str | None = None
) -> MonitorConfig:
    """What ``gyro up --demo`` monitors: the replicas at 1 s, a rule that fires when one dies.

    >>> cfg = demo_monitor_config(["127.0.0.1:8001", "127.0.0.1:8002"])
    >>> cfg.scrape[0].targets, cfg.rules[0]["rules"][0]["alert"]
    (['127.0.0.1:8001', '127.0.0.1:8002'], 'DemoReplicaDown')
    """
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url:
        receiver["webhook"] = {"url": webhook_url}
    return MonitorConfig.model_validate(
        {
            "listen": listen,
            "scrape": [{"job": "demo", "targets": replicas, "interval": "1s", "timeout": "1s"}],
            "rules": DEMO_RULES,
            "evaluation_interval": "1s",
            "alerting": {
                "route": {"receiver": "default", "group_by": ["alertname", "job"], "group_wait": 0},
                "receivers": [receiver],
            },
        }
    )
