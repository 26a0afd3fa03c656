"""Running a gateway alone: config files, SIGHUP reload, and several worker processes.

With ``workers > 1`` the parent starts that many processes; each binds the same listen address with
SO_REUSEPORT (the kernel spreads connections) and its own admin port (``admin`` port + index).
Worker 0's admin API forwards every change (add, remove, weight, drain, reload) to the others, so
``gyro gateway backends ...`` talks to one address and all workers change together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gyroscope.core import parse_host_port, read_yaml, validate_config
from gyroscope.errors import ConfigError
from gyroscope.gateway._config import GatewayConfig
from gyroscope.gateway._gateway import Gateway

__all__ = ["load_gateway_config", "run_workers", "serve"]

log = logging.getLogger(__name__)

WORKER_ENV = "GYRO_GATEWAY_WORKER_INDEX"


def load_gateway_config(path: Path) -> GatewayConfig:
    """A gateway file, or a ``gyroscope.yaml`` whose ``gateway:`` section is used."""
    data = read_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("gateway"), dict):
        data = data["gateway"]
    return validate_config(GatewayConfig, data, path)


def worker_config(config: GatewayConfig, index: int) -> GatewayConfig:
    """Worker ``index`` of ``config.workers``: admin on port + index (none if admin is off)."""
    if config.admin is None or index == 0:
        return config
    host, port = parse_host_port(config.admin)
    return config.model_copy(update={"admin": _join(host, port + index)})


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _peers(config: GatewayConfig, index: int) -> list[str]:
    if config.workers <= 1 or config.admin is None or index != 0:
        return []
    host, port = parse_host_port(config.admin)
    return [f"http://{_join(host, port + i)}" for i in range(1, config.workers)]


async def serve(
    config: GatewayConfig,
    *,
    config_path: Path | None = None,
    index: int = 0,
    on_ready: Callable[[Gateway], Any] | None = None,
    grace: float = 10.0,
) -> None:
    """Run one gateway (one worker) until SIGINT/SIGTERM; SIGHUP re-reads ``config_path``."""
    gw = Gateway(worker_config(config, index), reuse_port=config.workers > 1)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    async def reload() -> None:
        if config_path is None:
            return
        fresh = load_gateway_config(config_path)
        await gw.reload(worker_config(fresh, index))
        log.warning("%s: reloaded %s", gw.name, config_path)

    def on_hup() -> None:
        task = loop.create_task(reload())
        task.add_done_callback(_log_failure)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await gw.start()
        if gw.admin is not None:
            gw.admin.reloader = reload if config_path is not None else None
            gw.admin.peers = _peers(config, index)
        if on_ready is not None:
            on_ready(gw)
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await gw.stop(grace)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("gateway reload failed: %s", task.exception())


def run_workers(config: GatewayConfig, argv: list[str]) -> int:
    """Start ``config.workers`` copies of ``argv`` (each told its index), wait, forward signals."""
    if parse_host_port(config.listen)[1] == 0:
        raise ConfigError("several workers need a fixed listen port, not 0", key="listen")
    if config.admin is not None and parse_host_port(config.admin)[1] == 0:
        raise ConfigError("several workers need a fixed admin port, not 0", key="admin")
    children = []
    for index in range(config.workers):
        env = {**os.environ, WORKER_ENV: str(index)}
        children.append(subprocess.Popen([sys.executable, *argv], env=env))

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    # One worker failing (its port taken, a crash) stops the others: half a gateway is worse
    # than a clear failure that a supervisor restarts.
    while any(child.poll() is None for child in children):
        if any(child.returncode not in (None, 0) for child in children):
            forward(signal.SIGTERM, None)
            break
        time.sleep(0.2)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
