"""Configuration of fault proxies (the ``chaos:`` section of ``gyroscope.yaml``).

>>> cfg = ChaosConfig(proxies=[{"name": "redis", "listen": "127.0.0.1:16380",
...                             "upstream": "127.0.0.1:16379", "faults": {"latency_ms": 20}}])
>>> cfg.proxies[0].faults.latency_ms
20
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from gyroscope.chaos._faults import Faults
from gyroscope.core import Address, StrictModel, require_token_when_exposed

__all__ = ["ChaosConfig", "ProxyConfig"]


class ProxyConfig(StrictModel):
    """One TCP fault proxy: ``listen`` forwards to ``upstream``, with ``faults`` from the start.

    ``control`` (``host:port``) serves the HTTP control API; off the loopback it needs
    ``control_token``.
    """

    name: str
    listen: Address
    upstream: Address
    control: Address | None = None
    control_token: SecretStr | None = None
    faults: Faults = Faults()

    @model_validator(mode="after")
    def _token_when_exposed(self) -> ProxyConfig:
        require_token_when_exposed(
            self.control,
            self.control_token,
            what="control API",
            key="control_token",
            env="GYRO_CHAOS_TOKEN",
        )
        return self


class ChaosConfig(StrictModel):
    """The ``chaos:`` section: fault proxies ``gyro up`` starts."""

    proxies: list[ProxyConfig] = Field(default_factory=list)

    @field_validator("proxies")
    @classmethod
    def _unique_names(cls, proxies: list[ProxyConfig]) -> list[ProxyConfig]:
        names = [p.name for p in proxies]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"proxy names must be unique; repeated: {', '.join(duplicates)}")
        return proxies
