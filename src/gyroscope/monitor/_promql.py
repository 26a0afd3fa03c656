"""A PromQL subset evaluated over the embedded store.

Parsing is done by ``promql-parser`` (the Rust parser GreptimeDB maintains); evaluation walks its
tree. Values are a float (scalar), a str, a ``Vector`` (labels -> value at the evaluation time) or
a list of ``SeriesData`` (range vectors). Semantics follow Prometheus: a 5 minute lookback for
instant selectors, staleness markers end a series, ``(t - range, t]`` windows, the metric name is
dropped by arithmetic and functions and kept by comparison filters.

>>> import tempfile, pathlib
>>> db = TSDB(pathlib.Path(tempfile.mkdtemp()) / "t.sqlite")
>>> for i in range(61): _ = db.append((("__name__", "c"), ("job", "a")), i * 1000, float(i * 2))
>>> [(labels, round(v, 9)) for labels, v in Engine(db).instant("rate(c[30s])", 60.0)]
[((('job', 'a'),), 2.0)]
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import promql_parser as pp

from gyroscope.monitor._chunks import is_stale
from gyroscope.monitor._errors import PromQLError
from gyroscope.monitor._exposition import Labels
from gyroscope.monitor._promql_binary import binary
from gyroscope.monitor._promql_funcs import (
    AGGREGATIONS,
    RANGE_FUNCTIONS,
    SCALAR_FUNCTIONS,
    bucket_quantile,
)
from gyroscope.monitor._promql_steps import windowed_rate
from gyroscope.monitor._tsdb import TSDB, Matcher, SeriesData

__all__ = ["Engine", "Value", "Vector", "parse_query"]

Vector = list[tuple[Labels, float]]
Value = float | str | Vector | list[SeriesData]

_OPS = {int(pp.MatchOp.Equal): "=", int(pp.MatchOp.NotEqual): "!=", int(pp.MatchOp.Re): "=~"}
_OPS[int(pp.MatchOp.NotRe)] = "!~"


_STEPPED = frozenset({"rate", "increase", "delta"})


def _op(op: Any) -> str:
    return _OPS[int(op)]


def _ms(delta: timedelta | None) -> int:
    return 0 if delta is None else int(delta.total_seconds() * 1000)


_COMPLETIONS = (
    "",
    " 1",
    " x",
    ")",
    "}",
    "]",
    " 1)",
    '"}',
    "1]",
    "m]",
    '"',
    '")',
    " x)",
    " (x)",
    " x}",
)
_TOKEN = re.compile(
    r"\s+|\"(?:[^\"\\]|\\.)*\"?|'(?:[^'\\]|\\.)*'?|[=!<>]=|=~|!~|[-+*/%^=<>(){}\[\],@]|[\w:.]+|."
)


def _unbalanced(query: str) -> int | None:
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    quote: str | None = None
    for i, ch in enumerate(query):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append((ch, i))
        elif ch in pairs:
            if not stack or stack[-1][0] != pairs[ch]:
                return i
            stack.pop()
    return stack[-1][1] if stack else None


def _viable(prefix: str) -> bool:
    """Could ``prefix`` still begin a valid query? (Some short completion parses or runs out.)"""
    for completion in _COMPLETIONS:
        try:
            pp.parse(prefix + completion)
            return True
        except (ValueError, RuntimeError) as exc:
            if "end of input" in str(exc) or "unclosed" in str(exc):
                return True
    return False


def _error_position(query: str) -> int | None:
    """Where a query goes wrong: the parser's messages carry no position, so find the first token
    after which no completion can make the query valid (an unbalanced bracket first)."""
    found = _unbalanced(query)
    if found is not None or len(query) > 2000:
        return found
    for token in _TOKEN.finditer(query):
        if not token.group().isspace() and not _viable(query[: token.end()]):
            return token.start()
    return len(query)


def parse_query(query: str) -> Any:
    """Parse ``query``; raises ``PromQLError`` with the reason (and position when known)."""
    if not query.strip():
        raise PromQLError("empty query", query=query, position=0)
    try:
        return pp.parse(query)
    except (ValueError, RuntimeError) as exc:
        position = _error_position(query)
        reason = str(exc)
        if position is not None and position < len(query):
            reason += f" near {query[position : position + 12]!r}"
        elif position is not None:
            reason += " (the query ends too early)"
        raise PromQLError(reason, query=query, position=position) from None


def _drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != "__name__")


@dataclass(slots=True)
class _Ctx:
    t: int  # evaluation time, ms
    query: str
    span: tuple[int, int] | None = None  # a range query's first and last evaluation time, ms
    cache: dict[Any, Any] | None = None  # selector -> its data over the whole span, and more
    times: npt.NDArray[np.int64] | None = None  # a range query's evaluation times, ms


class Engine:
    """Evaluate queries against a ``TSDB``. ``instant`` and ``range_query`` take seconds."""

    def __init__(
        self, db: TSDB, *, lookback_s: float = 300.0, subquery_step_s: float = 15.0
    ) -> None:
        self.db = db
        self.lookback_ms = int(lookback_s * 1000)
        self.subquery_step_ms = int(subquery_step_s * 1000)

    def instant(self, query: str, t: float) -> Value:
        return self.eval(parse_query(query), _Ctx(int(t * 1000), query))

    def range_query(
        self, query: str, start: float, end: float, step: float
    ) -> dict[Labels, list[tuple[float, float]]]:
        """Series -> [(t seconds, value)], evaluating the query at every step (Prometheus's way)."""
        if step <= 0:
            raise PromQLError("step must be positive", query=query)
        if (end - start) / step > 11_000:
            raise PromQLError(
                "exceeded maximum resolution of 11,000 points per series", query=query
            )
        expr = parse_query(query)
        out: dict[Labels, list[tuple[float, float]]] = {}
        steps = int((end - start) / step + 1e-9) + 1
        span = (round(start * 1000), round((start + (steps - 1) * step) * 1000))
        cache: dict[Any, Any] = {}  # every selector is read once for all steps
        times = np.array([round((start + i * step) * 1000) for i in range(steps)], dtype=np.int64)
        for i in range(steps):
            t = start + i * step
            value = self.eval(expr, _Ctx(int(times[i]), query, span, cache, times))
            if isinstance(value, float):
                out.setdefault((), []).append((t, value))
            elif isinstance(value, list):
                for labels, v in self._as_vector(value, query):
                    out.setdefault(labels, []).append((t, v))
        return out

    def _fetch(
        self, matchers: list[Matcher], width: int, offset: int, ctx: _Ctx
    ) -> list[SeriesData]:
        """Samples in ``(t - offset - width, t - offset]`` of every selected series."""
        end = ctx.t - offset
        if ctx.cache is None or ctx.span is None:
            return self.db.select(matchers, end - width + 1, end)
        key = (tuple(matchers), width, offset)
        whole = ctx.cache.get(key)
        if whole is None:
            lo, hi = ctx.span[0] - offset - width + 1, ctx.span[1] - offset
            whole = ctx.cache[key] = self.db.select(matchers, lo, hi)
        out = []
        for data in whole:
            first = int(np.searchsorted(data.ts, end - width + 1, "left"))
            last = int(np.searchsorted(data.ts, end, "right"))
            if last > first:
                out.append(SeriesData(data.labels, data.ts[first:last], data.values[first:last]))
        return out

    def _as_vector(self, value: Value, query: str) -> Vector:
        if isinstance(value, list) and (not value or isinstance(value[0], tuple)):
            return value  # type: ignore[return-value]
        raise PromQLError("expected an instant vector or scalar, got a range vector", query=query)

    # -- the tree walk --------------------------------------------------------------------------
    def eval(self, node: Any, ctx: _Ctx) -> Value:  # noqa: PLR0911 - one branch per node type
        if isinstance(node, pp.NumberLiteral):
            return float(node.val)
        if isinstance(node, pp.StringLiteral):
            return str(node.val)
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr, ctx)
        if isinstance(node, pp.UnaryExpr):
            inner = self.eval(node.expr, ctx)
            if isinstance(inner, float):
                return -inner
            return [(_drop_name(lb), -v) for lb, v in self._vec(inner, ctx)]
        if isinstance(node, pp.VectorSelector):
            return self._select(node, ctx)
        if isinstance(node, pp.MatrixSelector):
            return self._matrix(node.vector_selector, _ms(node.range), ctx)
        if isinstance(node, pp.SubqueryExpr):
            return self._subquery(node, ctx)
        if isinstance(node, pp.Call):
            return self._call(node, ctx)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node, ctx)
        if isinstance(node, pp.BinaryExpr):
            lhs, rhs = self.eval(node.lhs, ctx), self.eval(node.rhs, ctx)
            result: Value = binary(str(node.op), lhs, rhs, node.modifier, ctx.query)
            return result
        raise PromQLError(f"{type(node).__name__} is not supported", query=ctx.query)

    def _vec(self, value: Value, ctx: _Ctx) -> Vector:
        return self._as_vector(value, ctx.query)

    def _matchers(self, vs: Any, ctx: _Ctx) -> list[Matcher]:
        if vs.at is not None:
            raise PromQLError("the @ modifier is not supported", query=ctx.query)
        if vs.matchers.or_matchers:
            raise PromQLError("'or' inside a selector is not supported", query=ctx.query)
        out: list[Matcher] = [(m.name, _op(m.op), m.value) for m in vs.matchers.matchers]
        if vs.name:
            out.append(("__name__", "=", vs.name))
        return out

    def _select(self, vs: Any, ctx: _Ctx) -> Vector:
        out: Vector = []
        for data in self._fetch(self._matchers(vs, ctx), self.lookback_ms, _ms(vs.offset), ctx):
            value = data.values[-1:]
            if not is_stale(value)[0]:
                out.append((data.labels, float(value[0])))
        return out

    def _matrix(self, vs: Any, range_ms: int, ctx: _Ctx) -> list[SeriesData]:
        out = []
        for data in self._fetch(self._matchers(vs, ctx), range_ms, _ms(vs.offset), ctx):
            keep = ~is_stale(data.values)
            if keep.any():
                out.append(SeriesData(data.labels, data.ts[keep], data.values[keep]))
        return out

    def _subquery(self, node: Any, ctx: _Ctx) -> list[SeriesData]:
        step = _ms(node.step) or self.subquery_step_ms
        end = ctx.t - _ms(node.offset)
        first = (end - _ms(node.range)) // step * step + step
        points: dict[Labels, tuple[list[int], list[float]]] = {}
        for t in range(first, end + 1, step):
            value = self.eval(node.expr, _Ctx(t, ctx.query))
            vector = [((), value)] if isinstance(value, float) else self._vec(value, ctx)
            for labels, v in vector:
                ts, vs = points.setdefault(labels, ([], []))
                ts.append(t)
                vs.append(v)
        return [
            SeriesData(lb, np.array(ts, np.int64), np.array(vs)) for lb, (ts, vs) in points.items()
        ]

    def _call(self, node: Any, ctx: _Ctx) -> Value:
        name = node.func.name
        args = list(node.args)
        if name in RANGE_FUNCTIONS:
            return self._range_function(name, args, ctx)
        if name in SCALAR_FUNCTIONS:
            vector = self._vec(self.eval(args[0], ctx), ctx)
            extra = [self._scalar(a, ctx) for a in args[1:]]
            fn = SCALAR_FUNCTIONS[name]
            return [(_drop_name(lb), float(fn(v, *extra))) for lb, v in vector]
        handler = getattr(self, f"_fn_{name}", None)
        if handler is None:
            raise PromQLError(f"function {name}() is not supported", query=ctx.query)
        result: Value = handler(args, ctx)
        return result

    def _scalar(self, node: Any, ctx: _Ctx) -> float:
        value = self.eval(node, ctx)
        if isinstance(value, float):
            return value
        raise PromQLError("expected a scalar argument", query=ctx.query)

    def _range_function(self, name: str, args: list[Any], ctx: _Ctx) -> Vector:
        matrix_node = args[1] if name == "quantile_over_time" else args[0]
        extra = 0.0
        if name == "quantile_over_time":
            extra = self._scalar(args[0], ctx)
        elif name == "predict_linear":
            extra = self._scalar(args[1], ctx)
        if (
            name in _STEPPED
            and isinstance(matrix_node, pp.MatrixSelector)
            and ctx.times is not None
        ):
            return self._stepped(name, matrix_node, ctx)
        matrix = self.eval(matrix_node, ctx)
        assert isinstance(matrix, list)
        range_ms = _ms(getattr(matrix_node, "range", None))
        if isinstance(matrix_node, pp.SubqueryExpr):
            offset = _ms(matrix_node.offset)
        else:
            offset = _ms(getattr(getattr(matrix_node, "vector_selector", None), "offset", None))
        end = ctx.t - offset
        fn = RANGE_FUNCTIONS[name]
        out: Vector = []
        for data in matrix:
            assert isinstance(data, SeriesData)
            value = fn(data.ts, data.values, end - range_ms, end, extra)
            if value is not None:
                keep = name == "last_over_time"
                out.append((data.labels if keep else _drop_name(data.labels), float(value)))
        return out

    def _stepped(self, name: str, node: Any, ctx: _Ctx) -> Vector:
        """rate/increase/delta in a range query: computed for all steps at the first one."""
        assert ctx.cache is not None and ctx.times is not None and ctx.span is not None
        vs, range_ms = node.vector_selector, _ms(node.range)
        offset, matchers = _ms(vs.offset), self._matchers(vs, ctx)
        key = ("stepped", name, tuple(matchers), range_ms, offset)
        table = ctx.cache.get(key)
        if table is None:
            lo, hi = ctx.span[0] - offset - range_ms + 1, ctx.span[1] - offset
            table = []
            for data in self.db.select(matchers, lo, hi):
                keep = ~is_stale(data.values)
                values, valid = windowed_rate(
                    data.ts[keep],
                    data.values[keep],
                    ctx.times - offset,
                    range_ms,
                    counter=name != "delta",
                    rate=name == "rate",
                )
                table.append((_drop_name(data.labels), values, valid))
            ctx.cache[key] = table
        k = int(np.searchsorted(ctx.times, ctx.t))
        return [(lb, float(values[k])) for lb, values, valid in table if valid[k]]

    # -- functions that are not per-sample maps ----------------------------------------------------
    def _fn_histogram_quantile(self, args: list[Any], ctx: _Ctx) -> Vector:
        q = self._scalar(args[0], ctx)
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for labels, value in self._vec(self.eval(args[1], ctx), ctx):
            le = dict(labels).get("le")
            if le is None:
                continue
            key = tuple(p for p in labels if p[0] not in ("le", "__name__"))
            groups.setdefault(key, []).append((float(le), value))
        return [(key, bucket_quantile(q, b)) for key, b in groups.items()]

    def _absent_labels(self, node: Any) -> Labels:
        vs = node.vector_selector if isinstance(node, pp.MatrixSelector) else node
        if not isinstance(vs, pp.VectorSelector):
            return ()
        eq = {m.name: m.value for m in vs.matchers.matchers if m.op == pp.MatchOp.Equal}
        return tuple(sorted(eq.items()))

    def _fn_absent(self, args: list[Any], ctx: _Ctx) -> Vector:
        present = self._vec(self.eval(args[0], ctx), ctx)
        return [] if present else [(self._absent_labels(args[0]), 1.0)]

    def _fn_absent_over_time(self, args: list[Any], ctx: _Ctx) -> Vector:
        present = self.eval(args[0], ctx)
        return [] if present else [(self._absent_labels(args[0]), 1.0)]

    def _fn_time(self, args: list[Any], ctx: _Ctx) -> float:
        return ctx.t / 1000.0

    def _fn_vector(self, args: list[Any], ctx: _Ctx) -> Vector:
        return [((), self._scalar(args[0], ctx))]

    def _fn_scalar(self, args: list[Any], ctx: _Ctx) -> float:
        vector = self._vec(self.eval(args[0], ctx), ctx)
        return vector[0][1] if len(vector) == 1 else math.nan

    def _fn_timestamp(self, args: list[Any], ctx: _Ctx) -> Vector:
        vs = args[0]
        if not isinstance(vs, pp.VectorSelector):
            return [
                (_drop_name(lb), ctx.t / 1000.0) for lb, _ in self._vec(self.eval(vs, ctx), ctx)
            ]
        out: Vector = []
        for data in self._fetch(self._matchers(vs, ctx), self.lookback_ms, _ms(vs.offset), ctx):
            if not is_stale(data.values[-1:])[0]:
                out.append((_drop_name(data.labels), float(data.ts[-1]) / 1000.0))
        return out

    def _fn_label_replace(self, args: list[Any], ctx: _Ctx) -> Vector:
        import re

        vector = self._vec(self.eval(args[0], ctx), ctx)
        dst, repl, src, regex = (str(self.eval(a, ctx)) for a in args[1:5])
        pattern = re.compile(regex)
        out: Vector = []
        for labels, value in vector:
            found = pattern.fullmatch(dict(labels).get(src, ""))
            if found is None:
                out.append((labels, value))
                continue
            new = dict(labels)
            new[dst] = found.expand(re.sub(r"\$(\d+)|\$\{(\w+)\}", r"\\g<\1\2>", repl))
            out.append((tuple(sorted((k, v) for k, v in new.items() if v)), value))
        return out

    def _fn_label_join(self, args: list[Any], ctx: _Ctx) -> Vector:
        vector = self._vec(self.eval(args[0], ctx), ctx)
        dst, sep = str(self.eval(args[1], ctx)), str(self.eval(args[2], ctx))
        sources = [str(self.eval(a, ctx)) for a in args[3:]]
        out: Vector = []
        for labels, value in vector:
            new = dict(labels)
            new[dst] = sep.join(new.get(s, "") for s in sources)
            out.append((tuple(sorted((k, v) for k, v in new.items() if v)), value))
        return out

    def _fn_sort(self, args: list[Any], ctx: _Ctx) -> Vector:
        return sorted(self._vec(self.eval(args[0], ctx), ctx), key=lambda s: s[1])

    def _fn_sort_desc(self, args: list[Any], ctx: _Ctx) -> Vector:
        return sorted(self._vec(self.eval(args[0], ctx), ctx), key=lambda s: -s[1])

    # -- aggregation ---------------------------------------------------------------------------
    def _aggregate(self, node: Any, ctx: _Ctx) -> Vector:
        op = str(node.op)
        vector = self._vec(self.eval(node.expr, ctx), ctx)
        param = self.eval(node.param, ctx) if node.param is not None else 0.0
        mod = node.modifier
        by = mod is None or mod.type == pp.AggModifierType.By
        names = set(mod.labels) if mod is not None else set()

        def key(labels: Labels) -> Labels:
            if by:
                return tuple(p for p in labels if p[0] in names)
            return tuple(p for p in labels if p[0] not in names and p[0] != "__name__")

        groups: dict[Labels, list[tuple[Labels, float]]] = {}
        for labels, value in vector:
            groups.setdefault(key(labels), []).append((labels, value))
        if op in ("topk", "bottomk"):
            k = int(param) if isinstance(param, float) else 0
            out: Vector = []
            for members in groups.values():
                ranked = sorted(members, key=lambda s: s[1], reverse=op == "topk")
                out.extend(ranked[: max(k, 0)])
            return out
        if op == "count_values":
            counted: dict[Labels, float] = {}
            for group, members in groups.items():
                for _, value in members:
                    text = str(int(value)) if value.is_integer() else repr(value)
                    lb = tuple(sorted((*group, (str(param), text))))
                    counted[lb] = counted.get(lb, 0.0) + 1.0
            return list(counted.items())
        fn = AGGREGATIONS.get(op)
        if fn is None:
            raise PromQLError(f"aggregation {op} is not supported", query=ctx.query)
        p = param if isinstance(param, float) else 0.0
        with np.errstate(all="ignore"):
            return [(g, fn(np.array([v for _, v in m]), p)) for g, m in groups.items()]


def selector_matchers(query: str) -> Sequence[list[Matcher]]:
    """The matchers of every selector in a query (for /api/v1/series ``match[]``)."""
    expr = parse_query(query)
    if isinstance(expr, pp.MatrixSelector):
        expr = expr.vector_selector
    if not isinstance(expr, pp.VectorSelector):
        raise PromQLError('expected a series selector such as up{job="a"}', query=query)
    out: list[Matcher] = [(m.name, _op(m.op), m.value) for m in expr.matchers.matchers]
    if expr.name:
        out.append(("__name__", "=", expr.name))
    return [out]
