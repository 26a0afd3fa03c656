"""Active health checks: ``GET <path>`` on each replica every ``interval``, on its own connection.

A 2xx within ``timeout`` passes; anything else (refused, timeout, 5xx such as a model server's
503 while loading) fails. ``rise`` passes bring a replica back, ``fall`` failures take it out.
The probe uses a fresh connection so it also notices a replica that stopped accepting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from gyroscope.gateway._config import HealthCheckConfig
from gyroscope.gateway._endpoint import Endpoint
from gyroscope.gateway._health import HealthThresholds

if TYPE_CHECKING:
    from gyroscope.gateway._gateway import Gateway

__all__ = ["HealthChecker", "probe"]

log = logging.getLogger(__name__)


async def probe(host: str, port: int, path: str, limit: float) -> bool:
    """One check: True when the replica answers ``path`` with a 2xx status in time."""
    writer = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: gyroscope-health\r\n"
                "connection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    parts = line.split(None, 2)
    return len(parts) >= 2 and parts[1][:1] == b"2" and parts[0].startswith(b"HTTP/")


class HealthChecker:
    """Checks every replica of ``gateway`` in one background task."""

    def __init__(self, gateway: Gateway, config: HealthCheckConfig) -> None:
        self.gateway = gateway
        self.config = config
        self._states: dict[str, HealthThresholds] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            eps = list(self.gateway.endpoints)
            names = {ep.name for ep in eps}
            for gone in [n for n in self._states if n not in names]:
                del self._states[gone]  # a replica added again under this name starts afresh
            await asyncio.gather(*(self._check(ep) for ep in eps))
            await asyncio.sleep(self.config.interval)

    async def _check(self, ep: Endpoint) -> None:
        cfg = self.config
        ok = await probe(ep.host, ep.port, cfg.path, cfg.timeout)
        state = self._states.get(ep.name)
        if state is None:
            state = self._states[ep.name] = HealthThresholds(cfg.rise, cfg.fall, ep.healthy)
        if state.observe(ok):
            self.gateway.set_healthy(ep, state.healthy)
