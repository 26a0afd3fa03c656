"""The HTTP API: Prometheus's query API (so Grafana can use gyroscope as a Prometheus data source),
Alertmanager's v2 alerts and silences API, and gyroscope's own objects (targets, rules, history,
acknowledgements, pending notifications, pushed samples)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from gyroscope.core import Request, Response, bearer_ok
from gyroscope.errors import MonitorError
from gyroscope.monitor._api_input import (
    json_kind,
    json_object,
    one,
    param_time,
    step_seconds,
    strings,
)
from gyroscope.monitor._chunks import is_stale
from gyroscope.monitor._dispatch import AmAlert
from gyroscope.monitor._errors import PromQLError, ScrapeError
from gyroscope.monitor._exposition import format_labels, parse_text
from gyroscope.monitor._promql import selector_matchers
from gyroscope.monitor._silences import Silence, matcher_from_api, parse_time, parse_weekdays

if TYPE_CHECKING:
    from gyroscope.monitor._service import MonitorService

__all__ = ["MonitorApi", "format_value"]

_MAX_HISTORY = 100_000  # rows one history request may ask for


def format_value(value: float) -> str:
    """A sample value as Prometheus prints it in JSON (``1``, ``0.5``, ``NaN``, ``+Inf``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return np.format_float_positional(value, trim="-") if 1e-4 <= abs(value) < 1e15 else repr(value)


def _ok(data: Any) -> Response:
    return Response.json({"status": "success", "data": data})


def _bad(message: str, status: int = 400, kind: str = "bad_data") -> Response:
    return Response.json({"status": "error", "errorType": kind, "error": message}, status=status)


def _params(request: Request) -> dict[str, list[str]]:
    params = request.query_params()
    if request.method == "POST" and "form-urlencoded" in request.headers.get("content-type", ""):
        from urllib.parse import parse_qs

        for key, values in parse_qs(request.body.decode(), keep_blank_values=True).items():
            params.setdefault(key, []).extend(values)
    return params


def _metric(labels: Any) -> dict[str, str]:
    return dict(labels)


class MonitorApi:
    """Routes requests to the service; every error is a JSON body with a status code."""

    def __init__(self, service: MonitorService) -> None:
        self.s = service

    async def handle(self, request: Request) -> Response:
        token = self.s.config.token
        if token is not None and request.path not in ("/-/healthy", "/-/ready"):
            given = request.headers.get("authorization", "")
            if not bearer_ok(given, token.get_secret_value()):
                return _bad("missing or wrong bearer token", 401, "unauthorized")
        try:
            return await self._route(request)
        except PromQLError as exc:
            return _bad(str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return _bad(f"bad request: {exc}")
        except OverflowError as exc:  # a number no input check caught, e.g. deep in numpy
            return _bad(f"bad request: a number is out of range ({exc})")
        except MonitorError as exc:
            return _bad(str(exc), 422, "execution")

    async def _route(self, request: Request) -> Response:  # noqa: PLR0911 - a router
        path, method = request.path.rstrip("/") or "/", request.method
        params = _params(request)
        simple = {
            "/-/healthy": lambda: Response.text("ok\n"),
            "/-/ready": lambda: Response.text("ok\n"),
            "/metrics": self.s.metrics_response,
            "/api/v1/query": lambda: self._query(params),
            "/api/v1/query_range": lambda: self._query_range(params),
            "/api/v1/series": lambda: self._series(params),
            "/api/v1/labels": lambda: _ok(
                sorted({k for lb in self.s.db.all_labels() for k, _ in lb})
            ),
            "/api/v1/targets": lambda: _ok(
                {"activeTargets": self.s.targets_view(), "droppedTargets": []}
            ),
            "/api/v1/rules": lambda: _ok({"groups": [g.as_dict() for g in self.s.evaluators]}),
            "/api/v1/alerts": lambda: _ok({"alerts": self.s.rule_alerts()}),
            "/api/v1/status/buildinfo": lambda: _ok(
                {"version": "2.53.0", "application": "gyroscope"}
            ),
            "/api/v1/metadata": lambda: _ok({}),
            "/api/v1/query_exemplars": lambda: _ok([]),  # no exemplars are stored
            "/api/v1/history": lambda: self._history(params),
            "/api/v1/notifications": lambda: _ok(self.s.delivery_status()),
            "/api/v1/probes": lambda: _ok(self.s.probe_view()),
            "/api/v2/status": lambda: Response.json(
                {"cluster": {"status": "disabled"}, "versionInfo": {"version": "gyroscope"}}
            ),
        }
        # Grafana sends queries, series and label lookups as POST forms too.
        if path in simple and (
            method in ("GET", "HEAD")
            or path.startswith("/api/v1/query")
            or path in ("/api/v1/series", "/api/v1/labels")
        ):
            result: Response = simple[path]()  # type: ignore[no-untyped-call]
            return result
        if (
            path.startswith("/api/v1/label/")
            and path.endswith("/values")
            and method in ("GET", "POST")
        ):
            name = path.removeprefix("/api/v1/label/").removesuffix("/values")
            return _ok(sorted({v for lb in self.s.db.all_labels() for k, v in lb if k == name}))
        if path == "/api/v2/alerts":
            return self._push_alerts(request) if method == "POST" else self._list_alerts(params)
        if path == "/api/v2/silences":
            return self._add_silence(request) if method == "POST" else self._silences()
        if path.startswith("/api/v2/silence/"):
            return self._silence(path.rsplit("/", 1)[1], method)
        if path.startswith("/api/v1/alerts/") and path.endswith("/ack") and method == "POST":
            return self._ack(path.split("/")[4], request)
        if path == "/-/reload" and method == "POST":
            try:
                groups = self.s.reload_rules()
            except MonitorError as exc:
                return _bad(f"rules not reloaded, the old ones keep running: {exc}", 400)
            return _ok({"groups": groups})
        if path == "/federate" and method == "GET":
            return self._federate(params)
        if path == "/api/v1/push" and method == "POST":
            return self._push_samples(request)
        return _bad(f"no such endpoint: {method} {path}", 404, "not_found")

    # -- Prometheus query API ----------------------------------------------------------------------
    def _query(self, params: dict[str, list[str]]) -> Response:
        query = one(params, "query")
        t = param_time(params, "time", str(time.time()))
        value = self.s.engine.instant(query, t)
        if isinstance(value, float):
            return _ok({"resultType": "scalar", "result": [t, format_value(value)]})
        if isinstance(value, str):
            return _ok({"resultType": "string", "result": [t, value]})
        if value and not isinstance(value[0], tuple):
            result = [
                {
                    "metric": _metric(d.labels),
                    "values": [
                        [int(x) / 1000, format_value(float(y))]
                        for x, y in zip(d.ts, d.values, strict=True)
                    ],
                }
                for d in value
            ]
            return _ok({"resultType": "matrix", "result": result})
        vector = [{"metric": _metric(lb), "value": [t, format_value(v)]} for lb, v in value]  # type: ignore[misc]
        return _ok({"resultType": "vector", "result": vector})

    def _query_range(self, params: dict[str, list[str]]) -> Response:
        query = one(params, "query")
        start, end = param_time(params, "start"), param_time(params, "end")
        if end < start:
            raise ValueError("end timestamp must not be before start time")
        step = step_seconds(one(params, "step"))
        series = self.s.engine.range_query(query, start, end, step)
        result = [
            {"metric": _metric(lb), "values": [[t, format_value(v)] for t, v in pts]}
            for lb, pts in series.items()
        ]
        return _ok({"resultType": "matrix", "result": result})

    def _series(self, params: dict[str, list[str]]) -> Response:
        selectors = params.get("match[]") or []
        if not selectors:
            raise ValueError("give at least one match[] selector")
        seen: dict[Any, None] = {}
        for text in selectors:
            for matchers in selector_matchers(text):
                for sid in self.s.db.series_ids(matchers):
                    seen[self.s.db.labels_of(sid)] = None
        return _ok([dict(lb) for lb in seen])

    # -- alerts, silences, acknowledgements ------------------------------------------------------
    def _push_alerts(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, list):
            raise ValueError("expected a JSON list of alerts (Alertmanager v2 format)")
        now = time.time()
        alerts = []
        for i, raw in enumerate(body):
            item = json_object(raw, f"alert {i}")
            labels = strings(item.get("labels"), f"alert {i}: labels")
            if not labels:
                raise ValueError(f"alert {i}: every alert needs labels")
            starts = self._body_time(item, "startsAt", i) or now
            ends = self._body_time(item, "endsAt", i)
            alerts.append(
                AmAlert(
                    labels=labels,
                    annotations=strings(item.get("annotations"), f"alert {i}: annotations"),
                    starts_at=min(starts, now),
                    ends_at=ends,
                    generator_url=str(item.get("generatorURL") or ""),
                )
            )
        self.s.receive_alerts(alerts)
        return Response.json({"status": "success"})

    @staticmethod
    def _body_time(item: dict[str, Any], key: str, i: int) -> float | None:
        if not item.get(key):
            return None
        try:
            return parse_time(item[key])
        except ValueError as exc:
            raise ValueError(f"alert {i}: {key}: {exc}") from None

    def _list_alerts(self, params: dict[str, list[str]]) -> Response:
        now = time.time()
        views = [self.s.dispatcher.alert_view(a, now) for a in self.s.dispatcher.alerts.values()]
        if one(params, "active", "true") == "false":
            return Response.json(views)
        return Response.json([v for v in views if v["status"]["state"] != "resolved"])

    def _silences(self) -> Response:
        now = time.time()
        return Response.json([s.as_dict(now) for s in self.s.dispatcher.silences.values()])

    def _add_silence(self, request: Request) -> Response:
        """Alertmanager v2's postable silence; every field is checked before anything is stored."""
        body = json_object(request.json(), "the silence")
        matchers = body.get("matchers")
        if not isinstance(matchers, list) or not matchers:
            raise ValueError("matchers must be a non-empty array of matcher objects")
        recurring = json_object(body.get("recurring") or {}, "recurring")
        weekdays = recurring.get("weekdays", [])
        if not isinstance(weekdays, list):
            raise ValueError(f"recurring.weekdays must be an array, got {json_kind(weekdays)}")
        silence_id = body.get("id") or None
        if silence_id is not None and not isinstance(silence_id, str):
            raise ValueError(f"id must be a string, got {json_kind(silence_id)}")
        if "endsAt" not in body:
            raise ValueError("endsAt is required")
        times = {}
        for key, default in (("startsAt", time.time()), ("endsAt", None)):
            try:
                times[key] = parse_time(body.get(key) or default)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        silence = Silence.create(
            [matcher_from_api(m) for m in matchers],
            starts_at=times["startsAt"],
            ends_at=times["endsAt"],
            created_by=str(body.get("createdBy", "")),
            comment=str(body.get("comment", "")),
            weekdays=parse_weekdays(weekdays),
            start=recurring.get("start", "00:00"),
            end=recurring.get("end", "24:00"),
            id=silence_id,
        )
        self.s.add_silence(silence)
        return Response.json({"silenceID": silence.id})

    def _silence(self, silence_id: str, method: str) -> Response:
        if method == "DELETE":
            if not self.s.expire_silence(silence_id):
                return _bad(f"no silence {silence_id}", 404, "not_found")
            return Response.json({"status": "success"})
        silence = self.s.dispatcher.silences.get(silence_id)
        if silence is None:
            return _bad(f"no silence {silence_id}", 404, "not_found")
        return Response.json(silence.as_dict(time.time()))

    def _ack(self, fp: str, request: Request) -> Response:
        body = json_object(request.json() or {}, "the acknowledgement")
        done = self.s.acknowledge(
            [fp], by=str(body.get("by", "")), comment=str(body.get("comment", ""))
        )
        if not done:
            return _bad(f"no firing alert with fingerprint {fp}", 404, "not_found")
        return _ok({"acknowledged": done})

    def _history(self, params: dict[str, list[str]]) -> Response:
        since = float(one(params, "since", "0"))
        if not math.isfinite(since):
            raise ValueError(f"invalid parameter 'since': {since} (Unix seconds)")
        limit = int(one(params, "limit", "500"))
        if not 1 <= limit <= _MAX_HISTORY:
            raise ValueError(f"invalid parameter 'limit': {limit} (1 to {_MAX_HISTORY})")
        return _ok(
            self.s.history.query(
                fingerprint=one(params, "fingerprint", "") or None,
                alertname=one(params, "alertname", "") or None,
                since=since,
                limit=limit,
            )
        )

    def _federate(self, params: dict[str, list[str]]) -> Response:
        """The newest sample of every matching series, in the text format (Prometheus's
        /federate): another monitor scrapes it with ``honor_labels``, e.g. probe results from
        several places for a quorum rule."""
        selectors = params.get("match[]") or []
        if not selectors:
            raise ValueError("give at least one match[] selector")
        now_ms = int(time.time() * 1000)
        lines: dict[str, str] = {}
        for text in selectors:
            for matchers in selector_matchers(text):
                for data in self.s.db.select(matchers, now_ms - self.s.engine.lookback_ms, now_ms):
                    if not is_stale(data.values[-1:])[0]:
                        value = format_value(float(data.values[-1]))
                        lines[format_labels(data.labels)] = f"{value} {int(data.ts[-1])}"
        body = "".join(f"{series} {rest}\n" for series, rest in lines.items())
        return Response(body.encode(), headers=[("content-type", "text/plain; version=0.0.4")])

    def _push_samples(self, request: Request) -> Response:
        """Samples in the text format; lines with timestamps from a skewed clock are rejected."""
        job = request.query_params().get("job", ["push"])[0]
        try:
            samples = parse_text(
                request.body.decode("utf-8", "replace"), extra=(("job", job),), target="push"
            )
        except ScrapeError as exc:
            return _bad(str(exc))
        accepted, rejected = self.s.push_samples(samples)
        status = 200 if not rejected else 422
        return Response.json(
            {
                "status": "success" if not rejected else "partial",
                "accepted": accepted,
                "rejected": rejected,
            },
            status=status,
        )
