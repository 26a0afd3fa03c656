"""The root of ``gyroscope.yaml``: the daemon's own settings and one optional section per subsystem.

>>> cfg = parse_config({"demo": {"replicas": [{"name": "a", "listen": "127.0.0.1:8001"}]}})
>>> cfg.demo.replicas[0].name
'a'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator

from gyroscope.backup._config import BackupConfig
from gyroscope.chaos._config import ChaosConfig
from gyroscope.core import Address, StrictModel, require_token_when_exposed, validate_config
from gyroscope.core import load_config as _load
from gyroscope.demo._config import DemoConfig
from gyroscope.gateway._config import GatewayConfig
from gyroscope.logs._config import LogsConfig
from gyroscope.monitor._config import MonitorConfig

__all__ = ["GyroConfig", "PlatformConfig", "load_config", "parse_config"]


class PlatformConfig(StrictModel):
    """The daemon's own HTTP API (``/healthz``, ``/metrics``, ``/v1/services``)."""

    listen: Address = "127.0.0.1:7070"
    token: SecretStr | None = None
    shutdown_grace: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _token_when_exposed(self) -> PlatformConfig:
        require_token_when_exposed(self.listen, self.token, what="listening", key="platform.token")
        return self


class GyroConfig(StrictModel):
    """The whole of ``gyroscope.yaml``. Every section is optional."""

    data_dir: Path | None = None
    platform: PlatformConfig = PlatformConfig()
    demo: DemoConfig | None = None
    chaos: ChaosConfig | None = None
    logs: LogsConfig | None = None
    monitor: MonitorConfig | None = None
    gateway: GatewayConfig | None = None
    backup: BackupConfig | None = None


def parse_config(data: Any, path: Path | None = None) -> GyroConfig:
    """Validate a mapping (already parsed from YAML, or built in code)."""
    return validate_config(GyroConfig, data, path)


def load_config(path: Path) -> GyroConfig:
    """Read and validate ``gyroscope.yaml`` (or any path)."""
    return _load(GyroConfig, path)
