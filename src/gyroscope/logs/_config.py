"""The ``logs:`` section of ``gyroscope.yaml`` and the service ``gyro up`` builds from it.

>>> cfg = LogsConfig.model_validate({"listen": "127.0.0.1:3100", "retention": {"max_age": "7d"}})
>>> cfg.retention.max_age
'7d'
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr, field_validator, model_validator

from gyroscope.core import ServiceSpec, StrictModel, is_loopback, parse_host_port

__all__ = [
    "LogsConfig",
    "NatsReplication",
    "RetentionConfig",
    "StreamRetention",
    "build_services",
    "parse_size",
]

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*\Z")
_FACTOR = {
    None: 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def parse_size(text: str) -> int:
    """``512MiB`` -> bytes (0 means no limit)."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"invalid size {text!r} (use e.g. 500MB, 2GiB, 0 for no limit)")
    return int(float(m.group(1)) * _FACTOR[m.group(2)])


def _duration(text: str) -> str:
    from gyroscope.logs._errors import QuerySyntaxError
    from gyroscope.logs._logql import parse_duration

    if text in ("", "0"):
        return "0s"
    try:
        parse_duration(text)
    except QuerySyntaxError as exc:
        raise ValueError(str(exc)) from None
    return text


class StreamRetention(StrictModel):
    """Retention for the streams a selector matches, e.g. ``{level="debug"}`` for 1d."""

    selector: str
    max_age: str = "0s"
    max_bytes: str = "0"

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        from gyroscope.logs._errors import QuerySyntaxError
        from gyroscope.logs._logql import parse_selector

        try:
            parse_selector(value)
        except QuerySyntaxError as exc:
            raise ValueError(str(exc)) from None
        return value

    _age = field_validator("max_age")(lambda cls, v: _duration(v))
    _bytes = field_validator("max_bytes")(lambda cls, v: (parse_size(v), v)[1])


class RetentionConfig(StrictModel):
    """Default limits (``0`` = keep forever) and per-stream overrides, first match wins."""

    max_age: str = "30d"
    max_bytes: str = "0"
    streams: list[StreamRetention] = []
    every: str = "5m"

    _age = field_validator("max_age", "every")(lambda cls, v: _duration(v))
    _bytes = field_validator("max_bytes")(lambda cls, v: (parse_size(v), v)[1])


class NatsReplication(StrictModel):
    """Replicated mode: every record also goes to a JetStream stream with ``replicas`` copies."""

    servers: list[str]
    stream: str = "GYRO_LOGS"
    subject: str = "gyro.logs"
    replicas: int = 3
    node_configs: list[str] = []  # nats.conf of nodes on this machine: their files are checked
    check_seconds: float = 300.0
    auto_repair: bool = True

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one nats:// server")
        return value


class LogsConfig(StrictModel):
    """The log server: where it listens, how it checkpoints, scrubs and expires data."""

    enabled: bool = True
    listen: str = "127.0.0.1:3100"
    syslog_udp: str | None = None
    syslog_tcp: str | None = None
    token: SecretStr | None = None
    segment_mb: int = 16
    checkpoint_every: int = 100_000
    checkpoint_seconds: float = 10.0
    checkpoint_dir: str | None = None
    scrub_seconds: float = 3600.0
    tail_max_seconds: float = 3600.0
    retention: RetentionConfig = RetentionConfig()
    replication: NatsReplication | None = None

    @field_validator("listen", "syslog_udp", "syslog_tcp")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value)
        return value

    @model_validator(mode="after")
    def _token_when_exposed(self) -> LogsConfig:
        host, _ = parse_host_port(self.listen)
        if not is_loopback(host) and not self.token:
            raise ValueError(f"listen {self.listen} is not loopback: set logs.token as well")
        return self


def build_services(section: LogsConfig, data_dir: Path) -> list[ServiceSpec]:
    """The log server ``gyro up`` runs (none when ``enabled: false``); no I/O here."""
    if not section.enabled:
        return []

    def factory() -> LogServer:
        return LogServer(section, data_dir / "logs")

    from gyroscope.logs._service import LogServer

    return [ServiceSpec("logs", section, factory)]
