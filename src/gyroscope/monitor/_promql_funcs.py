"""PromQL functions and aggregations over numpy arrays, following Prometheus's definitions.

``extrapolated_rate`` is Prometheus's rate/increase/delta: the increase seen between the first and
last sample in the window, corrected for counter resets, extrapolated towards the window edges
(never past where the counter would have been zero, and at most half a sample interval beyond the
samples when they stop short of an edge).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "AGGREGATIONS",
    "RANGE_FUNCTIONS",
    "SCALAR_FUNCTIONS",
    "bucket_quantile",
    "extrapolated_rate",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def extrapolated_rate(
    ts: I64, vs: F64, start_ms: int, end_ms: int, *, counter: bool, rate: bool
) -> float | None:
    if len(vs) < 2:
        return None
    result = float(vs[-1] - vs[0])
    if counter:
        drops = np.diff(vs) < 0
        result += float(vs[:-1][drops].sum())
    to_start = (ts[0] - start_ms) / 1000.0
    to_end = (end_ms - ts[-1]) / 1000.0
    sampled = (ts[-1] - ts[0]) / 1000.0
    if sampled <= 0:
        return None
    average = sampled / (len(vs) - 1)
    if counter and result > 0 and vs[0] >= 0:
        to_start = min(to_start, sampled * (float(vs[0]) / result))
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    factor = interval / sampled
    if rate:
        factor /= (end_ms - start_ms) / 1000.0
    return float(result * factor)


def _instant(ts: I64, vs: F64, *, rate: bool) -> float | None:
    if len(vs) < 2:
        return None
    last, prev = float(vs[-1]), float(vs[-2])
    dt = (ts[-1] - ts[-2]) / 1000.0
    if dt == 0:
        return None
    diff = last if rate and last < prev else last - prev
    return diff / dt if rate else diff


def _regression(ts: I64, vs: F64, at_ms: int) -> tuple[float, float] | None:
    if len(vs) < 2:
        return None
    x = (ts - at_ms) / 1000.0
    xm, ym = x.mean(), vs.mean()
    var = float(((x - xm) ** 2).sum())
    if var == 0:
        return None
    slope = float(((x - xm) * (vs - ym)).sum()) / var
    return slope, float(ym - slope * xm)


def _quantile(q: float, values: F64) -> float:
    if len(values) == 0:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    return float(np.quantile(values, q))


RangeFn = Callable[[I64, F64, int, int, float], float | None]

RANGE_FUNCTIONS: dict[str, RangeFn] = {
    "rate": lambda t, v, s, e, a: extrapolated_rate(t, v, s, e, counter=True, rate=True),
    "increase": lambda t, v, s, e, a: extrapolated_rate(t, v, s, e, counter=True, rate=False),
    "delta": lambda t, v, s, e, a: extrapolated_rate(t, v, s, e, counter=False, rate=False),
    "irate": lambda t, v, s, e, a: _instant(t, v, rate=True),
    "idelta": lambda t, v, s, e, a: _instant(t, v, rate=False),
    "avg_over_time": lambda t, v, s, e, a: float(v.mean()),
    "sum_over_time": lambda t, v, s, e, a: float(v.sum()),
    "min_over_time": lambda t, v, s, e, a: float(v.min()),
    "max_over_time": lambda t, v, s, e, a: float(v.max()),
    "count_over_time": lambda t, v, s, e, a: float(len(v)),
    "last_over_time": lambda t, v, s, e, a: float(v[-1]),
    "present_over_time": lambda t, v, s, e, a: 1.0,
    "stddev_over_time": lambda t, v, s, e, a: float(v.std()),
    "stdvar_over_time": lambda t, v, s, e, a: float(v.var()),
    "quantile_over_time": lambda t, v, s, e, a: _quantile(a, v),
    "changes": lambda t, v, s, e, a: float((np.diff(v) != 0).sum()),
    "resets": lambda t, v, s, e, a: float((np.diff(v) < 0).sum()),
    "deriv": lambda t, v, s, e, a: r[0] if (r := _regression(t, v, e)) else None,
    "predict_linear": lambda t, v, s, e, a: (
        r[1] + r[0] * a if (r := _regression(t, v, e)) else None
    ),
}

SCALAR_FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs,
    "ceil": math.ceil,
    "floor": math.floor,
    "exp": math.exp,
    "sqrt": lambda x: math.sqrt(x) if x >= 0 else math.nan,
    "ln": lambda x: math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan),
    "log2": lambda x: math.log2(x) if x > 0 else (-math.inf if x == 0 else math.nan),
    "log10": lambda x: math.log10(x) if x > 0 else (-math.inf if x == 0 else math.nan),
    "sgn": lambda x: float(np.sign(x)),
    "round": lambda x, to=1.0: math.floor(x / to + 0.5) * to,
    "clamp": lambda x, lo, hi: math.nan if lo > hi else max(lo, min(hi, x)),
    "clamp_min": lambda x, lo: max(lo, x),
    "clamp_max": lambda x, hi: min(hi, x),
}


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:  # noqa: PLR0911
    """Prometheus's histogram_quantile over (upper bound, cumulative count) pairs."""
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return math.nan
    counts = np.maximum.accumulate(np.array([c for _, c in buckets]))  # fix non-monotonic counts
    total = float(counts[-1])
    if total == 0 or math.isnan(total):
        return math.nan
    rank = q * total
    b = int(np.searchsorted(counts, rank, "left"))
    if b == len(buckets) - 1:
        return buckets[-2][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[b][0], float(counts[b])
    if b > 0:
        start = buckets[b - 1][0]
        count -= float(counts[b - 1])
        rank -= float(counts[b - 1])
    return start + (end - start) * (rank / count) if count else start


def _agg(name: str) -> Callable[[F64, float], float]:
    table: dict[str, Callable[[F64, float], float]] = {
        "sum": lambda v, p: float(v.sum()),
        "avg": lambda v, p: float(v.mean()),
        "min": lambda v, p: float(np.nanmin(v)) if not np.isnan(v).all() else math.nan,
        "max": lambda v, p: float(np.nanmax(v)) if not np.isnan(v).all() else math.nan,
        "count": lambda v, p: float(len(v)),
        "group": lambda v, p: 1.0,
        "stddev": lambda v, p: float(v.std()),
        "stdvar": lambda v, p: float(v.var()),
        "quantile": lambda v, p: _quantile(p, v),
    }
    return table[name]


AGGREGATIONS = {
    name: _agg(name)
    for name in ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile")
}
