"""The daemon: the services a config names, run together in one event loop.

``Daemon`` is the app object and knows nothing about signals, so tests embed it; ``serve`` maps
SIGTERM/SIGINT to a graceful stop and SIGHUP to a reload around it.

Reload is all-or-nothing at the config level: a new file that does not parse or validate is
rejected, the error is logged, and the running services carry on untouched. A valid file is applied
as a diff: unchanged services keep running, removed ones stop, new ones start, and a changed one is
first offered the new config (``Service.reconfigure``, e.g. the gateway swaps its replicas without
closing its port) and replaced only when it cannot apply it in place. The platform section itself
(the API's address) needs a restart to change; its token and shutdown grace apply on reload.

>>> from gyroscope.platform import parse_config
>>> daemon = Daemon(parse_config({}), data_dir=Path("/tmp/gyro-doc"))   # await daemon.start() ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gyroscope import __version__
from gyroscope.core import DataDir, HttpServer, Service, ServiceSpec, is_loopback, parse_host_port
from gyroscope.errors import GyroscopeError
from gyroscope.platform._api import platform_handler
from gyroscope.platform._config import GyroConfig, PlatformConfig, load_config
from gyroscope.platform._registry import SpecBuilder, service_specs

if TYPE_CHECKING:
    from gyroscope.logs import LogServerHandler

__all__ = ["Daemon", "serve"]

log = logging.getLogger(__name__)

LOG_SERVICE = "logs"  # the log server's service name (gyroscope.logs.build_services)


class _ServiceHealth(Collector):
    """``gyro_service_up{service}``: 1 while a service reports ok or degraded, read at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "gyro_service_up", "1 when the service reports ok or degraded", labels=["service"]
        )
        for name, (_, service) in self._daemon.running.items():
            family.add_metric(
                [name], 0.0 if self._daemon.safe_health(service).status == "down" else 1.0
            )
        yield family


