"""The demo model server: the HTTP face of the simulated engine, with faults on demand.

Routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (streamed as
server-sent events or not), ``GET /health``, ``GET /metrics``, ``GET|POST|DELETE /admin/faults``.

Where each fault acts: ``error_rate``, ``latency_ms``, ``hang`` and ``close_mid_stream`` act on the
two completion endpoints only (the server's process is alive; its "GPU" misbehaves), so
``/health``, ``/metrics`` and ``/admin`` keep answering and a fault can always be cleared.
``unhealthy`` acts on ``/health``; ``token_delay_ms`` slows every decode step; ``refuse_connections``
closes the listening socket; ``down`` also resets every open connection, which is what clients and
monitors see when a replica's process dies (and, unlike ``crash``, it spares the rest of a
``gyro up`` daemon); ``crash`` ends the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from gyroscope.core import (
    Health,
    HttpServer,
    Request,
    Response,
    Service,
    StreamResponse,
    bearer_ok,
    is_loopback,
    metrics_response,
    origin_problem,
    parse_host_port,
)
from gyroscope.demo._api import ApiError, Kind
from gyroscope.demo._api import error_response as _error
from gyroscope.demo._config import DemoServerConfig
from gyroscope.demo._engine import Engine, Timing
from gyroscope.demo._faults import Faults, merge_faults
from gyroscope.demo._inference import Inference
from gyroscope.demo._metrics import DemoMetrics
from gyroscope.errors import DemoError

__all__ = ["CRASH_EXIT_CODE", "DemoServer"]

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70
_ENDPOINTS: dict[str, Kind] = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}


class DemoServer(Service):
    """A simulated OpenAI-compatible model replica (see ``gyroscope.demo`` for the model).

    >>> server = DemoServer(DemoServerConfig(name="d1", listen="127.0.0.1:0", slots=4, seed=1))
    >>> server.name, server.faults.hang
    ('demo/d1', False)
    >>> # await server.start(); server.url; server.set_faults(error_rate=0.5); await server.stop()
    """

    def __init__(self, config: DemoServerConfig) -> None:
        super().__init__(f"demo/{config.name}")
        self.config = config
        host, port = parse_host_port(config.listen)
        self._http = HttpServer(self._handle, host=host, port=port, name=self.name)
        self._admin_checks_host = is_loopback(host)  # see _admin
        self._faults = config.faults
        timing = Timing(
            step_ms=config.step_ms,
            step_alpha=config.step_alpha,
            prefill_ms_per_token=config.prefill_ms_per_token,
        )
        self.engine = Engine(
            slots=config.slots,
            max_queue=config.max_queue,
            timing=timing,
            extra_step_ms=lambda: self._faults.token_delay_ms,
            on_step=self._on_step,
        )
        self.metrics = DemoMetrics(
            config.model,
            running=lambda: self.engine.running,
            waiting=lambda: self.engine.waiting,
            slots=config.slots,
        )
        self._inference = Inference(config, self.engine, self.metrics, lambda: self._faults)
        self._started = False
        self._clear_timer: asyncio.TimerHandle | None = None
        self._listen_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._models_body = Response.json(self._models()).body

    # -- Service --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def faults(self) -> Faults:
        return self._faults

    async def start(self) -> None:
        await self._http.start()
        self.engine.start()
        self._started = True
        log.info("%s: serving %s on %s", self.name, self.config.model, self.url)
        self._apply(self._faults)
        await self.sync_listening()

    async def stop(self, grace: float = 5.0) -> None:
        self._started = False
        if self._clear_timer is not None:
            self._clear_timer.cancel()
        await self._http.stop(grace)
        await self.engine.stop()
        for task in list(self._background):
            task.cancel()

    def health(self) -> Health:
        active = self._faults.active()
        data = {
            "url": self.url,
            "model": self.config.model,
            "running": self.engine.running,
            "waiting": self.engine.waiting,
            "slots": self.config.slots,
            "faults": active,
        }
        if not self._started:
            return Health(name=self.name, status="down", detail="not started", data=data)
        if active:
            detail = "faults injected: " + ", ".join(active)
            return Health(name=self.name, status="degraded", detail=detail, data=data)
        return Health(name=self.name, status="ok", data=data)

    # -- faults ---------------------------------------------------------------------------------
    def set_faults(self, **changes: Any) -> Faults:
        """Merge ``changes`` into the current faults; raises ``DemoError`` on a bad key or value."""
        faults = merge_faults(self._faults, changes)
        self._faults = faults
        log.warning("%s: faults now %s", self.name, faults.active() or "none")
        self._apply(faults)
        return faults

    def clear_faults(self) -> Faults:
        """Back to a healthy server (listening again if it was refusing connections)."""
        self._faults = Faults()
        log.warning("%s: faults cleared", self.name)
        self._apply(self._faults)
        return self._faults

    def _apply(self, faults: Faults) -> None:
        if faults.crash:
            os.write(2, f"{self.name}: crash fault injected, exiting\n".encode())
            os._exit(CRASH_EXIT_CODE)
        if not self._started:
            return
        loop = asyncio.get_running_loop()
        if self._clear_timer is not None:
            self._clear_timer.cancel()
            self._clear_timer = None
        if faults.clear_after_s > 0 and faults.active():
            self._clear_timer = loop.call_later(faults.clear_after_s, self.clear_faults)
        if self._refusing(faults) == self._http.listening:
            task = loop.create_task(self.sync_listening())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if faults.down:
            # Let the answer to the request that set the fault leave first, then drop everything.
            loop.call_later(0.05, self._reset_connections)

    @staticmethod
    def _refusing(faults: Faults) -> bool:
        return faults.refuse_connections or faults.down

    def _reset_connections(self) -> None:
        if self._faults.down:
            for conn in list(self._http.connections):
                conn.abort()

    async def sync_listening(self) -> None:
        """Make the listening socket match ``refuse_connections`` (done after each change)."""
        async with self._listen_lock:
            refusing = self._refusing(self._faults)
            if refusing and self._http.listening:
                await self._http.stop_listening()
            elif not refusing and not self._http.listening and self._started:
                await self._http.start()  # same port: it is remembered after the first bind

    # -- HTTP -------------------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response | StreamResponse:
        path = request.path
        kind = _ENDPOINTS.get(path)
        if kind is not None:
            if request.method != "POST":
                return self._not_allowed(path, "POST")
            return await self._inference.handle(request, kind)
        if path.startswith("/admin/"):
            response = await self._admin(request)
        elif request.method not in ("GET", "HEAD"):
            response = self._not_allowed(path, "GET, HEAD")
        elif path == "/health":
            ok = not self._faults.unhealthy
            if not ok:
                self.metrics.fault("unhealthy")
            body = {"status": "ok"} if ok else {"status": "unhealthy", "detail": "fault injected"}
            response = Response.json(body, status=200 if ok else 503)
        elif path == "/metrics":
            response = metrics_response(self.metrics.registry)
        elif path == "/v1/models":
            response = Response(self._models_body, headers=[("content-type", "application/json")])
        else:
            response = _error(ApiError(404, f"no route for {path}"))
        self.metrics.request(path if response.status != 404 else "other", response.status)
        return response

    def _not_allowed(self, path: str, allow: str) -> Response:
        response = _error(ApiError(405, f"{path} accepts {allow} only"))
        response.headers.append(("allow", allow))
        return response

    def _models(self) -> dict[str, Any]:
        created = int(time.time())
        model = {
            "id": self.config.model,
            "object": "model",
            "created": created,
            "owned_by": "gyroscope",
            "max_model_len": self.config.max_model_len,
        }
        return {"object": "list", "data": [model]}

    def _authorized(self, request: Request) -> bool:
        token = self.config.admin_token
        if token is None:
            return True
        return bearer_ok(request.headers.get("authorization", ""), token.get_secret_value())

    async def _admin(self, request: Request) -> Response:
        # Without a token, still refuse a DNS-rebinding page (the model API itself takes any Host,
        # since a gateway in front forwards its clients' names).
        refused = origin_problem(request.headers, check_host=self._admin_checks_host)
        if refused is not None:
            return _error(ApiError(403, refused))
        if not self._authorized(request):
            return _error(ApiError(401, "missing or wrong admin token (Authorization: Bearer)"))
        if request.path != "/admin/faults":
            return _error(ApiError(404, f"no route for {request.path}"))
        try:
            if request.method == "POST":
                self.set_faults(**_json_object(request))
            elif request.method == "DELETE":
                self.clear_faults()
            elif request.method not in ("GET", "HEAD"):
                return self._not_allowed(request.path, "GET, POST, DELETE")
        except DemoError as exc:
            return _error(ApiError(400, str(exc)))
        await self.sync_listening()
        return Response.json({"faults": self._faults.model_dump(), "active": self._faults.active()})

    def _on_step(self, prefill_tokens: int, decoded: int) -> None:
        if prefill_tokens:
            self.metrics.prompt_tokens.inc(prefill_tokens)
        self.metrics.generation_tokens.inc(decoded)


def _json_object(request: Request) -> dict[str, Any]:
    try:
        changes = request.json()
    except ValueError as exc:
        raise DemoError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(changes, dict):
        raise DemoError('request body must be a JSON object of faults, e.g. {"hang": true}')
    return changes
