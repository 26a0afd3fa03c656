"""Which services each section of ``gyroscope.yaml`` builds.

Each subsystem exports ``build_services(section, data_dir) -> list[ServiceSpec]``; the registry names
it as a ``"module:function"`` string, imported only when the section is present, so a config that does
not use a subsystem never imports it (or its optional drivers).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gyroscope.core import ServiceSpec
from gyroscope.errors import ConfigError
from gyroscope.platform._config import GyroConfig

__all__ = ["SECTIONS", "SpecBuilder", "service_specs"]

SECTIONS: dict[str, str] = {
    "demo": "gyroscope.demo:build_services",
    "chaos": "gyroscope.chaos:build_services",
    "logs": "gyroscope.logs:build_services",
    "monitor": "gyroscope.monitor:build_services",
    "gateway": "gyroscope.gateway:build_services",
    "backup": "gyroscope.backup:build_services",
}

SpecBuilder = Callable[[GyroConfig, Path], list[ServiceSpec]]


def _load(target: str) -> Callable[[Any, Path], list[ServiceSpec]]:
    module_name, _, attr = target.partition(":")
    builder: Callable[[Any, Path], list[ServiceSpec]] = getattr(
        importlib.import_module(module_name), attr
    )
    return builder


def service_specs(config: GyroConfig, data_dir: Path) -> list[ServiceSpec]:
    """Every service the config names, in start order; names must be unique."""
    specs: list[ServiceSpec] = []
    for section, target in SECTIONS.items():
        value = getattr(config, section, None)
        if value is not None:
            specs.extend(_load(target)(value, data_dir))
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(f"two services are named {spec.name!r}; give each a unique name")
        seen.add(spec.name)
    return specs
