"""The fault proxies ``gyro up`` runs, from the ``chaos:`` section of ``gyroscope.yaml``."""

from __future__ import annotations

from pathlib import Path

from gyroscope.chaos._config import ChaosConfig, ProxyConfig
from gyroscope.chaos._proxy import FaultProxy
from gyroscope.core import DataDir, Service, ServiceSpec

__all__ = ["build_services"]


def build_services(
    section: ChaosConfig, data_dir: DataDir | Path | None = None
) -> list[ServiceSpec]:
    """One ``ServiceSpec`` named ``chaos/<name>`` per configured proxy (no I/O here).

    The proxies keep no state on disk, so ``data_dir`` is accepted for the common signature only.

    >>> cfg = ChaosConfig(proxies=[{"name": "redis", "listen": "127.0.0.1:0",
    ...                             "upstream": "127.0.0.1:16379"}])
    >>> [spec.name for spec in build_services(cfg, None)]
    ['chaos/redis']
    """
    return [
        ServiceSpec(name=f"chaos/{p.name}", config=p, factory=FaultProxyFactory(p))
        for p in section.proxies
    ]


class FaultProxyFactory:
    """A picklable, comparable factory: builds a fresh ``FaultProxy`` from its config."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config

    def __call__(self) -> Service:
        return FaultProxy.from_config(self.config)
