"""Running LogQL queries against a ``LogStore``: log queries (streams) and metric queries (matrix).

Results are ordered by sequence number in the asked direction (the arrival order, which is time
order for clients that send in order) and cut at ``limit`` lines. Every returned line was CRC-checked
when it was read; damaged records are skipped and reported in ``store.damage``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gyroscope.logs._errors import BadInputError
from gyroscope.logs._labels import parse_labels
from gyroscope.logs._logql import (
    FieldFilter,
    JsonStage,
    LineFilter,
    LogQuery,
    Matcher,
    MetricQuery,
)
from gyroscope.logs._store import LogStore

__all__ = [
    "MAX_POINTS",
    "LogLine",
    "QueryResult",
    "run_log_query",
    "run_metric_query",
    "stream_matcher",
]

MAX_POINTS = 11_000  # steps per series of a metric query, as Prometheus and Loki allow


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    ts_ns: int
    labels: dict[str, str]
    line: str


@dataclass(slots=True)
class QueryResult:
    lines: list[LogLine] = field(default_factory=list)
    scanned: int = 0

    def streams(self) -> list[dict[str, object]]:
        """Loki's ``streams`` result: lines grouped by their (extracted) label set."""
        groups: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
        for ln in self.lines:
            groups.setdefault(tuple(sorted(ln.labels.items())), []).append([str(ln.ts_ns), ln.line])
        return [{"stream": dict(k), "values": v} for k, v in groups.items()]


def stream_matcher(matchers: tuple[Matcher, ...]) -> Callable[[str], bool]:
    """A cached predicate over canonical label text."""
    cache: dict[str, bool] = {}

    def ok(labels: str) -> bool:
        hit = cache.get(labels)
        if hit is None:
            parsed = parse_labels(labels)
            hit = cache[labels] = all(m.matches(parsed.get(m.name, "")) for m in matchers)
        return hit

    return ok


def _line_pred(f: LineFilter) -> Callable[[str], bool]:
    if f.op == "|=":
        return lambda line: f.value in line
    if f.op == "!=":
        return lambda line: f.value not in line
    rx = re.compile(f.value)
    if f.op == "|~":
        return lambda line: rx.search(line) is not None
    return lambda line: rx.search(line) is None


def _field_pred(f: FieldFilter) -> Callable[[dict[str, str]], bool]:
    if f.op in (">", ">=", "<", "<=", "=="):
        want = float(f.value)
        cmp = {
            ">": float.__gt__,
            ">=": float.__ge__,
            "<": float.__lt__,
            "<=": float.__le__,
            "==": float.__eq__,
        }[f.op]

        def numeric(fields: dict[str, str]) -> bool:
            try:
                return bool(cmp(float(fields.get(f.name, "nan")), want))
            except ValueError:
                return False

        return numeric
    matcher = Matcher(f.name, f.op, f.value)
    return lambda fields: matcher.matches(fields.get(f.name, ""))


def _flatten(obj: object, prefix: str, out: dict[str, str]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            name = re.sub(r"[^a-zA-Z0-9_]", "_", str(k))
            _flatten(v, f"{prefix}_{name}" if prefix else name, out)
    elif obj is not None and prefix:
        out[prefix] = obj if isinstance(obj, str) else json.dumps(obj)


def _pipeline(q: LogQuery) -> Callable[[str, dict[str, str]], dict[str, str] | None]:
    """The stages as one function: line, labels -> labels (with extracted fields) or None."""
    steps: list[tuple[str, Callable[..., bool] | None]] = []
    for st in q.stages:
        if isinstance(st, LineFilter):
            steps.append(("line", _line_pred(st)))
        elif isinstance(st, JsonStage):
            steps.append(("json", None))
        else:
            steps.append(("field", _field_pred(st)))

    def run(line: str, labels: dict[str, str]) -> dict[str, str] | None:
        fields = labels
        for kind, pred in steps:
            if kind == "line":
                assert pred is not None
                if not pred(line):
                    return None
            elif kind == "json":
                fields = dict(fields)
                try:
                    _flatten(json.loads(line), "", fields)
                except ValueError:
                    fields["__error__"] = "JSONParserErr"
            elif pred is not None and not pred(fields):
                return None
        return fields

    return run


def _needles(q: LogQuery) -> list[bytes]:
    out = []
    for st in q.stages:
        if isinstance(st, LineFilter) and st.op == "|=" and st.value:
            out.append(st.value.encode())
    return out


def matching(
    store: LogStore, q: LogQuery, start_ns: int, end_ns: int, backward: bool
) -> Iterator[LogLine]:
    run = _pipeline(q)
    label_cache: dict[str, dict[str, str]] = {}
    for rec in store.select(
        stream_matcher(q.matchers),
        start_ns=start_ns,
        end_ns=end_ns,
        needles=_needles(q),
        backward=backward,
    ):
        if rec.redacted:
            continue
        labels = label_cache.get(rec.labels)
        if labels is None:
            labels = label_cache[rec.labels] = parse_labels(rec.labels)
        line = rec.line.decode("utf-8", "replace")
        fields = run(line, labels)
        if fields is not None:
            yield LogLine(rec.seq, rec.ts_ns, fields, line)


def run_log_query(
    store: LogStore,
    q: LogQuery,
    *,
    start_ns: int,
    end_ns: int,
    limit: int = 100,
    backward: bool = True,
) -> QueryResult:
    """Up to ``limit`` matching lines, newest first when ``backward``."""
    result = QueryResult()
    for item in matching(store, q, start_ns, end_ns, backward):
        result.lines.append(item)
        if len(result.lines) >= limit:
            break
    return result


def run_metric_query(
    store: LogStore, q: MetricQuery, *, start_ns: int, end_ns: int, step_ns: int
) -> list[dict[str, object]]:
    """Loki's ``matrix`` result: one series per label set, a value per step.

    A step <= 0 or more than ``MAX_POINTS`` steps is a ``BadInputError`` (the steps array is
    allocated up front: a 1 ns step over an hour would be 26 TiB).
    """
    if step_ns <= 0:
        raise BadInputError(f"step must be positive, got {step_ns}ns")
    if end_ns < start_ns:
        raise BadInputError("end is before start")
    points = (end_ns - start_ns) // step_ns + 1
    if points > MAX_POINTS:
        raise BadInputError(
            f"too many points, raise step: {points} steps of {step_ns / 1e9:g}s between start "
            f"and end, at most {MAX_POINTS:,} are allowed"
        )
    by_group: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for item in matching(store, q.inner, start_ns - q.range_ns, end_ns + 1, False):
        labels = item.labels
        if q.agg is not None:
            labels = {k: v for k, v in labels.items() if k in (q.by or ())}
        by_group.setdefault(tuple(sorted(labels.items())), []).append(item.ts_ns)
    steps = np.arange(start_ns, end_ns + 1, step_ns, dtype=np.int64)
    series: list[dict[str, object]] = []
    for key, stamps in by_group.items():
        ts = np.sort(np.array(stamps, dtype=np.int64))
        counts = np.searchsorted(ts, steps, side="right") - np.searchsorted(
            ts, steps - q.range_ns, side="right"
        )
        values: list[list[object]] = []
        for t, c in zip(steps.tolist(), counts.tolist(), strict=True):
            if c:
                v = c / (q.range_ns / 1e9) if q.fn == "rate" else c
                values.append([t / 1e9, f"{v:g}"])
        series.append({"metric": dict(key), "values": values})
    return series
