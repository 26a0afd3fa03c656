"""The TCP fault proxy: a ``Service`` that forwards ``listen`` to ``upstream`` and injects faults.

Faults change at runtime and reach connections that are already open (latency, bandwidth, blackhole,
timeout) as well as new ones (reset, refuse). Control methods may be called from any thread: when the
caller is not on the proxy's event loop, the call is carried over to it and waits for the result, so
``with FaultProxy.background(...) as proxy: proxy.update_faults(...)`` works from plain sync code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gyroscope.chaos._faults import Faults
from gyroscope.chaos._link import Counters, Link, Shared, Side
from gyroscope.chaos._metrics import ProxyCollector
from gyroscope.core import (
    CollectorRegistry,
    Health,
    HttpServer,
    Service,
    is_loopback,
    parse_host_port,
)
from gyroscope.errors import AddressInUseError, ProxyConfigError, ProxyError

if TYPE_CHECKING:
    from gyroscope.chaos._config import ProxyConfig

__all__ = ["FaultProxy", "ProxyStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyStats:
    """Counters since the proxy started (``connections_active`` is a current value)."""

    connections_accepted: int
    connections_active: int
    connections_reset: int
    connections_cut: int
    connections_timed_out: int
    upstream_errors: int
    bytes_upstream: int
    bytes_downstream: int
    bytes_dropped: int

    @classmethod
    def of(cls, c: Counters) -> ProxyStats:
        return cls(
            connections_accepted=c.accepted,
            connections_active=c.active,
            connections_reset=c.reset,
            connections_cut=c.cut,
            connections_timed_out=c.timed_out,
            upstream_errors=c.upstream_errors,
            bytes_upstream=c.bytes_upstream,
            bytes_downstream=c.bytes_downstream,
            bytes_dropped=c.bytes_dropped,
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _address(value: str, what: str) -> tuple[str, int]:
    try:
        return parse_host_port(value)
    except ValueError as exc:
        raise ProxyConfigError(f"{what}: {exc}") from None


class FaultProxy(Service):
    """Forward TCP connections from ``listen`` to ``upstream``, with faults set at runtime.

    >>> proxy = FaultProxy(upstream="127.0.0.1:6379", listen="127.0.0.1:0", name="redis")
    >>> proxy.update_faults(latency_ms=50, direction="downstream").latency_ms
    50
    >>> proxy.clear_faults().active()
    False

    ``await proxy.start()`` (or ``async with FaultProxy(...) as proxy:``) binds, and
    ``proxy.address`` then names the real port; for sync code use
    ``with FaultProxy.background(upstream=...) as proxy:``. With ``control="127.0.0.1:8474"`` it
    also serves the HTTP control API (``GET/POST/DELETE /faults``, ``POST /cut``, ``GET /stats``).
    """

    def __init__(
        self,
        upstream: str,
        listen: str = "127.0.0.1:0",
        name: str = "proxy",
        *,
        faults: Faults | None = None,
        control: str | None = None,
        control_token: str | None = None,
        connect_timeout: float = 10.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(name)
        self.upstream = upstream
        self._upstream = _address(upstream, f"{name}: upstream")
        self.host, self._port = _address(listen, f"{name}: listen")
        self._control_addr = _address(control, f"{name}: control") if control else None
        if self._control_addr and not is_loopback(self._control_addr[0]) and not control_token:
            raise ProxyConfigError(
                f"{name}: control API on {control} (not loopback) needs a token; "
                "pass --control-token or bind it to 127.0.0.1"
            )
        self.control_token = control_token
        self.connect_timeout = connect_timeout
        self._faults = faults or Faults()
        self._rng = random.Random(seed)
        self._shared: Shared | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._server: asyncio.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._control: HttpServer | None = None
        self._pending_sock: socket.socket | None = None
        self._handed_over = False
        self._started = False
        self._stopping = False
        self.registry: CollectorRegistry = CollectorRegistry()
        self.registry.register(
            ProxyCollector(
                name,
                lambda: self._shared.counters if self._shared else Counters(),
                lambda: self._faults,
            )
        )

    @classmethod
    def from_config(cls, config: ProxyConfig) -> FaultProxy:
        token = config.control_token.get_secret_value() if config.control_token else None
        return cls(
            config.upstream,
            config.listen,
            config.name,
            faults=config.faults,
            control=config.control,
            control_token=token,
        )

    @classmethod
    def background(
        cls, upstream: str, listen: str = "127.0.0.1:0", name: str = "proxy", **kwargs: Any
    ) -> contextlib.AbstractContextManager[FaultProxy]:
        """Run a proxy on its own event loop in a daemon thread, for sync code and tests.

        >>> with FaultProxy.background(upstream="127.0.0.1:6379") as proxy:  # doctest: +SKIP
        ...     proxy.update_faults(latency_ms=100)
        """
        from gyroscope.chaos._background import run_in_background

        return run_in_background(cls(upstream, listen, name, **kwargs))

    # -- addresses ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._port}"

    @property
    def control_url(self) -> str | None:
        return self._control.url if self._control is not None else None

    @property
    def listening(self) -> bool:
        return self._server is not None or self._serving is not None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            raise ProxyError(f"{self.name}: already started")
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._shared = Shared(
            loop, self.name, self._upstream, self.connect_timeout, self._faults, self._rng
        )
        self._shared.set_faults(self._faults)
        if not self._faults.refuse:
            self._listen(first=True)
            serving = self._serving
            assert serving is not None
            await serving
        if self._control_addr is not None:
            from gyroscope.chaos._control import control_handler

            host, port = self._control_addr
            self._control = HttpServer(
                control_handler(self),
                host=host,
                port=port,
                name=f"{self.name}-control",
                check_host=True,
            )
            try:
                await self._control.start()
            except BaseException:
                self._unlisten()
                raise
        self._started = True
        log.info(
            "%s: %s -> %s (faults: %s)",
            self.name,
            self.address,
            self.upstream,
            self._faults.describe(),
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, let connections end on their own for ``grace`` s, then reset the rest."""
        if self._shared is None or self._stopping:
            return
        self._stopping = True
        self._unlisten()
        if self._control is not None:
            await self._control.stop(grace=min(grace, 1.0))
        if self._shared.links and grace > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shared.idle.wait(), timeout=grace)
        for link in list(self._shared.links):
            link.reset()
        await asyncio.sleep(0)

    async def __aenter__(self) -> FaultProxy:
        """``async with FaultProxy(...) as proxy:`` starts it, and stops it (grace 0) on exit."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(grace=0.0)

    def health(self) -> Health:
        if self._shared is None or self._stopping:
            detail = "stopped" if self._stopping else "not started"
            return Health(name=self.name, status="down", detail=detail)
        state = "listening" if self.listening else "refusing (fault)"
        return Health(
            name=self.name,
            status="ok",
            detail=f"{self.address} -> {self.upstream}, {state}, faults: {self._faults.describe()}",
            data={"faults": self._faults.model_dump(), "stats": self.stats().as_dict()},
        )

    # -- runtime control (any thread) -------------------------------------------------------------
    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> Faults:
        """Replace every fault; returns the faults now in force."""
        return self._call(self._apply, faults)

    def update_faults(self, **fields: Any) -> Faults:
        """Change only the named fields, e.g. ``update_faults(latency_ms=200)``."""
        return self.set_faults(Faults.parse(fields, base=self._faults))

    def clear_faults(self) -> Faults:
        """Back to a transparent proxy (and listening again after ``refuse``)."""
        return self.set_faults(Faults())

    def cut(self) -> int:
        """Reset every open connection at once, both sides; returns how many were cut."""
        return self._call(self._cut)

    def stats(self) -> ProxyStats:
        return self._call(
            lambda: ProxyStats.of(self._shared.counters if self._shared else Counters())
        )

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the proxy's loop and wait for it (directly when already there)."""
        loop = self._loop
        if loop is None or self._loop_thread == threading.get_ident() or not loop.is_running():
            return fn(*args)  # nothing else runs on that loop now (not started, or stopped)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        try:
            return future.result(timeout=10.0)
        except concurrent.futures.TimeoutError:
            raise ProxyError(
                f"{self.name}: the proxy's event loop did not answer in 10 s"
            ) from None

    def _apply(self, faults: Faults) -> Faults:
        if not isinstance(faults, Faults):
            raise ProxyError(f"{self.name}: expected Faults, got {type(faults).__name__}")
        old, self._faults = self._faults, faults
        if self._shared is None or self._stopping:
            return faults
        self._shared.set_faults(faults)
        if faults.refuse and not old.refuse:
            self._unlisten()
        elif not faults.refuse and old.refuse and self._started:
            try:
                self._listen(first=False)
            except ProxyError:
                self._faults = old
                self._shared.set_faults(old)
                raise
        for link in list(self._shared.links):
            link.faults_changed()
        log.info("%s: faults now %s", self.name, faults.describe())
        return faults

    def _cut(self) -> int:
        if self._shared is None:
            return 0
        links = list(self._shared.links)
        for link in links:
            link.reset()
        self._shared.counters.cut += len(links)
        return len(links)

    # -- the listening socket -----------------------------------------------------------------------
    def _listen(self, *, first: bool) -> None:
        """Bind and listen synchronously (so the port accepts from this moment), then serve it."""
        sock = self._bind(first=first)
        assert self._loop is not None
        self._pending_sock, self._handed_over = sock, False
        self._serving = self._loop.create_task(self._serve(sock))

    def _bind(self, *, first: bool) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self.host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _, addr = infos[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ProxyError(f"{self.name}: cannot listen on {self.address}: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE and first:
                raise AddressInUseError(self.host, self._port, service=self.name) from exc
            raise ProxyError(
                f"{self.name}: cannot listen on {self.address}: {exc.strerror}"
            ) from exc
        self._port = sock.getsockname()[1]
        return sock

    async def _serve(self, sock: socket.socket) -> None:
        assert self._loop is not None and self._shared is not None
        shared = self._shared
        self._handed_over = True
        try:
            server = await self._loop.create_server(lambda: Side(Link(shared), "client"), sock=sock)
        finally:
            self._serving, self._pending_sock = None, None
        if self._faults.refuse or self._stopping:
            server.close()  # refused (or stopped) while the server was being set up
        else:
            self._server = server

    def _unlisten(self) -> None:
        if self._serving is not None and not self._handed_over:
            # The task has not run yet, so the socket is still ours alone: close it now, and the
            # port refuses from this very moment.
            self._serving.cancel()
            if self._pending_sock is not None:
                self._pending_sock.close()
            self._serving, self._pending_sock = None, None
        if self._server is not None:
            self._server.close()
            self._server = None
