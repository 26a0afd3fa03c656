"""The lifecycle every long-running part of gyroscope follows.

A ``Service`` is started once, reports ``health()`` while it runs, and is stopped once with a grace
period: it stops taking new work, lets what is in flight finish for up to ``grace`` seconds, then
cancels the rest. The daemon composes services; each one also runs alone (``run_alone``).
"""

from __future__ import annotations

import abc
import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Health", "Service", "ServiceSpec", "run_alone"]

Status = Literal["ok", "degraded", "down"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """A service's own report: ``ok``, ``degraded`` (working, but something is off) or ``down``."""

    name: str
    status: Status
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, **self.data}


class Service(abc.ABC):
    """Base class of services run by ``gyro up`` or alone.

    >>> class Ticker(Service):
    ...     async def start(self) -> None: ...
    ...     async def stop(self, grace: float = 5.0) -> None: ...
    ...     def health(self) -> Health: return Health(name=self.name, status="ok")
    >>> Ticker("ticker").health().status
    'ok'
    """

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    async def start(self) -> None:
        """Bind listeners and start background work; raise a ``GyroscopeError`` if that fails."""

    @abc.abstractmethod
    async def stop(self, grace: float = 5.0) -> None:
        """Drain for up to ``grace`` seconds, then cancel what is left. Safe to call twice."""

    @abc.abstractmethod
    def health(self) -> Health:
        """What the service would say about itself right now; never blocks."""

    async def reconfigure(self, config: Any) -> bool:
        """Apply a changed config in place, keeping listeners and in-flight work.

        Return True when applied; False (the default) asks the daemon to replace the service with
        a new one built from ``config``, as it must when, say, a listen address changed.
        """
        return False


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How to build one service: its unique name, the config it comes from, and a factory.

    The daemon compares ``(name, config)`` on reload: an unchanged service keeps running, a changed
    one is replaced. Building the spec does no I/O; ``factory()`` builds the service (still no I/O)
    and ``start()`` binds.
    """

    name: str
    config: Any
    factory: Callable[[], Service]


async def run_alone(service: Service, *, grace: float = 5.0, on_ready: Any = None) -> None:
    """Run one service until SIGINT or SIGTERM, then stop it gracefully.

    ``on_ready`` is called (with the service) once it has started, e.g. to print its address.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await service.start()
        if on_ready is not None:
            on_ready(service)
        await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await asyncio.wait_for(service.stop(grace), timeout=grace + 2.0)
