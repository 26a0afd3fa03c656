"""The gateway service: listener, routes, replicas, the timer sweep, runtime changes and drain.

One periodic sweep (every 100 ms) does all the time-based work, so the per-request path arms no
timers: request deadlines, idle keep-alive connections, slow start ramps, ejection expiry and the
success-rate check. Replicas are added, re-weighted, drained and removed while requests flow;
a removed replica leaves the balancer at once and its connections close when their requests end.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from typing import Any, Literal, cast

from gyroscope.core import CollectorRegistry, Health, Service, parse_host_port
from gyroscope.errors import AddressInUseError, ServiceError
from gyroscope.gateway._cache import ResponseCache
from gyroscope.gateway._checker import HealthChecker
from gyroscope.gateway._client import ClientConnection
from gyroscope.gateway._compress import available_encodings
from gyroscope.gateway._config import BackendConfig, GatewayConfig, RouteConfig
from gyroscope.gateway._endpoint import Endpoint
from gyroscope.gateway._errors import BackendExistsError, UnknownBackendError
from gyroscope.gateway._exchange import BODY, QUEUED, WAIT_HEAD, Exchange
from gyroscope.gateway._extras import access_log
from gyroscope.gateway._health import OutlierDetector, available, slow_start_weight
from gyroscope.gateway._keys import KeySpec
from gyroscope.gateway._limits import ClientLimiter, RetryBudget
from gyroscope.gateway._native import BUILD
from gyroscope.gateway._policies import make_policy
from gyroscope.gateway._stats import ExchangeStats, GatewayCollector, RouteCounters
from gyroscope.gateway._upstream import Pool, as_protocol

__all__ = ["Gateway", "Route"]

Status = Literal["ok", "degraded", "down"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 0.1


class Route:
    """A path prefix with its policy, key, retries, limits, cache and compression."""

    def __init__(self, cfg: RouteConfig, clock: Any, rng: random.Random | None) -> None:
        self.name = cfg.name
        self.prefix = cfg.prefix.encode()
        self.policy = make_policy(
            cfg.policy, clock=clock, rng=rng, balance_factor=cfg.hash_balance_factor
        )
        h = cfg.hash
        self.key = None if h is None else KeySpec(h.source, h.name, h.field, h.length)
        r = cfg.retries
        self.retry_attempts = r.attempts
        self.retry_on_status = frozenset(r.on_status)
        self.retry_methods = frozenset(m.upper().encode() for m in r.methods)
        self.retry_buffer = r.buffer_bytes
        self.budget = RetryBudget(r.budget_ratio, r.min_retries)
        rl = cfg.rate_limit
        self.limiter = None
        self.limiter_key = "client_ip"
        if rl is not None:
            self.limiter_key = rl.key
            self.limiter = ClientLimiter(
                requests_per_second=rl.requests_per_second,
                burst=rl.burst,
                tokens_per_minute=rl.tokens_per_minute,
                max_clients=rl.max_clients,
            )
        c = cfg.cache
        self.cache = None if c is None else ResponseCache(c.max_bytes, c.max_entry_bytes)
        self.cache_default_ttl = 0.0 if c is None else c.default_ttl
        self.cache_max_entry = 0 if c is None else c.max_entry_bytes
        self.compression = cfg.compression
        self.encodings = (
            [] if cfg.compression is None else available_encodings(cfg.compression.encodings)
        )
        # Anything beyond plain proxying: the hot path checks this one flag.
        self.extras = (
            self.cache is not None or self.limiter is not None or self.compression is not None
        )
        self.priority = cfg.priority
        self.plain = not self.extras and self.key is None
        self.counters = RouteCounters()
        self.stats: dict[str, ExchangeStats] = {}

    def stats_for(self, ep: Endpoint | None) -> ExchangeStats:
        name = ep.name if ep is not None else "none"
        stats = self.stats.get(name)
        if stats is None:
            stats = self.stats[name] = ExchangeStats()
        return stats


class Gateway(Service):
    """An HTTP/1.1 load-balancing reverse proxy in front of model replicas.

    >>> gw = Gateway(GatewayConfig(listen="127.0.0.1:0", admin=None,
    ...     backends=[BackendConfig(name="d1", address="127.0.0.1:8001")]))
    >>> [b["name"] for b in gw.backends()]   # await gw.start(); ...; await gw.stop()
    ['d1']
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        rng: random.Random | None = None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(config.name)
        self.config = config
        self.rng = rng
        self.reuse_port = reuse_port
        self.endpoints: list[Endpoint] = []
        self._apply_settings(config)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set in start()
        # Microseconds matter here (latency histograms, peak EWMA): not the loop's clock, which
        # counts whole milliseconds. Every deadline and stamp here is read from this one clock.
        self.clock = time.monotonic
        self.wall = time.time
        self.available: list[Endpoint] = []
        self.routes: list[Route] = []
        self.clients: set[ClientConnection] = set()
        self.queue: deque[Exchange] = deque()
        self.in_flight = 0
        self.track_latency = False
        self.single_route = True
        self.limited = False  # any replica with a concurrency limit
        self.draining = False
        self.rejected: dict[int, int] = {}
        self.outlier = self._make_outlier(config)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(
            GatewayCollector(self._all_stats, self._route_counters, self._endpoints, self._extra)
        )
        self.port = 0
        self.admin: Any = None
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._checker: HealthChecker | None = None
        self._rid_prefix = os.urandom(4).hex().encode()
        self._rid = 0
        self._last_outlier_sweep = 0.0
        self._was_out: set[str] = set()
        self._apply_routes(config.routes)
        for backend in config.backends:
            self._add_endpoint(backend, slow_start=False)
        self.refresh()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.check_access_log()  # logging is usually configured between construction and start
        host, port = parse_host_port(self.config.listen)
        sock = _listen_socket(host, port, self.reuse_port, self.name)
        self._server = await self.loop.create_server(
            lambda: as_protocol(ClientConnection(self)), sock=sock, backlog=2048
        )
        # uvloop's Server.sockets is a list where typeshed says tuple (compiled code checks types)
        self.port = cast(Any, self._server).sockets[0].getsockname()[1]
        now = self.clock()
        for ep in self.endpoints:
            ep.pool.expire(now)
        self._sweeper = self.loop.create_task(self._sweep_forever())
        hc = self.config.health
        if hc.enabled:
            self._checker = HealthChecker(self, hc)
            self._checker.start()
        if self.config.admin is not None:
            from gyroscope.gateway._admin import AdminApi

            self.admin = AdminApi(self, self.config.admin, self.config.admin_token)
            await self.admin.start()
        log.info("%s: listening on %s:%d (%s build)", self.name, host, self.port, BUILD)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` s, then abort the rest."""
        if self._server is None:
            return
        self.draining = True
        self._server.close()
        self._server = None
        for client in list(self.clients):
            client.close_if_idle()
        deadline = time.monotonic() + grace
        while self.clients and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a set
            await asyncio.sleep(0.05)
        for client in list(self.clients):
            client.abort()
        if self._checker is not None:
            await self._checker.stop()
        if self.admin is not None:
            await self.admin.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for ep in self.endpoints:
            ep.pool.closing = True
            ep.pool.close_idle()
        await asyncio.sleep(0)

    def health(self) -> Health:
        usable = len(self.available)
        total = len(self.endpoints)
        status: Status = "ok" if usable == total and total else ("degraded" if usable else "down")
        return Health(
            name=self.name,
            status=status,
            detail=f"{usable}/{total} replicas available",
            data={"port": self.port, "in_flight": self.in_flight, "backends": self.backends()},
        )

    @property
    def url(self) -> str:
        host, _ = parse_host_port(self.config.listen)
        return f"http://{host}:{self.port}"

    # -- used by exchanges -------------------------------------------------------------------------
    def match(self, url: bytes) -> Route:
        for route in self.routes:
            if url.startswith(route.prefix):
                return route
        return self.routes[-1]

    def choose(self, route: Route, key: int | None, tried: Sequence[Endpoint]) -> Endpoint | None:
        eps = self.available
        if not eps:
            return None
        exclude: Collection[Endpoint] = tried
        if self.limited:
            exclude = {*tried, *(ep for ep in eps if ep.full())}
        return route.policy.pick(eps, key, exclude)

    def any_full(self, tried: Sequence[Endpoint]) -> bool:
        return any(ep.full() for ep in self.available if ep not in tried)

    def enqueue(self, ex: Exchange) -> bool:
        """Queue ``ex`` behind requests of its priority or higher; False when it must be shed.

        A full queue sheds its newest lowest-priority request to make room for a higher one.
        """
        queue, priority = self.queue, ex.route.priority
        if len(queue) >= self.limits.queue_size:
            if not queue or queue[-1].route.priority >= priority:
                return False
            victim = queue.pop()
            counts = victim.route.counters.shed
            counts["preempted"] = counts.get("preempted", 0) + 1
            victim.local(503, "shed for higher-priority requests", float(self.limits.retry_after))
        position = len(queue)
        while position > 0 and queue[position - 1].route.priority < priority:
            position -= 1
        queue.insert(position, ex)
        return True

    def dequeue(self, ex: Exchange) -> None:
        with contextlib.suppress(ValueError):
            self.queue.remove(ex)

    def slot_freed(self) -> None:
        if self.queue:
            self.loop.call_soon(self._serve_queue)

    def _serve_queue(self) -> None:
        while self.queue:
            ex = self.queue[0]
            if ex.phase != QUEUED:
                self.queue.popleft()
                continue
            if not any(not ep.full() for ep in self.available if ep not in ex.tried):
                return
            self.queue.popleft()
            ex.dispatch()

    def outcome(self, ep: Endpoint, status: int, gateway_error: bool, now: float) -> None:
        if self.outlier is not None and self.outlier.record(
            ep, status, gateway_error, now, self.endpoints
        ):
            log.warning("%s: ejected %s after errors (status %d)", self.name, ep.name, status)
            self.refresh()

    def _now(self) -> float:
        return self.clock()  # late bound: policies read the clock the gateway reads

    def next_request_id(self) -> bytes:
        self._rid += 1
        # %b and %d only: compiled code builds these bytes without the generic formatter
        return b"%b-%d" % (self._rid_prefix, self._rid)

    def forget_client(self, client: ClientConnection) -> None:
        self.clients.discard(client)

    def count_rejected(self, status: int) -> None:
        self.rejected[status] = self.rejected.get(status, 0) + 1

    # -- membership and health ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute the usable replicas; a new list object, so policies rebuild their tables."""
        panic = self.config.outlier.panic_threshold if self.config.outlier.enabled else 0.0
        self.available = available(self.endpoints, self.clock(), panic)
        self.limited = any(ep.max_concurrent for ep in self.endpoints)

    def set_healthy(self, ep: Endpoint, healthy: bool) -> None:
        if ep.healthy == healthy:
            return
        ep.healthy = healthy
        if healthy:
            ep.recovered_at = self.clock()
        log.warning("%s: replica %s is %s", self.name, ep.name, "up" if healthy else "down")
        self.refresh()

    def backends(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [
            {
                "name": ep.name,
                "address": ep.address,
                "weight": ep.weight,
                "effective_weight": round(ep.lb_weight, 3),
                "max_concurrent": ep.max_concurrent,
                "in_flight": ep.in_flight,
                "healthy": ep.healthy,
                "ejected": ep.ejected(now),
                "ejections": ep.ejections,
                "draining": ep.draining,
                "available": ep in self.available,
                "connections_opened": ep.pool.opened,
                "idle_connections": len(ep.pool.idle),
                "latency_ewma_ms": round(ep.ewma * 1000, 3),
            }
            for ep in self.endpoints
        ]

    def find(self, name: str) -> Endpoint:
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        raise UnknownBackendError(name)

    def add_backend(self, cfg: BackendConfig) -> None:
        if any(ep.name == cfg.name for ep in self.endpoints):
            raise BackendExistsError(cfg.name)
        self._add_endpoint(cfg, slow_start=True)
        self.refresh()

    def set_weight(self, name: str, weight: int) -> None:
        ep = self.find(name)
        ep.weight = weight
        ep.lb_weight = float(weight)
        self.refresh()

    def drain(self, name: str, draining: bool = True) -> None:
        """Send no new requests to ``name``; in-flight ones finish."""
        ep = self.find(name)
        ep.draining = draining
        if draining:
            ep.pool.close_idle()
        self.refresh()

    async def remove_backend(self, name: str, wait: float = 30.0) -> bool:
        """Drain ``name``, wait for its requests to finish (up to ``wait`` s), then remove it."""
        ep = self.find(name)
        self.drain(name)
        deadline = time.monotonic() + wait
        while ep.in_flight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.02)
        finished = ep.in_flight == 0
        if ep in self.endpoints:
            self.endpoints = [e for e in self.endpoints if e is not ep]
            if self.outlier is not None:
                self.outlier.forget(ep.name)
            ep.pool.closing = True
            ep.pool.close_idle()
            self.refresh()
        return finished

    async def reconfigure(self, config: Any) -> bool:
        """Under ``gyro up``: apply a changed section in place unless its listeners changed."""
        if not isinstance(config, GatewayConfig):
            return False
        same_sockets = (config.listen, config.admin, config.workers) == (
            self.config.listen,
            self.config.admin,
            self.config.workers,
        )
        if same_sockets:
            await self.reload(config)
        return same_sockets

    async def reload(self, config: GatewayConfig) -> None:
        """Apply a new config's replicas and routes without dropping in-flight requests."""
        if config.listen != self.config.listen:
            log.warning("%s: listen address changes need a restart; keeping it", self.name)
        self._apply_settings(config)  # first: replicas added below get the new pool limits
        wanted = {b.name: b for b in config.backends}
        for ep in list(self.endpoints):
            if ep.name not in wanted:
                await self.remove_backend(ep.name)
        for name, b in wanted.items():
            if any(ep.name == name for ep in self.endpoints):
                ep = self.find(name)
                host, port = parse_host_port(b.address)
                if (host, port) != (ep.host, ep.port):
                    await self.remove_backend(name)
                    self.add_backend(b)
                else:
                    ep.weight, ep.max_concurrent = b.weight, b.max_concurrent
                    ep.lb_weight = float(b.weight)
            else:
                self.add_backend(b)
        self.config = config.model_copy(update={"listen": self.config.listen})
        if self.admin is not None:
            from gyroscope.gateway._admin import admin_token_bytes

            self.admin.token = admin_token_bytes(config.admin_token)  # a rotated token applies now
        self.outlier = self._make_outlier(config)
        self._apply_routes(config.routes)
        self.refresh()

    # -- internals ---------------------------------------------------------------------------------
    def _apply_settings(self, config: GatewayConfig) -> None:
        self.timeouts = config.timeouts
        self.limits = config.limits
        # What every request reads, copied out of the config models (plain fields, no lookup)
        self.max_header_bytes = config.limits.max_header_bytes
        self.first_byte_timeout = config.timeouts.first_byte
        for ep in self.endpoints:  # replicas added later get these from _add_endpoint
            ep.pool.max_idle = self.limits.max_idle_per_backend
            ep.pool.keepalive = self.timeouts.upstream_keepalive
        self.access_log = config.access_log
        self.check_access_log()

    def check_access_log(self) -> None:
        """Whether requests write access lines: asked of logging here, by start, reload and the
        sweeper, not by every request (a level set at run time applies within SWEEP_INTERVAL)."""
        self.log_access = self.access_log and access_log.isEnabledFor(logging.INFO)

    def _make_outlier(self, config: GatewayConfig) -> OutlierDetector | None:
        o = config.outlier
        if not o.enabled:
            return None
        return OutlierDetector(
            consecutive_5xx=o.consecutive_5xx,
            consecutive_gateway_errors=o.consecutive_gateway_errors,
            success_rate_min_requests=o.success_rate_min_requests,
            success_rate_threshold=o.success_rate_threshold,
            base_ejection_time=o.base_ejection_time,
            max_ejection_time=o.max_ejection_time,
            max_ejection_percent=o.max_ejection_percent,
        )

    def _apply_routes(self, routes: list[RouteConfig]) -> None:
        old = {r.name: r for r in self.routes}
        built = [Route(cfg, self._now, self.rng) for cfg in routes]
        for route in built:
            if route.name in old:
                route.stats = old[route.name].stats  # metrics are counters: keep them
                route.counters = old[route.name].counters
        # Longest prefix first, so /v1/chat/ wins over /.
        self.routes = sorted(built, key=lambda r: len(r.prefix), reverse=True)
        self.track_latency = any(r.policy.name == "peak_ewma" for r in self.routes)
        self.single_route = len(self.routes) == 1

    def _add_endpoint(self, cfg: BackendConfig, *, slow_start: bool) -> None:
        host, port = parse_host_port(cfg.address)
        ep = Endpoint(cfg.name, host, port, weight=cfg.weight, max_concurrent=cfg.max_concurrent)
        ep.pool = Pool(
            ep,
            max_idle=self.limits.max_idle_per_backend,
            keepalive=self.timeouts.upstream_keepalive,
        )
        if slow_start:
            ep.recovered_at = self.clock()
        self.endpoints = [*self.endpoints, ep]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                self._sweep(self.clock())
            except Exception:  # the sweeper must survive anything, or timeouts stop working
                log.exception("%s: sweep failed", self.name)

    def _sweep(self, now: float) -> None:
        self.check_access_log()
        changed = False
        window = self.config.health.slow_start
        for ep in self.endpoints:
            ep.pool.expire(now)
            out = ep.ejected(now)
            if ep.name in self._was_out and not out:
                self._was_out.discard(ep.name)
                ep.recovered_at = now
                changed = True
            elif out:
                if ep.name not in self._was_out:
                    changed = True
                self._was_out.add(ep.name)
            if ep.recovered_at is not None:
                ep.lb_weight = slow_start_weight(ep, now, window)
                if ep.lb_weight >= ep.weight:
                    ep.recovered_at = None
        o = self.config.outlier
        if self.outlier is not None and now - self._last_outlier_sweep >= o.interval:
            self._last_outlier_sweep = now
            if self.outlier.sweep(now, self.endpoints):
                changed = True
        if changed:
            self.refresh()
        self._expire_exchanges(now)

    def _expire_exchanges(self, now: float) -> None:
        keepalive = self.timeouts.client_keepalive
        total = self.timeouts.total
        idle = self.timeouts.idle
        for client in list(self.clients):
            if client.activity != client.seen_activity:
                client.seen_activity = client.activity
                client.idle_since = now
            if client.lingering_since is not None and now - client.lingering_since > 2.0:
                client.abort()
                continue
            ex = client.current
            if ex is None:
                if now - client.idle_since > keepalive:
                    client.close_if_idle()
                continue
            for pending in (ex, *client.waiting):
                self._check_deadline(pending, now, total, idle)

    def _check_deadline(self, ex: Exchange, now: float, total: float, idle: float) -> None:
        if ex.phase == BODY and (ex.progress != ex.seen_progress or not ex.deadline):
            ex.seen_progress = ex.progress
            ex.deadline = now + idle if idle else 0.0
        if ex.phase == QUEUED and ex not in self.queue:
            return  # waiting behind a pipelined request, or for its body
        if (total and now - ex.started > total and ex.phase in (WAIT_HEAD, BODY)) or (
            ex.deadline and now > ex.deadline
        ):
            ex.timed_out(now)

    # -- metrics ---------------------------------------------------------------------------------
    def _all_stats(self) -> Iterator[tuple[str, str, ExchangeStats]]:
        for route in self.routes:
            for backend, stats in list(route.stats.items()):
                yield route.name, backend, stats

    def _route_counters(self) -> Iterator[tuple[str, RouteCounters]]:
        for route in self.routes:
            yield route.name, route.counters

    def _endpoints(self) -> list[Endpoint]:
        return list(self.endpoints)

    def _extra(self) -> dict[str, float]:
        return {
            "client_connections": float(len(self.clients)),
            "queued_requests": float(len(self.queue)),
            "requests_in_flight": float(self.in_flight),
            "rejected_requests": float(sum(self.rejected.values())),
        }


def _listen_socket(host: str, port: int, reuse_port: bool, name: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(host, port, service=name) from exc
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror}", service=name) from exc
    sock.setblocking(False)
    return sock
