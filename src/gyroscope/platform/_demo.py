"""The built-in configuration behind ``gyro up --demo``: what a newcomer sees first.

Three demo model replicas; the gateway in front of them; the monitor scraping them (and the
gateway) every second with a rule that fires when a replica dies; the log server keeping the
platform's own logs, the gateway's access log and every alert event.
"""

from __future__ import annotations

from typing import Any

from gyroscope.monitor import demo_monitor_config
from gyroscope.platform._config import GyroConfig, parse_config

__all__ = ["DEMO_PORTS", "DEMO_REPLICAS", "demo_config"]

DEMO_REPLICAS = 3
DEMO_PORTS = {
    "platform": 7070,
    "replicas": 8001,  # 8001, 8002, 8003
    "gateway": 8080,
    "gateway_admin": 8081,
    "monitor": 9464,
    "logs": 3100,
}


def demo_config(*, host: str = "127.0.0.1") -> GyroConfig:
    """Everything on loopback, on the ports in ``DEMO_PORTS``."""
    first = DEMO_PORTS["replicas"]
    replicas: list[dict[str, Any]] = [
        {"name": f"replica-{i + 1}", "listen": f"{host}:{first + i}", "seed": i + 1}
        for i in range(DEMO_REPLICAS)
    ]
    logs_url = f"http://{host}:{DEMO_PORTS['logs']}"
    gateway_admin = f"{host}:{DEMO_PORTS['gateway_admin']}"
    monitor = demo_monitor_config(
        [r["listen"] for r in replicas], listen=f"{host}:{DEMO_PORTS['monitor']}"
    ).model_dump(mode="json", by_alias=True, exclude_defaults=True)
    monitor["scrape"].append(
        {"job": "gateway", "targets": [gateway_admin], "interval": "1s", "timeout": "1s"}
    )
    monitor.setdefault("alerting", {})["log_store_url"] = logs_url
    return parse_config(
        {
            "platform": {"listen": f"{host}:{DEMO_PORTS['platform']}"},
            "demo": {"replicas": replicas},
            "logs": {"listen": f"{host}:{DEMO_PORTS['logs']}"},
            "monitor": monitor,
            "gateway": {
                "listen": f"{host}:{DEMO_PORTS['gateway']}",
                "admin": gateway_admin,
                "backends": [{"name": r["name"], "address": r["listen"]} for r in replicas],
            },
        }
    )
