"""How ``gyro up`` builds the monitor from the ``monitor:`` section."""

from __future__ import annotations

from pathlib import Path

from gyroscope.core import ServiceSpec
from gyroscope.monitor._config import MonitorConfig

__all__ = ["build_services"]


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
