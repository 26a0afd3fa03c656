"""Configuration of the gateway (the ``gateway:`` section of ``gyroscope.yaml``).

>>> cfg = GatewayConfig.model_validate(
...     {"listen": "127.0.0.1:8080", "backends": [{"name": "d1", "address": "127.0.0.1:8001"}]}
... )
>>> cfg.routes[0].policy
'p2c'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from gyroscope.core import (
    ServiceSpec,
    StrictModel,
    parse_host_port,
    require_token_when_exposed,
)

__all__ = [
    "BackendConfig",
    "CacheConfig",
    "CompressionConfig",
    "GatewayConfig",
    "HashKeyConfig",
    "HealthCheckConfig",
    "LimitsConfig",
    "OutlierConfig",
    "RateLimitConfig",
    "RetryConfig",
    "RouteConfig",
    "TimeoutsConfig",
    "build_services",
]

PolicyName = Literal[
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "p2c",
    "peak_ewma",
    "ring_hash",
    "maglev",
    "random",
]
Encoding = Literal["zstd", "br", "gzip"]
ENCODINGS: tuple[Encoding, ...] = ("zstd", "br", "gzip")
IDEMPOTENT = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]


def _address(value: str) -> str:
    parse_host_port(value)
    return value


class BackendConfig(StrictModel):
    """One replica: a unique name, ``host:port``, a weight and an optional concurrency limit."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    address: str
    weight: int = Field(default=1, ge=0, le=1000)
    max_concurrent: int = Field(default=0, ge=0, description="0 = no limit")

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        return _address(value)


class HashKeyConfig(StrictModel):
    """Where the hash policies take their key from.

    ``header``/``cookie`` need ``name``; ``json`` needs ``field`` (a top-level body field such as
    ``user``); ``prompt_prefix`` hashes the first ``length`` characters of the prompt or messages.
    """

    source: Literal["header", "cookie", "path", "client_ip", "json", "prompt_prefix"]
    name: str | None = None
    field: str | None = None
    length: int = Field(default=256, ge=1, le=65536)

    @model_validator(mode="after")
    def _needs(self) -> HashKeyConfig:
        if self.source in ("header", "cookie") and not self.name:
            raise ValueError(f"hash source {self.source!r} needs 'name'")
        if self.source == "json" and not self.field:
            raise ValueError("hash source 'json' needs 'field' (e.g. field: user)")
        return self


class RetryConfig(StrictModel):
    """Retries go to another replica, only before the first response byte, under a budget."""

    attempts: int = Field(default=2, ge=0, le=10, description="extra tries after the first")
    on_status: list[int] = Field(default_factory=lambda: [502, 503, 504])
    methods: list[str] = Field(default_factory=lambda: list(IDEMPOTENT))
    budget_ratio: float = Field(default=0.2, ge=0, le=1)
    min_retries: int = Field(default=3, ge=0)
    buffer_bytes: int = Field(default=65536, ge=0, description="request bodies kept for a retry")


class RateLimitConfig(StrictModel):
    """Token buckets per client (``client_ip``) or per API key (Authorization / x-api-key)."""

    key: Literal["client_ip", "api_key"] = "client_ip"
    requests_per_second: float | None = Field(default=None, gt=0)
    burst: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    max_clients: int = Field(default=100_000, ge=1)


class CacheConfig(StrictModel):
    """A size-bounded cache for GET responses that Cache-Control allows."""

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    max_entry_bytes: int = Field(default=1024 * 1024, ge=0)
    default_ttl: float = Field(default=0, ge=0, description="seconds when no max-age is given")


class CompressionConfig(StrictModel):
    """Response compression negotiated by Accept-Encoding (never for SSE)."""

    encodings: list[Encoding] = Field(default_factory=lambda: list(ENCODINGS))
    min_bytes: int = Field(default=1024, ge=0)
    level: int = Field(default=3, ge=1, le=9)


