"""Configuration of fault proxies (the ``chaos:`` section of ``gyroscope.yaml``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from gyroscope.core import StrictModel, parse_host_port

__all__ = ["ChaosConfig", "ProxyConfig"]


class ProxyConfig(StrictModel):
    """One TCP fault proxy: ``listen`` forwards to ``upstream``."""

    name: str
    listen: str
    upstream: str

    @field_validator("listen", "upstream")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_host_port(value)
        return value


class ChaosConfig(StrictModel):
    """The ``chaos:`` section: fault proxies ``gyro up`` starts."""

    proxies: list[ProxyConfig] = Field(default_factory=list)
