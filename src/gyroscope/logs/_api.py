"""The log server's HTTP API: ingest, Loki-compatible query endpoints, tail, proofs, stats, metrics.

Loki compatibility: ``/loki/api/v1/push`` (JSON body; gzip accepted), ``query_range``, ``query``,
``labels``, ``label/<name>/values`` and ``/ready`` answer in Loki's JSON shapes, so Grafana's Loki
data source and JSON-speaking shippers work unchanged. Live tail is Loki's WebSocket
``/loki/api/v1/tail`` (Grafana's live mode; see ``_tail.py``) and ``/api/logs/tail``: newline
delimited JSON over a chunked response, for curl.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gyroscope.core import (
    Request,
    Response,
    StreamResponse,
    WebSocketResponse,
    bearer_ok,
    metrics_response,
)
from gyroscope.logs._errors import BadInputError, LogStoreError, QuerySyntaxError
from gyroscope.logs._ingest import parse_json_lines, parse_loki_push, parse_time
from gyroscope.logs._logql import LogQuery, MetricQuery, parse_query, parse_selector
from gyroscope.logs._lokipb import parse_loki_protobuf
from gyroscope.logs._proofs import consistency_proof, inclusion_proof
from gyroscope.logs._query import run_log_query, run_metric_query, stream_matcher
from gyroscope.logs._scrub import verify_store
from gyroscope.logs._tail import LokiTail, follow

if TYPE_CHECKING:
    from gyroscope.logs._service import LogServer

__all__ = ["LogApi"]

log = logging.getLogger(__name__)
_HOUR = 3600 * 10**9
_MAX_NS = 2**63  # timestamps are int64 nanoseconds


def _param(req: Request, name: str, default: str = "") -> str:
    values = req.query_params().get(name)
    return values[-1] if values else default


def _int_param(req: Request, name: str, default: int) -> int:
    raw = _param(req, name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadInputError(f"parameter {name} must be an integer, got {raw!r}") from None


def _step_ns(raw: str, start: int, end: int) -> int:
    """The query step in ns: seconds (``15``, ``0.5``) or a duration (``1m``); finite and > 0."""
    if not raw:
        return max((end - start) // 250, 10**9)
    try:
        seconds = float(raw)
    except ValueError:
        from gyroscope.logs._logql import parse_duration

        step = parse_duration(raw)
    else:
        if not math.isfinite(seconds) or seconds <= 0:
            raise BadInputError(f"step must be a positive number of seconds, got {raw!r}")
        step = int(seconds * 1e9)
    if step <= 0:
        raise BadInputError(f"step must be at least 1ns, got {raw!r}")
    return step


def _check_time(name: str, value: int) -> int:
    if not 0 <= value < _MAX_NS:
        raise BadInputError(f"{name} is out of range (before 1970 or after 2262): {value}")
    return value


def _non_negative(req: Request, name: str, default: int) -> int:
    value = _int_param(req, name, default)
    if value < 0:
        raise BadInputError(f"parameter {name} must be >= 0, got {value}")
    return value


class LogApi:
    """Routes requests to the store; every error is one JSON line with a 4xx/5xx status."""

    def __init__(self, server: LogServer) -> None:
        self.server = server
        self.live_tails = 0  # open WebSocket tails
        self.routes: dict[
            tuple[str, str],
            Callable[[Request], Awaitable[Response | StreamResponse | WebSocketResponse]],
        ] = {
            ("POST", "/api/logs/push"): self.push_lines,
            ("POST", "/loki/api/v1/push"): self.push_loki,
            ("GET", "/loki/api/v1/query_range"): self.query_range,
            ("GET", "/loki/api/v1/query"): self.query,
            ("GET", "/loki/api/v1/labels"): self.labels,
            ("GET", "/loki/api/v1/label"): self.labels,
            ("GET", "/loki/api/v1/tail"): self.loki_tail,
            ("GET", "/api/logs/tail"): self.tail,
            ("GET", "/api/logs/stats"): self.stats,
            ("GET", "/api/logs/prove"): self.prove,
            ("GET", "/api/logs/consistency"): self.consistency,
            ("POST", "/api/logs/verify"): self.verify,
            ("POST", "/api/logs/replicas/check"): self.check_replicas,
            ("GET", "/ready"): self.ready,
            ("GET", "/metrics"): self.metrics,
        }

    async def __call__(self, req: Request) -> Response | StreamResponse | WebSocketResponse:
        token = self.server.config.token
        if token and not bearer_ok(req.headers.get("authorization", ""), token.get_secret_value()):
            return Response.error(401, "missing or wrong bearer token")
        path = req.path.rstrip("/") or "/"
        handler = self.routes.get((req.method, path))
        if handler is None and req.method == "GET" and path.startswith("/loki/api/v1/label/"):
            handler = self.label_values
        if handler is None:
            return Response.error(404, f"no route {req.method} {req.path}")
        try:
            return await handler(req)
        except BadInputError as exc:
            self.server.metrics.rejected.inc()
            return Response.error(400, str(exc))
        except LogStoreError as exc:
            log.error("log store: %s", exc)
            return Response.error(503 if exc.retryable else 500, str(exc))

    # -- ingest ----------------------------------------------------------------------------------
    @staticmethod
    def _body(req: Request) -> bytes:
        if req.headers.get("content-encoding", "") == "gzip":
            try:
                return gzip.decompress(req.body)
            except (OSError, EOFError) as exc:
                raise BadInputError(f"invalid gzip body: {exc}") from None
        return req.body

    async def push_lines(self, req: Request) -> Response:
        entries = parse_json_lines(self._body(req))
        result = await self.server.ingest(
            entries, key=req.headers.get("x-gyro-batch-key", "").encode()
        )
        return Response.json(
            {"first_seq": result.first, "count": result.count, "duplicate": result.duplicate}
        )

    async def push_loki(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "application/json")
        if "protobuf" in ctype:  # Promtail and Alloy: snappy-compressed logproto.PushRequest
            entries = parse_loki_protobuf(req.body)
        elif "json" in ctype:
            entries = parse_loki_push(self._body(req))
        else:
            raise BadInputError(
                f"content-type {ctype!r} is not supported: send application/json or "
                "application/x-protobuf (snappy), as Loki clients do"
            )
        await self.server.ingest(entries)
        return Response(status=204)

    # -- query -----------------------------------------------------------------------------------
    def _range(self, req: Request) -> tuple[int, int]:
        now = time.time_ns()
        end = _check_time("end", parse_time(_param(req, "end") or None, where="end", default=now))
        raw_start = _param(req, "start") or None
        start = _check_time(
            "start", parse_time(raw_start, where="start", default=max(end - _HOUR, 0))
        )
        if end < start:
            raise BadInputError("end is before start")
        return start, end

    async def _run(self, req: Request, start: int, end: int) -> Response:
        q = parse_query(_param(req, "query"))
        store = self.server.store
        if isinstance(q, MetricQuery):
            step = _step_ns(_param(req, "step"), start, end)
            result = await asyncio.to_thread(
                run_metric_query, store, q, start_ns=start, end_ns=end, step_ns=step
            )
            data: dict[str, Any] = {"resultType": "matrix", "result": result}
        else:
            limit = _non_negative(req, "limit", 100)
            backward = _param(req, "direction", "backward").lower() != "forward"
            res = await asyncio.to_thread(
                run_log_query,
                store,
                q,
                start_ns=start,
                end_ns=end + 1,
                limit=limit,
                backward=backward,
            )
            data = {"resultType": "streams", "result": res.streams()}
        data["stats"] = {"damaged_records": len(store.damage)}
        self.server.metrics.queries.inc()
        return Response.json({"status": "success", "data": data})

    async def query_range(self, req: Request) -> Response:
        start, end = self._range(req)
        return await self._run(req, start, end)

    async def query(self, req: Request) -> Response:
        t = parse_time(_param(req, "time") or None, where="time", default=time.time_ns())
        _check_time("time", t)
        return await self._run(req, max(t - _HOUR, 0), t)

    def _streams(self, req: Request) -> list[dict[str, str]]:
        from gyroscope.logs._labels import parse_labels

        selector = _param(req, "query")
        ok = stream_matcher(parse_selector(selector)) if selector else (lambda _s: True)
        return [parse_labels(s) for s in self.server.store.labels() if ok(s)]

    async def labels(self, req: Request) -> Response:
        names = sorted({k for labels in self._streams(req) for k in labels})
        return Response.json({"status": "success", "data": names})

    async def label_values(self, req: Request) -> Response:
        name = req.path.rstrip("/").split("/")[-2]
        values = sorted({lb[name] for lb in self._streams(req) if name in lb})
        return Response.json({"status": "success", "data": values})

    async def loki_tail(self, req: Request) -> WebSocketResponse:
        """Loki's live tail: everything is checked here, so a bad request is a 400, not a close."""
        q = parse_query(_param(req, "query"))
        if not isinstance(q, LogQuery):
            raise QuerySyntaxError("tail takes a log query, not a metric query")
        now = time.time_ns()
        start = parse_time(_param(req, "start") or None, where="start", default=now - _HOUR)
        _check_time("start", start)
        limit = _int_param(req, "limit", 100)
        delay = _int_param(req, "delay_for", 0)
        if not 0 <= delay <= 5:
            raise BadInputError(f"delay_for must be 0..5 seconds, got {delay}")
        if limit < 0:
            raise BadInputError(f"limit must be >= 0, got {limit}")
        if not req.websocket:
            raise BadInputError(
                "/loki/api/v1/tail is a WebSocket endpoint (or use GET /api/logs/tail for NDJSON)"
            )
        tail = LokiTail(self.server, q, start_ns=start, limit=limit, delay_s=delay)
        return WebSocketResponse(tail.run)

    async def tail(self, req: Request) -> StreamResponse:
        q = parse_query(_param(req, "query"))
        if not isinstance(q, LogQuery):
            raise QuerySyntaxError("tail takes a log query, not a metric query")
        return StreamResponse(
            self._tail(q, _non_negative(req, "limit", 10)),
            headers=[("content-type", "application/x-ndjson")],
        )

    async def _tail(self, q: LogQuery, backlog: int) -> AsyncIterator[bytes]:
        store = self.server.store
        seen = store.next_seq  # first: a line stored during the backlog query comes after it
        res = await asyncio.to_thread(
            run_log_query, store, q, start_ns=0, end_ns=2**63 - 1, limit=backlog
        )
        for ln in reversed(res.lines):
            if ln.seq < seen:
                yield _ndjson(ln.seq, ln.ts_ns, ln.labels, ln.line)
        async for lines in follow(self.server, q, seen, self.server.config.tail_max_seconds):
            for ln in lines:
                yield _ndjson(ln.seq, ln.ts_ns, ln.labels, ln.line)

    # -- integrity, stats --------------------------------------------------------------------------
    async def prove(self, req: Request) -> Response:
        raw = _param(req, "seq")
        if not raw:
            raise BadInputError("parameter seq is required: the record to prove, e.g. ?seq=42")
        seq = _int_param(req, "seq", 0)
        size = self.server.store.merkle.size
        if not 0 <= seq < size:
            raise BadInputError(
                f"record {seq} does not exist (the log has {size} records, numbered from 0)"
            )
        return Response.json(await asyncio.to_thread(inclusion_proof, self.server.store, seq))

    async def consistency(self, req: Request) -> Response:
        old, new = _int_param(req, "old", 0), _int_param(req, "new", 0)
        size = self.server.store.merkle.size
        if not 0 < old <= size:
            raise BadInputError(f"parameter old must be 1..{size} (the log has {size} records)")
        if new and not old <= new <= size:
            raise BadInputError(
                f"parameter new must be {old}..{size} (at least old={old}, at most the log size)"
            )
        return Response.json(
            await asyncio.to_thread(consistency_proof, self.server.store, old, new or None)
        )

    async def verify(self, req: Request) -> Response:
        deep = _param(req, "deep") in ("1", "true", "yes")
        report = await asyncio.to_thread(verify_store, self.server.store, deep=deep)
        self.server.last_verify = report
        return Response.json(report.as_dict(), status=200 if report.ok else 409)

    async def check_replicas(self, req: Request) -> Response:
        replication = self.server.replication
        if replication is None:
            return Response.error(404, "replicated mode is off (configure logs.replication)")
        repairs = replication.repairs
        reports = await replication.check()
        body = {
            "ok": all(r.ok for r in reports),
            "repaired": replication.repairs > repairs,
            "nodes": [
                {
                    "node": r.node,
                    "records": r.records,
                    "missing": len(r.missing),
                    "corrupt": r.corrupt[:20],
                    "summary": str(r),
                }
                for r in reports
            ],
        }
        return Response.json(body, status=200 if body["ok"] else 409)

    async def stats(self, req: Request) -> Response:
        return Response.json(self.server.stats())

    async def ready(self, req: Request) -> Response:
        return Response.text("ready\n")

    async def metrics(self, req: Request) -> Response:
        self.server.metrics.refresh(self.server)
        return metrics_response(self.server.metrics.registry)


def _ndjson(seq: int, ts_ns: int, labels: dict[str, str], line: str) -> bytes:
    return (
        json.dumps({"seq": seq, "ts": str(ts_ns), "labels": labels, "line": line}).encode() + b"\n"
    )