class RouteConfig(StrictModel):
    """Requests whose path starts with ``prefix`` go through this route's policy and limits."""

    name: str = Field(default="default", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    prefix: str = "/"
    policy: PolicyName = "p2c"
    hash: HashKeyConfig | None = None
    hash_balance_factor: float | None = Field(
        default=None, ge=1.01, le=10, description="bounded loads, e.g. 1.25 (ring_hash, maglev)"
    )
    priority: int = Field(
        default=0, ge=-100, le=100, description="higher is served first from the queue"
    )
    retries: RetryConfig = RetryConfig()
    rate_limit: RateLimitConfig | None = None
    cache: CacheConfig | None = None
    compression: CompressionConfig | None = None

    @model_validator(mode="after")
    def _hash_policy(self) -> RouteConfig:
        if self.policy in ("ring_hash", "maglev") and self.hash is None:
            raise ValueError(f"policy {self.policy!r} needs 'hash' (where the key comes from)")
        if self.hash_balance_factor is not None and self.policy not in ("ring_hash", "maglev"):
            raise ValueError("hash_balance_factor applies to policies ring_hash and maglev only")
        return self


class TimeoutsConfig(StrictModel):
    """Seconds. ``idle`` is the longest gap between bytes of a response; 0 turns one off."""

    connect: float = Field(default=3.0, gt=0)
    first_byte: float = Field(default=60.0, ge=0)
    idle: float = Field(default=60.0, ge=0)
    total: float = Field(default=600.0, ge=0)
    client_keepalive: float = Field(default=75.0, gt=0)
    upstream_keepalive: float = Field(
        default=4.0, gt=0, description="close idle upstream connections before replicas do"
    )


class LimitsConfig(StrictModel):
    """Request size limits and the queue in front of busy replicas."""

    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    queue_size: int = Field(default=256, ge=0)
    queue_timeout: float = Field(default=5.0, gt=0)
    retry_after: int = Field(default=1, ge=0)
    max_idle_per_backend: int = Field(default=256, ge=0)


class HealthCheckConfig(StrictModel):
    """Active HTTP checks: a replica is up after ``rise`` passes and down after ``fall`` failures."""

    enabled: bool = True
    path: str = "/health"
    interval: float = Field(default=2.0, gt=0)
    timeout: float = Field(default=1.0, gt=0)
    rise: int = Field(default=2, ge=1)
    fall: int = Field(default=3, ge=1)
    slow_start: float = Field(default=0.0, ge=0, description="seconds to ramp a recovered replica")


class OutlierConfig(StrictModel):
    """Passive outlier detection from live traffic (Envoy-style)."""

    enabled: bool = True
    consecutive_5xx: int = Field(default=5, ge=0)
    consecutive_gateway_errors: int = Field(default=3, ge=0)
    success_rate_min_requests: int = Field(default=20, ge=1)
    success_rate_threshold: float = Field(default=0.5, ge=0, le=1)
    interval: float = Field(default=10.0, gt=0)
    base_ejection_time: float = Field(default=10.0, gt=0)
    max_ejection_time: float = Field(default=300.0, gt=0)
    max_ejection_percent: float = Field(default=50.0, ge=0, le=100)
    panic_threshold: float = Field(default=50.0, ge=0, le=100)


class GatewayConfig(StrictModel):
    """The ``gateway:`` section."""

    name: str = "gateway"
    listen: str = "127.0.0.1:8080"
    admin: str | None = "127.0.0.1:8081"
    admin_token: SecretStr | None = None
    workers: int = Field(default=1, ge=1, le=64)
    backends: list[BackendConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=lambda: [RouteConfig()])
    timeouts: TimeoutsConfig = TimeoutsConfig()
    limits: LimitsConfig = LimitsConfig()
    health: HealthCheckConfig = HealthCheckConfig()
    outlier: OutlierConfig = OutlierConfig()
    access_log: bool = True

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        return _address(value)

    @field_validator("admin")
    @classmethod
    def _admin(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        names = [b.name for b in self.backends]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"backend names must be unique, repeated: {sorted(dup)}")
        routes = [r.name for r in self.routes]
        if len(set(routes)) != len(routes):
            raise ValueError("route names must be unique")
        token = self.admin_token.get_secret_value() if self.admin_token is not None else None
        # an empty value (``${GYRO_TOKEN:-}`` unset) is no token
        require_token_when_exposed(self.admin, token, what="admin API", key="admin_token")
        return self


def build_services(section: GatewayConfig, data_dir: Path) -> list[ServiceSpec]:
    """The gateway as one service for ``gyro up`` (its state is in memory; ``data_dir`` unused)."""
    from gyroscope.errors import ConfigError
    from gyroscope.gateway._gateway import Gateway

    del data_dir
    if section.workers > 1:
        raise ConfigError(
            "several workers need their own processes: run `gyro gateway serve -c FILE` "
            "(under `gyro up` the gateway shares the daemon's process; set workers: 1)",
            key="gateway.workers",
        )
    return [ServiceSpec(name=section.name, config=section, factory=lambda: Gateway(section))]
