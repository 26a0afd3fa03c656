"""Is B faster, slower, or not different from A? Statistics over two results.

Latency: a two-sided Mann-Whitney U test on samples drawn from the two histograms (exact values at
the histograms' 0.1% resolution; at most ``max_samples`` per side, drawn with a fixed seed so the
verdict is repeatable), plus bootstrap confidence intervals of the p50 and p99 differences.
Throughput: a bootstrap confidence interval of the ratio of mean requests per second, resampling
the per-second series. With many samples a test finds "significant" differences too small to
matter, so a verdict also needs the effect to exceed ``min_effect`` (5% by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from gyroscope.bench._recorder import RunData
from gyroscope.bench._result import Result

__all__ = ["Comparison", "compare", "concat", "hist_samples"]


def hist_samples(hist: HdrHistogram, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``limit`` values (microseconds) distributed as the histogram's recorded values."""
    values, counts = [], []
    for item in hist.get_recorded_iterator():
        values.append(item.value_iterated_to)
        counts.append(item.count_at_value_iterated_to)
    if not values:
        return np.zeros(0)
    vals = np.asarray(values, dtype=float)
    cnts = np.asarray(counts, dtype=np.int64)
    total = int(cnts.sum())
    if total <= limit:
        return np.repeat(vals, cnts)
    return rng.choice(vals, size=limit, p=cnts / total)


def _bootstrap_diff(
    a: np.ndarray, b: np.ndarray, q: float, rng: np.random.Generator, rounds: int = 400
) -> tuple[float, float, float]:
    n = min(len(a), len(b), 5000)
    ia = rng.integers(0, len(a), size=(rounds, n))
    ib = rng.integers(0, len(b), size=(rounds, n))
    diffs = np.quantile(b[ib], q, axis=1) - np.quantile(a[ia], q, axis=1)
    point = float(np.quantile(b, q) - np.quantile(a, q))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return point / 1000.0, float(lo) / 1000.0, float(hi) / 1000.0


def _series_rps(data: RunData) -> np.ndarray:
    series = [i.requests - i.errors for i in data.series if i.requests or i.errors]
    # The last interval is usually a fraction of a second; it would bias the mean down.
    if len(series) > 2:
        series = series[:-1]
    return np.asarray(series or [0], dtype=float)


@dataclass
class Comparison:
    """What ``compare`` found; ``verdict`` is ``faster``, ``slower`` or ``no significant difference``
    (for B relative to A)."""

    verdict: str
    latency_p_value: float
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "latency_p_value": self.latency_p_value,
            "latency_ms": self.latency,
            "throughput": self.throughput,
            "notes": self.notes,
        }


def compare(
    a: Result,
    b: Result,
    *,
    alpha: float = 0.01,
    min_effect: float = 0.05,
    max_samples: int = 20_000,
    seed: int = 0,
) -> Comparison:
    """Compare result ``b`` with baseline ``a``.

    >>> # compare(Result.load("a.json"), Result.load("b.json")).verdict -> 'slower'
    """
    from scipy.stats import mannwhitneyu  # slow to import (~1 s); only compare needs it

    rng = np.random.default_rng(seed)
    sa = hist_samples(a.data.hists["latency"], max_samples, rng)
    sb = hist_samples(b.data.hists["latency"], max_samples, rng)
    notes: list[str] = []
    latency: dict[str, dict[str, float]] = {}
    p_value = 1.0
    lat_verdict = 0
    if len(sa) >= 5 and len(sb) >= 5:
        p_value = float(mannwhitneyu(sa, sb, alternative="two-sided").pvalue)
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            diff, lo, hi = _bootstrap_diff(sa, sb, q, rng)
            base = float(np.quantile(sa, q)) / 1000.0
            latency[name] = {
                "a": round(base, 3),
                "b": round(base + diff, 3),
                "diff": round(diff, 3),
                "ci_low": round(lo, 3),
                "ci_high": round(hi, 3),
                "ratio": round((base + diff) / base, 4) if base else 0.0,
            }
        ratio = latency["p50"]["ratio"]
        if p_value < alpha and abs(ratio - 1) > min_effect:
            lat_verdict = 1 if ratio > 1 else -1
    else:
        notes.append("too few latency samples for a test (need 5 per side)")
    ra, rb = _series_rps(a.data), _series_rps(b.data)
    boot = []
    for _ in range(1000):
        ma = rng.choice(ra, size=len(ra)).mean()
        mb = rng.choice(rb, size=len(rb)).mean()
        boot.append(mb / ma if ma else np.nan)
    lo, hi = np.nanquantile(boot, [0.025, 0.975]) if np.isfinite(boot).any() else (np.nan, np.nan)
    ratio_t = float(rb.mean() / ra.mean()) if ra.mean() else float("nan")
    throughput = {
        "a_rps": round(float(ra.mean()), 2),
        "b_rps": round(float(rb.mean()), 2),
        "ratio": round(ratio_t, 4),
        "ci_low": round(float(lo), 4),
        "ci_high": round(float(hi), 4),
    }
    thr_verdict = 0
    if np.isfinite(lo) and (lo > 1 + min_effect or hi < 1 - min_effect):
        thr_verdict = 1 if lo > 1 else -1  # more throughput is faster
    if a.config.get("model") == "open" and b.config.get("model") == "open":
        notes.append("open-model runs: throughput is set by the rate; judge by latency")
        thr_verdict = 0
    if lat_verdict:
        verdict = "slower" if lat_verdict > 0 else "faster"
        if thr_verdict and thr_verdict == lat_verdict:  # latency up but throughput up too: mixed
            notes.append("latency and throughput disagree")
    elif thr_verdict:
        verdict = "faster" if thr_verdict > 0 else "slower"
    else:
        verdict = "no significant difference"
    return Comparison(
        verdict=verdict,
        latency_p_value=p_value,
        latency=latency,
        throughput=throughput,
        notes=notes,
    )


def concat(parts: list[RunData]) -> RunData:
    """Runs made one after another (A/B rounds) as one: series laid end to end, time summed."""
    from gyroscope.bench._recorder import Interval

    out = RunData.merge(
        [
            RunData(
                counters=p.counters,
                status=p.status,
                errors=p.errors,
                hists=p.hists,
                workers=p.workers,
            )
            for p in parts
        ]
    )
    out.workers = max((p.workers for p in parts), default=1)
    offset = 0
    series: list[Interval] = []
    for part in parts:
        for interval in part.series:
            moved = Interval(
                t=interval.t + offset,
                requests=interval.requests,
                errors=interval.errors,
                bytes_in=interval.bytes_in,
                tokens=interval.tokens,
                hist=interval.hist,
            )
            series.append(moved)
        offset += max((i.t for i in part.series), default=0) + 1
    out.series = series
    out.elapsed = sum(p.elapsed for p in parts)
    out.cpu_seconds = sum(p.cpu_seconds for p in parts)
    out.warnings = [w for p in parts for w in p.warnings]
    return out
