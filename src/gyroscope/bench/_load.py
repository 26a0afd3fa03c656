"""The load-test API: ``LoadConfig`` in, ``Result`` out; the CLI is a thin layer over this.

``run_load`` validates the config (bad URL, impossible rate, unknown host: one ``BenchError`` line),
resolves the host once (DNS failures surface here, not as thousands of counted errors), builds the
worker plan, runs it and judges the run: a generator that ran hot or fell behind schedule adds a
loud warning to the result.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from gyroscope.bench._engine import WorkerPlan
from gyroscope.bench._recorder import Interval
from gyroscope.bench._result import Result
from gyroscope.bench._runner import execute
from gyroscope.bench._target import Target, build_spec, parse_target
from gyroscope.bench._units import Stage, parse_duration, parse_rate, parse_stage
from gyroscope.core import StrictModel
from gyroscope.core import run as run_loop
from gyroscope.errors import BenchError, TargetError

__all__ = ["LoadConfig", "assess", "build_plan", "resolve", "run_load", "run_load_sync"]

MAX_DURATION = 3600.0
CPU_WARNING = 0.8


def _duration(value: Any) -> Any:
    return None if value is None else parse_duration(value)


class LoadConfig(StrictModel):
    """A load test. Closed model with ``connections``, open model with ``rate`` (or ``stages``).

    >>> cfg = LoadConfig(url="http://127.0.0.1:8080/", connections=10, duration="2s")
    >>> cfg.duration
    2.0
    """

    url: str
    method: str = "GET"
    headers: list[str] = Field(default_factory=list)
    body: str = ""
    expect: list[int] = Field(default_factory=list)
    connections: int | None = Field(default=None, ge=1, le=100_000)
    rate: float | None = None
    poisson: bool = False
    stages: list[str] = Field(default_factory=list)
    duration: float | None = None
    requests: int | None = Field(default=None, ge=1)
    warmup: float = 0.0
    timeout: float = 30.0
    connect_timeout: float = 5.0
    max_connections: int = Field(default=1000, ge=1, le=100_000)
    think_time: float = 0.0
    workers: int = Field(default=1, ge=1, le=256)
    scenario: Path | None = None
    data: Path | None = None
    insecure: bool = False
    seed: int | None = None

    _d = field_validator(
        "duration", "warmup", "timeout", "connect_timeout", "think_time", mode="before"
    )(_duration)

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        return None if value is None else parse_rate(value)

    @model_validator(mode="after")
    def _model(self) -> LoadConfig:
        if self.rate is not None and self.connections is not None and not self.stages:
            pass  # open model with a connection cap: connections caps, rate drives
        kinds = {parse_stage(s).kind for s in self.stages}
        if len(kinds) > 1:
            raise BenchError("stages mix rates (rps) and users (vu); use one kind per run")
        if self.stages and (self.rate is not None or self.duration is not None):
            raise BenchError("give either --stage ... or --rate/--duration, not both")
        if self.timeout <= 0:
            raise BenchError("the timeout must be above 0")
        return self

    def stage_list(self) -> tuple[Stage, ...]:
        if self.stages:
            return tuple(parse_stage(s) for s in self.stages)
        duration = self.duration
        if duration is None:
            duration = MAX_DURATION if self.requests is not None else 10.0
        if duration <= 0:
            raise BenchError("the duration must be above 0")
        if self.rate is not None:
            return (Stage(duration=duration, start=self.rate, end=self.rate, kind="rate"),)
        users = self.connections or 10
        return (Stage(duration=duration, start=users, end=users, kind="users"),)


_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "x-api-key", "api-key")


def mask_header(header: str) -> str:
    """``'Authorization: Bearer s3cr3t'`` -> ``'Authorization: ***'``: results never hold secrets.

    >>> mask_header("Authorization: Bearer abc"), mask_header("Accept: */*")
    ('Authorization: ***', 'Accept: */*')
    """
    name, sep, _ = header.partition(":")
    return f"{name}: ***" if sep and name.strip().lower() in _SECRET_HEADERS else header


def resolve(target: Target) -> tuple[str, int]:
    """The address to connect to; an unknown host is one ``TargetError`` line, here, once."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetError(
            f"cannot resolve host {target.host!r}: {exc}", target=target.origin
        ) from None
    _family, _, _, _, sockaddr = infos[0]
    return str(sockaddr[0]), int(sockaddr[1])


