"""The demo model server: the HTTP face of the simulated engine, with faults on demand.

Routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (streamed as
server-sent events or not), ``GET /health``, ``GET /metrics``, ``GET|POST|DELETE /admin/faults``.

Where each fault acts: ``error_rate``, ``latency_ms``, ``hang`` and ``close_mid_stream`` act on the
two completion endpoints only (the server's process is alive; its "GPU" misbehaves), so
``/health``, ``/metrics`` and ``/admin`` keep answering and a fault can always be cleared.
``unhealthy`` acts on ``/health``; ``token_delay_ms`` slows every decode step; ``refuse_connections``
closes the listening socket; ``crash`` ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from gyroscope.core import (
    Health,
    HttpServer,
    Request,
    Response,
    Service,
    StreamResponse,
    metrics_response,
    parse_host_port,
)
from gyroscope.demo._api import (
    ApiError,
    ChunkWriter,
    InferenceRequest,
    Kind,
    completion_body,
    parse_inference,
    token_text,
)
from gyroscope.demo._config import DemoServerConfig
from gyroscope.demo._engine import Engine, EngineStopped, Sequence, Timing
from gyroscope.demo._faults import Faults, merge_faults
from gyroscope.demo._metrics import DemoMetrics
from gyroscope.errors import DemoError

__all__ = ["CRASH_EXIT_CODE", "DemoServer"]

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70
_ENDPOINTS: dict[str, Kind] = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}


def _error(exc: ApiError) -> Response:
    return Response.json(exc.body(), status=exc.status)


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
        self._faults = config.faults
        self._rng = random.Random(config.seed)
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
        self._next_id = 0
        self._id_prefix = f"{self._rng.getrandbits(32):08x}"
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
        if faults.refuse_connections == self._http.listening:
            task = loop.create_task(self.sync_listening())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def sync_listening(self) -> None:
        """Make the listening socket match ``refuse_connections`` (done after each change)."""
        async with self._listen_lock:
            if self._faults.refuse_connections and self._http.listening:
                await self._http.stop_listening()
            elif not self._faults.refuse_connections and not self._http.listening and self._started:
                await self._http.start()  # same port: it is remembered after the first bind

    # -- HTTP -------------------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response | StreamResponse:
        path = request.path
        kind = _ENDPOINTS.get(path)
        if kind is not None:
            if request.method != "POST":
                return self._not_allowed(path, "POST")
            return await self._inference(request, kind)
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
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, f"Bearer {token.get_secret_value()}".encode())

    async def _admin(self, request: Request) -> Response:
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

    # -- inference --------------------------------------------------------------------------------
    async def _inference(self, request: Request, kind: Kind) -> Response | StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        endpoint = request.path
        try:
            try:
                body = request.json()
            except ValueError as exc:
                raise ApiError(400, f"request body is not valid JSON: {exc}") from None
            req = parse_inference(
                body,
                kind,
                model=self.config.model,
                chars_per_token=self.config.chars_per_token,
                max_model_len=self.config.max_model_len,
            )
        except ApiError as exc:
            self.metrics.request(endpoint, exc.status)
            return _error(exc)
        early = await self._early_faults(self._faults)
        if early is not None:
            self.metrics.request(endpoint, early.status)
            return early
        seq = Sequence(req.prompt_tokens, self._output_tokens(req), arrived)
        if not self.engine.submit(seq):
            self.metrics.rejected.inc()
            self.metrics.request(endpoint, 429)
            busy = ApiError(429, f"server busy: {self.engine.waiting} requests already waiting")
            return Response.json(busy.body(), status=429, headers=[("retry-after", "1")])
        self.metrics.request(endpoint, 200)
        self._next_id += 1
        num = self._next_id
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{self._id_prefix}{num:08x}"
        if req.stream:
            return StreamResponse(
                _Closing(self._stream(request, req, seq, num, rid), lambda: self._drop(seq)),
                headers=[("content-type", "text/event-stream"), ("cache-control", "no-cache")],
            )
        return await self._complete(request, req, seq, num, rid)

    async def _early_faults(self, faults: Faults) -> Response | None:
        """The faults that act before a request gets a slot."""
        if faults.hang:
            self.metrics.fault("hang")
            await asyncio.get_running_loop().create_future()  # until the client gives up
        if faults.error_rate > 0 and self._rng.random() < faults.error_rate:
            self.metrics.fault("error_rate")
            exc = ApiError(faults.error_status, "injected fault: simulated server error")
            return _error(exc)
        if faults.latency_ms > 0:
            self.metrics.fault("latency_ms")
            await asyncio.sleep(faults.latency_ms / 1000.0)
        return None

    def _output_tokens(self, req: InferenceRequest) -> int:
        room = self.config.max_model_len - req.prompt_tokens
        if req.max_tokens is not None:
            return min(req.max_tokens, room)
        # Geometric length: every token is the end-of-sequence token with chance 1/mean.
        p = 1.0 / self.config.output_tokens_mean
        u = self._rng.random()
        length = 1 if p >= 1.0 else 1 + int(math.log1p(-u) / math.log1p(-p))
        return max(1, min(length, room))

    def _drop(self, seq: Sequence) -> None:
        if not seq.done:
            self.engine.cancel(seq)
            self.metrics.aborted.inc()

    def _close_at(self, seq: Sequence) -> int | None:
        faults = self._faults
        if not faults.close_mid_stream:
            return None
        return min(faults.close_after_tokens, seq.max_tokens)

    async def _complete(
        self, request: Request, req: InferenceRequest, seq: Sequence, num: int, rid: str
    ) -> Response:
        close_at = self._close_at(seq)
        try:
            await self.engine.wait(seq, seq.max_tokens if close_at is None else close_at)
            if close_at is not None:
                self.metrics.fault("close_mid_stream")
                request.conn.abort()
                return Response(status=500)  # never written: the connection is gone
        except EngineStopped:
            return _error(ApiError(503, "server is shutting down"))
        finally:
            self._drop(seq)
        self._record(req, seq)
        body = completion_body(
            req.kind,
            rid=rid,
            created=int(time.time()),
            model=self.config.model,
            text="".join(token_text(num, i) for i in range(seq.generated)),
            finish_reason=self._finish_reason(req),
            prompt_tokens=req.prompt_tokens,
            completion_tokens=seq.generated,
        )
        return Response.json(body)

    async def _stream(
        self, request: Request, req: InferenceRequest, seq: Sequence, num: int, rid: str
    ) -> AsyncIterator[bytes]:
        writer = ChunkWriter(
            req.kind,
            rid=rid,
            created=int(time.time()),
            model=self.config.model,
            usage_nulls=req.include_usage,
        )
        close_at = self._close_at(seq)
        last = seq.max_tokens if close_at is None else close_at
        yield writer.role()
        sent = 0
        while sent < last:
            try:
                await self.engine.wait(seq, sent + 1)
            except EngineStopped:
                request.conn.abort()
                return
            upto = min(seq.generated, last)
            yield b"".join(writer.token(token_text(num, i)) for i in range(sent, upto))
            sent = upto
        if close_at is not None:
            self.metrics.fault("close_mid_stream")
            request.conn.abort()
            return
        self._record(req, seq)
        tail = writer.finish(self._finish_reason(req))
        if req.include_usage:
            tail += writer.usage(req.prompt_tokens, seq.generated)
        yield tail + writer.done()

    def _finish_reason(self, req: InferenceRequest) -> str:
        return "length" if req.max_tokens is not None else "stop"

    def _record(self, req: InferenceRequest, seq: Sequence) -> None:
        self.metrics.finished(
            reason=self._finish_reason(req),
            prompt_tokens=seq.prompt_tokens,
            output_tokens=seq.generated,
            queue_s=seq.admitted - seq.arrived,
            ttft_s=seq.first_token - seq.arrived,
            e2e_s=seq.finished - seq.arrived,
            decode_s=seq.finished - seq.first_token,
        )

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


class _Closing:
    """An async iterator that runs ``on_close`` when the server closes it, even unstarted.

    The HTTP kernel always closes a stream's iterator; a plain generator that never started would
    skip its ``finally``, and the sequence would keep its slot after the client left.
    """

    def __init__(self, chunks: AsyncIterator[bytes], on_close: Any) -> None:
        self._chunks = chunks
        self._on_close = on_close

    def __aiter__(self) -> _Closing:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        self._on_close()
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
