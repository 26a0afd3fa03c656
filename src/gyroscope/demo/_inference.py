"""Answering completions: validate, apply the request-level faults, run on the engine, reply.

A streamed answer goes out token by token as the engine steps; a plain one when the sequence is
done. Either way the sequence leaves the engine the moment its client does (see ``_Closing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from gyroscope.core import Request, Response, StreamResponse
from gyroscope.demo._api import (
    ApiError,
    ChunkWriter,
    InferenceRequest,
    Kind,
    completion_body,
    parse_inference,
    token_text,
)
from gyroscope.demo._api import error_response as _error
from gyroscope.demo._config import DemoServerConfig
from gyroscope.demo._engine import Engine, EngineStopped, Sequence
from gyroscope.demo._faults import Faults
from gyroscope.demo._metrics import DemoMetrics

__all__ = ["Inference"]


class Inference:
    """The completion endpoints of one replica, over its engine, metrics and current faults."""

    def __init__(
        self,
        config: DemoServerConfig,
        engine: Engine,
        metrics: DemoMetrics,
        faults: Callable[[], Faults],
    ) -> None:
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self._current_faults = faults
        self._rng = random.Random(config.seed)
        self._next_id = 0
        self._id_prefix = f"{self._rng.getrandbits(32):08x}"

    @property
    def _faults(self) -> Faults:
        return self._current_faults()

    async def handle(self, request: Request, kind: Kind) -> Response | StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        endpoint = request.path
        try:
            req = self._parse(request, kind)
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

    def _parse(self, request: Request, kind: Kind) -> InferenceRequest:
        try:
            body = request.json()
        except ValueError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from None
        return parse_inference(
            body,
            kind,
            model=self.config.model,
            chars_per_token=self.config.chars_per_token,
            max_model_len=self.config.max_model_len,
        )

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
            if upto == sent + 1:  # the usual step: one token, one event, no join
                yield writer.token(token_text(num, sent))
            else:
                yield b"".join([writer.token(token_text(num, i)) for i in range(sent, upto)])
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

    def __anext__(self) -> Awaitable[bytes]:
        # The inner awaitable itself, not a coroutine around it: one frame less per token.
        return self._chunks.__anext__()

    async def aclose(self) -> None:
        self._on_close()
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