class Daemon:
    """Runs the services of one ``GyroConfig`` and serves the platform API."""

    def __init__(
        self,
        config: GyroConfig,
        *,
        data_dir: Path,
        config_path: Path | None = None,
        build: SpecBuilder = service_specs,
        loader: Callable[[Path], GyroConfig] = load_config,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.config_path = config_path
        self.running: dict[str, tuple[ServiceSpec, Service]] = {}
        self.last_reload_error: str | None = None
        self._build = build
        self._loader = loader
        self._datadir = DataDir(data_dir)
        self._api: HttpServer | None = None
        self._log_handler: LogServerHandler | None = None
        self._stopping: asyncio.Event | None = None
        self._reload_lock: asyncio.Lock | None = None
        self._started_at = time.time()
        self.registry = CollectorRegistry()
        self._reloads = Counter(
            "gyro_reloads", "Config reloads by result", ["result"], registry=self.registry
        )
        Info("gyro_build", "gyroscope version", registry=self.registry).info(
            {"version": __version__}
        )
        Gauge(
            "gyro_start_time_seconds", "When the daemon started (unix time)", registry=self.registry
        ).set(self._started_at)
        self.registry.register(_ServiceHealth(self))

    @property
    def api_url(self) -> str | None:
        return self._api.url if self._api is not None else None

    async def start(self) -> None:
        """Take the data directory, start every service in order, then the API."""
        self._stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._datadir.open()
        try:
            await self._apply(self._build(self.config, self.data_dir))
            self._connect_log_store()
            host, port = parse_host_port(self.config.platform.listen)
            self._api = HttpServer(
                platform_handler(self), host=host, port=port, name="platform", check_host=True
            )
            await self._api.start()
        except BaseException:
            await self.stop()
            raise
        log.info("started %d services; platform API on %s", len(self.running), self._api.url)

    async def wait(self) -> None:
        """Return once ``request_stop`` has been called."""
        assert self._stopping is not None, "start() first"
        await self._stopping.wait()

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    async def stop(self) -> None:
        """Stop the API, then every service in reverse order, within ``platform.shutdown_grace``."""
        grace = self.config.platform.shutdown_grace
        deadline = time.monotonic() + grace
        if self._api is not None:
            await self._api.stop(grace=min(1.0, grace))
            self._api = None
        await self._disconnect_log_store()
        for name in reversed(list(self.running)):
            _, service = self.running.pop(name)
            await self._stop_service(service, max(0.1, deadline - time.monotonic()))
        self._datadir.close()

    async def reload(self) -> bool:
        """Re-read the config file; apply it if valid, else keep everything as it is."""
        assert self._reload_lock is not None, "start() first"
        if self.config_path is None:
            self.last_reload_error = "no config file to reload (started from built-in config)"
            log.warning("reload ignored: %s", self.last_reload_error)
            self._reloads.labels("rejected").inc()
            return False
        async with self._reload_lock:
            try:
                config = self._loader(self.config_path)
                specs = self._build(config, self.data_dir)
            except GyroscopeError as exc:
                self.last_reload_error = str(exc)
                log.error("reload rejected, keeping the running config: %s", exc)
                self._reloads.labels("rejected").inc()
                return False
            platform = self._platform_after_reload(config)
            if platform is None:
                self._reloads.labels("rejected").inc()
                return False
            try:
                await self._disconnect_log_store()
                await self._apply(specs)
            except GyroscopeError as exc:
                self.last_reload_error = str(exc)
                log.error("reload failed while applying: %s", exc)
                self._reloads.labels("failed").inc()
                return False
            finally:
                self._connect_log_store()
            self.config = config.model_copy(update={"platform": platform})
            self.last_reload_error = None
            self._reloads.labels("ok").inc()
            log.info("reloaded %s: %d services", self.config_path, len(self.running))
            return True

    def _platform_after_reload(self, config: GyroConfig) -> PlatformConfig | None:
        """The new platform section with the API's address kept (moving it needs a restart);
        a rotated token and a new grace apply at once. None when that would expose the API."""
        running = self.config.platform
        if config.platform.listen != running.listen:
            log.warning("platform.listen changed; restart the daemon to move the API")
        platform = config.platform.model_copy(update={"listen": running.listen})
        host, _ = parse_host_port(running.listen)
        token = platform.token.get_secret_value() if platform.token is not None else ""
        if not token and not is_loopback(host):
            self.last_reload_error = (
                f"platform.token removed while the API listens on {running.listen}; "
                "keep a token or restart on a loopback address"
            )
            log.error("reload rejected, keeping the running config: %s", self.last_reload_error)
            return None
        return platform

    async def _apply(self, specs: list[ServiceSpec]) -> None:
        """Make the running services match ``specs``: stop what went or changed, start what is new."""
        wanted = {spec.name: spec for spec in specs}
        grace = self.config.platform.shutdown_grace
        for name in reversed(list(self.running)):
            spec, service = self.running[name]
            if name in wanted and wanted[name].config == spec.config:
                continue
            if name in wanted and await service.reconfigure(wanted[name].config):
                self.running[name] = (wanted[name], service)
                log.info("reconfigured %s in place", name)
                continue
            del self.running[name]
            await self._stop_service(service, grace)
        for spec in specs:
            if spec.name in self.running:
                continue
            service = spec.factory()
            await service.start()
            self.running[spec.name] = (spec, service)
            log.info("started %s", spec.name)

    def _connect_log_store(self) -> None:
        """Keep the platform's own logs (and the gateway's access log) in its log server, if any.

        Only ``gyroscope.*`` loggers go there, at INFO; the console keeps its own level.
        """
        running = self.running.get(LOG_SERVICE)
        if running is None:
            return
        from gyroscope.logs import LogServerHandler

        handler = LogServerHandler(running[1], {"job": "gyroscope"})  # type: ignore[arg-type]
        handler.setLevel(logging.INFO)
        handler.bind(asyncio.get_running_loop())
        root = logging.getLogger("gyroscope")
        root.addHandler(handler)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        self._log_handler = handler

    async def _disconnect_log_store(self) -> None:
        """Detach the handler, giving what it still holds a moment to reach the store."""
        handler, self._log_handler = self._log_handler, None
        if handler is None:
            return
        logging.getLogger("gyroscope").removeHandler(handler)
        for _ in range(50):
            if not handler.pending():
                break
            await asyncio.sleep(0.02)
        handler.close()

    async def _stop_service(self, service: Service, grace: float) -> None:
        try:
            await asyncio.wait_for(service.stop(grace), timeout=grace + 0.5)
        except TimeoutError:
            log.warning("%s did not stop within %.1fs; abandoned", service.name, grace)
        except Exception:
            log.exception("%s failed while stopping", service.name)

    @staticmethod
    def safe_health(service: Service) -> Any:
        from gyroscope.core import Health

        try:
            return service.health()
        except Exception as exc:
            return Health(name=service.name, status="down", detail=f"health check failed: {exc}")

    def health_report(self) -> dict[str, Any]:
        services = [self.safe_health(s).as_dict() for _, s in self.running.values()]
        statuses = {s["status"] for s in services}
        overall = "down" if "down" in statuses else "degraded" if "degraded" in statuses else "ok"
        return {
            "status": overall,
            "version": __version__,
            "uptime_seconds": round(time.time() - self._started_at, 3),
            "services": services,
        }


async def serve(daemon: Daemon, *, on_ready: Callable[[Daemon], None] | None = None) -> None:
    """Run ``daemon`` until SIGTERM/SIGINT; SIGHUP reloads. A second SIGINT/SIGTERM stops at once."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def on_stop_signal() -> None:
        if daemon._stopping is not None and daemon._stopping.is_set():
            log.warning("second stop signal: exiting without waiting")
            raise SystemExit(130)
        daemon.request_stop()

    def on_reload_signal() -> None:
        task = loop.create_task(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    await daemon.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop_signal)
    loop.add_signal_handler(signal.SIGHUP, on_reload_signal)
    try:
        if on_ready is not None:
            on_ready(daemon)
        await daemon.wait()
    finally:
        for task in list(reloads):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # The stop handlers stay installed while draining, so a second Ctrl-C can cut it short.
        await daemon.stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
