"""The shared kernel: config loading, Service lifecycle, clock, data dir, HTTP, metrics."""

from gyroscope.core._auth import bearer_ok
from gyroscope.core._browser import origin_problem
from gyroscope.core._client import JsonCallError, call_json
from gyroscope.core._clock import Clock, MonotonicClock
from gyroscope.core._config import (
    Address,
    StrictModel,
    format_validation_error,
    is_loopback,
    load_config,
    parse_host_port,
    read_yaml,
    require_token_when_exposed,
    validate_config,
)
from gyroscope.core._datadir import DataDir, atomic_write, create_new, default_data_dir
from gyroscope.core._http import (
    Connection,
    Handler,
    HttpServer,
    Request,
    Response,
    StreamResponse,
    WebSocket,
    WebSocketResponse,
)
from gyroscope.core._loop import run, uvloop_available
from gyroscope.core._metrics import CollectorRegistry, metrics_response
from gyroscope.core._service import Health, Service, ServiceSpec, run_alone
from gyroscope.core._sqlite import open_shared

__all__ = [
    "Address",
    "Clock",
    "CollectorRegistry",
    "Connection",
    "DataDir",
    "Handler",
    "Health",
    "HttpServer",
    "JsonCallError",
    "MonotonicClock",
    "Request",
    "Response",
    "Service",
    "ServiceSpec",
    "StreamResponse",
    "StrictModel",
    "WebSocket",
    "WebSocketResponse",
    "atomic_write",
    "bearer_ok",
    "call_json",
    "create_new",
    "default_data_dir",
    "format_validation_error",
    "is_loopback",
    "load_config",
    "metrics_response",
    "open_shared",
    "origin_problem",
    "parse_host_port",
    "read_yaml",
    "require_token_when_exposed",
    "run",
    "run_alone",
    "uvloop_available",
    "validate_config",
]
