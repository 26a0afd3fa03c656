"""The built-in configuration behind ``gyro up --demo``: what a newcomer sees first."""

from __future__ import annotations

from typing import Any

from gyroscope.platform._config import GyroConfig, parse_config

__all__ = ["DEMO_REPLICAS", "demo_config"]

DEMO_REPLICAS = 3
DEMO_FIRST_PORT = 8001


def demo_config(*, host: str = "127.0.0.1", first_port: int = DEMO_FIRST_PORT) -> GyroConfig:
    """Three demo model replicas and the platform API on loopback."""
    replicas: list[dict[str, Any]] = [
        {"name": f"replica-{i + 1}", "listen": f"{host}:{first_port + i}", "seed": i + 1}
        for i in range(DEMO_REPLICAS)
    ]
    return parse_config({"platform": {"listen": f"{host}:7070"}, "demo": {"replicas": replicas}})
