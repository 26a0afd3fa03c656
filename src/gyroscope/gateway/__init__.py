"""The load-balancing gateway: a streaming HTTP/1.1 reverse proxy in front of model replicas.

>>> from gyroscope.gateway import Gateway, GatewayConfig
>>> cfg = GatewayConfig(listen="127.0.0.1:0", admin=None,
...                     backends=[{"name": "d1", "address": "127.0.0.1:8001"}])
>>> gw = Gateway(cfg)          # await gw.start(); gw.url; ...; await gw.stop()
"""

# isort: off
# First: decides between the compiled hot path and the sources, before any of it is imported.
from gyroscope.gateway._native import BUILD

# isort: on
from gyroscope.gateway._admin import AdminApi
from gyroscope.gateway._cache import ResponseCache
from gyroscope.gateway._config import (
    BackendConfig,
    CacheConfig,
    CompressionConfig,
    GatewayConfig,
    HashKeyConfig,
    HealthCheckConfig,
    LimitsConfig,
    OutlierConfig,
    RateLimitConfig,
    RetryConfig,
    RouteConfig,
    TimeoutsConfig,
    build_services,
)
from gyroscope.gateway._endpoint import Endpoint
from gyroscope.gateway._errors import AdminApiError, BackendExistsError, UnknownBackendError
from gyroscope.gateway._gateway import Gateway
from gyroscope.gateway._hashing import MaglevTable, Ring, hash64
from gyroscope.gateway._health import HealthThresholds, OutlierDetector, available
from gyroscope.gateway._keys import KeySpec
from gyroscope.gateway._limits import ClientLimiter, RetryBudget, TokenBucket, usage_tokens
from gyroscope.gateway._policies import (
    P2C,
    POLICIES,
    LeastConnections,
    Maglev,
    PeakEwma,
    Policy,
    RandomPolicy,
    RingHash,
    RoundRobin,
    SmoothWeightedRoundRobin,
    make_policy,
)

__all__ = [
    "BUILD",
    "P2C",
    "POLICIES",
    "AdminApi",
    "AdminApiError",
    "BackendConfig",
    "BackendExistsError",
    "CacheConfig",
    "ClientLimiter",
    "CompressionConfig",
    "Endpoint",
    "Gateway",
    "GatewayConfig",
    "HashKeyConfig",
    "HealthCheckConfig",
    "HealthThresholds",
    "KeySpec",
    "LeastConnections",
    "LimitsConfig",
    "Maglev",
    "MaglevTable",
    "OutlierConfig",
    "OutlierDetector",
    "PeakEwma",
    "Policy",
    "RandomPolicy",
    "RateLimitConfig",
    "ResponseCache",
    "RetryBudget",
    "RetryConfig",
    "Ring",
    "RingHash",
    "RoundRobin",
    "RouteConfig",
    "SmoothWeightedRoundRobin",
    "TimeoutsConfig",
    "TokenBucket",
    "UnknownBackendError",
    "available",
    "build_services",
    "hash64",
    "make_policy",
    "usage_tokens",
]
