"""The ``monitor:`` section: what to scrape and probe, which rule files, how to route alerts.

>>> cfg = MonitorConfig.model_validate({
...     "scrape": [{"job": "demo", "targets": ["127.0.0.1:8001"], "interval": "1s"}],
...     "rule_files": ["rules.yaml"],
...     "alerting": {"route": {"receiver": "ops", "group_by": ["alertname"]},
...                  "receivers": [{"name": "ops", "webhook": {"url": "http://127.0.0.1:9/hook"}}]},
... })
>>> cfg.scrape[0].interval
1.0
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from gyroscope.core import StrictModel, parse_host_port, require_token_when_exposed

__all__ = [
    "AlertingConfig",
    "ChatConfig",
    "CommandConfig",
    "DatabaseCheck",
    "EmailConfig",
    "EscalationConfig",
    "HostConfig",
    "InhibitRule",
    "MonitorConfig",
    "ProbeConfig",
    "ReceiverConfig",
    "RouteConfig",
    "ScrapeConfig",
    "SloConfig",
    "WebhookConfig",
    "parse_duration",
]


_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Prometheus duration (``0s``, ``90s``, ``1h30m``, ``1.5s``, ``3d``).

    >>> parse_duration("1h30m"), parse_duration("500ms"), parse_duration(0)
    (5400.0, 0.5, 0.0)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        parts = _PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNITS[u] for n, u in parts)
        if text.replace(".", "", 1).isdigit():
            return float(text)
    raise ValueError("expected a duration such as 0s, 15s, 5m or 1h30m")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class ScrapeConfig(StrictModel):
    """One job: targets serving the Prometheus text format."""

    job: str
    targets: list[str] = Field(min_length=1)
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    interval: Duration = 15.0
    timeout: Duration = 10.0
    labels: dict[str, str] = Field(default_factory=dict)
    honor_labels: bool = False  # true for /federate of other monitors: their labels win

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for target in value:
            parse_host_port(target)
        return value


class ProbeConfig(StrictModel):
    """An HTTP, TCP or DNS check run from here (``quorum`` of ``locations`` when probing from several)."""

    name: str
    kind: Literal["http", "tcp", "dns"] = "http"
    target: str
    interval: Duration = 15.0
    timeout: Duration = 5.0
    method: str = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200])
    body_regex: str | None = None
    json_path: str | None = None
    json_value: Any = None
    ca_file: str | None = None  # trust this CA (PEM) for https targets, e.g. a private CA
    insecure_skip_verify: bool = False
    labels: dict[str, str] = Field(default_factory=dict)


class HostConfig(StrictModel):
    """Host metrics (CPU, memory, disk, network, load, named processes) and GPUs when present."""

    enabled: bool = True
    interval: Duration = 15.0
    processes: list[str] = Field(default_factory=list)
    gpu: bool = True


class DatabaseCheck(StrictModel):
    """Connect to a database, time a trivial query and read key statistics.

    ``dsn`` is secret: for postgres a libpq URL, for mysql ``mysql://user:password@host:port/db``,
    for redis the password. Without it: postgres as ``postgres``, mysql as ``root``, no password.

    >>> DatabaseCheck(name="shop", kind="mysql", address="127.0.0.1:3306").kind
    'mysql'
    """

    name: str
    kind: Literal["redis", "postgres", "mysql"]
    address: str = "127.0.0.1:6379"
    dsn: SecretStr | None = None
    interval: Duration = 15.0
    timeout: Duration = 5.0


class SloConfig(StrictModel):
    """A ratio SLO; generates multi-window multi-burn-rate alerts (14.4x 1h/5m, 6x 6h/30m, 1x 3d/6h)."""

    name: str
    objective: float = Field(gt=0, lt=1)  # e.g. 0.999
    errors: str  # PromQL counter selector of bad events, e.g. http_requests_total{code=~"5.."}
    total: str  # PromQL counter selector of all events
    labels: dict[str, str] = Field(default_factory=dict)


class WebhookConfig(StrictModel):
    url: SecretStr  # may carry user:password@ or a secret path; messages show scheme://host/…
    max_alerts: int = 0
    token: SecretStr | None = None


class ChatConfig(StrictModel):
    url: SecretStr  # a Slack-style incoming webhook: the path is the secret
    channel: str | None = None


class EmailConfig(StrictModel):
    to: list[str] = Field(min_length=1)
    sender: str = "gyroscope@localhost"
    smarthost: str = "127.0.0.1:25"
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False


class CommandConfig(StrictModel):
    argv: list[str] = Field(min_length=1)
    timeout: Duration = 30.0


class ReceiverConfig(StrictModel):
    name: str
    webhook: WebhookConfig | None = None
    chat: ChatConfig | None = None
    email: EmailConfig | None = None
    command: CommandConfig | None = None
    send_resolved: bool = True


class EscalationConfig(StrictModel):
    after: Duration
    receiver: str


class RouteConfig(StrictModel):
    """A node of the routing tree; children inherit what they do not set."""

    receiver: str | None = None
    matchers: list[str] = Field(default_factory=list)  # 'severity="page"', 'team=~"ml|infra"'
    match: dict[str, str] = Field(default_factory=dict)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(default=False, alias="continue")
    escalate: list[EscalationConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)


class InhibitRule(StrictModel):
    source_matchers: list[str]
    target_matchers: list[str]
    equal: list[str] = Field(default_factory=list)


class AlertingConfig(StrictModel):
    route: RouteConfig = RouteConfig(receiver="default")
    receivers: list[ReceiverConfig] = Field(
        default_factory=lambda: [ReceiverConfig(name="default")]
    )
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    flap_threshold: int = Field(default=4, ge=2)  # state changes within flap_window = flapping
    flap_window: Duration = 600.0
    resolve_timeout: Duration = 300.0
    # e.g. http://127.0.0.1:3100: alert events also go there (secret: it may carry user:password)
    log_store_url: SecretStr | None = None
    log_store_token: SecretStr | None = None  # the log server's logs.token, when it has one

    @model_validator(mode="after")
    def _receivers_exist(self) -> AlertingConfig:
        names = {r.name for r in self.receivers}
        if self.route.receiver is None:
            raise ValueError("alerting.route needs a receiver")

        def walk(route: RouteConfig) -> None:
            for name in [route.receiver, *(e.receiver for e in route.escalate)]:
                if name is not None and name not in names:
                    raise ValueError(f"route names receiver {name!r}, which is not in receivers")
            for child in route.routes:
                walk(child)

        walk(self.route)
        return self


class MonitorConfig(StrictModel):
    """The ``monitor:`` section of ``gyroscope.yaml`` (or a file of its own for ``gyro monitor serve``)."""

    name: str = "monitor"
    listen: str = "127.0.0.1:9464"
    token: SecretStr | None = None
    scrape: list[ScrapeConfig] = Field(default_factory=list)
    probes: list[ProbeConfig] = Field(default_factory=list)
    host: HostConfig = HostConfig()
    databases: list[DatabaseCheck] = Field(default_factory=list)
    rule_files: list[str] = Field(default_factory=list)
    rules: list[dict[str, Any]] = Field(default_factory=list)  # inline groups, as in a rule file
    slos: list[SloConfig] = Field(default_factory=list)
    evaluation_interval: Duration = 15.0
    retention: Duration = 15 * 86400.0
    downsample_after: Duration | None = 7 * 86400.0  # older data keeps one sample per resolution
    downsample_resolution: Duration = 300.0
    alerting: AlertingConfig = AlertingConfig()
    external_url: str = ""

    @model_validator(mode="after")
    def _check(self) -> MonitorConfig:
        require_token_when_exposed(
            self.listen, self.token, what="listening", key="monitor.token", env="GYRO_MONITOR_TOKEN"
        )
        return self