def build_plan(cfg: LoadConfig) -> WorkerPlan:
    if cfg.scenario is not None:
        from gyroscope.bench._scenario import load_scenario

        scenario = load_scenario(cfg.scenario, base_url=cfg.url or None, data=cfg.data)
        target, requests, rows = scenario.target, scenario.requests, scenario.rows
    else:
        target = parse_target(cfg.url, insecure=cfg.insecure)
        requests = (
            build_spec(
                target,
                method=cfg.method,
                headers=cfg.headers,
                body=cfg.body,
                expect=cfg.expect or None,
            ),
        )
        rows = []
        if cfg.data is not None:
            from gyroscope.bench._scenario import load_rows

            rows = load_rows(cfg.data)
    stages = cfg.stage_list()
    return WorkerPlan(
        target=target,
        address=resolve(target),
        requests=tuple(requests),
        stages=stages,
        warmup=cfg.warmup,
        count=cfg.requests,
        timeout=cfg.timeout,
        connect_timeout=cfg.connect_timeout,
        max_connections=cfg.connections if cfg.rate and cfg.connections else cfg.max_connections,
        think_time=cfg.think_time,
        poisson=cfg.poisson,
        seed=cfg.seed,
        rows=tuple(rows),
    )


def assess(result: Result, plan: WorkerPlan) -> None:
    """Add loud warnings when the generator, not the server, may have set the figures."""
    warnings = result.data.warnings
    cpu = result.metric("cpu")
    if cpu > CPU_WARNING and result.data.elapsed >= 1.0:  # too short a run to judge
        warnings.append(
            f"WARNING: the load generator used {cpu:.0%} of a core per worker; figures may be "
            "limited by the generator itself (add --workers or lower the load)"
        )
    if not plan.open_model:
        return
    c = result.data.counters
    sent = c["requests"] + c["unfinished"]
    planned = sent + c["unsent"]
    lag_p99 = result.hist_ms("lag", 99)
    if planned and (c["unsent"] > 0.01 * planned or lag_p99 > 10.0):
        why = (
            "its own CPU is saturated"
            if cpu > CPU_WARNING
            else f"all {plan.max_connections} connections were busy (raise --max-connections) "
            "or the server is saturated"
            if c["unsent"]
            else "sends were delayed"
        )
        warnings.append(
            f"WARNING: could not hold the rate: {c['unsent']} of {planned} requests never sent, "
            f"sends ran up to {lag_p99:.1f} ms (p99) behind schedule; {why}. Latencies still count "
            "from the intended send times."
        )


async def run_load(
    cfg: LoadConfig,
    *,
    progress: Callable[[int, Interval], None] | None = None,
    stop: asyncio.Event | None = None,
    kind: str = "load",
    plan: WorkerPlan | None = None,
) -> Result:
    """Run a load test and return its ``Result`` (also when stopped early through ``stop``).

    >>> # result = await run_load(LoadConfig(url="http://127.0.0.1:8080/", rate=100, duration=5))
    """
    plan = plan or build_plan(cfg)
    data, interrupted = await execute(plan, workers=cfg.workers, progress=progress, stop=stop)
    config = cfg.model_dump(mode="json")
    config["headers"] = [mask_header(h) for h in cfg.headers]
    config["stage_list"] = [s.__dict__ for s in plan.stages]
    config["model"] = "open" if plan.open_model else "closed"
    result = Result(kind=kind, target=cfg.url, data=data, config=config, interrupted=interrupted)
    assess(result, plan)
    return result


def run_load_sync(cfg: LoadConfig, **kwargs: Any) -> Result:
    """``run_load`` for synchronous callers (its own uvloop event loop)."""
    return run_loop(run_load(cfg, **kwargs))
