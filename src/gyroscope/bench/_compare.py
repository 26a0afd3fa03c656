"""Is B faster, slower, or not different from A? Statistics over two results.

Latency: a two-sided Mann-Whitney U test on samples drawn from the two histograms (exact values at
the histograms' 0.1% resolution; at most ``max_samples`` per side, drawn with a fixed seed so the
verdict is repeatable), plus bootstrap confidence intervals of the p50 and p99 differences.
Throughput: a bootstrap confidence interval of the ratio of mean requests per second, resampling
the per-second series. With many samples a test finds "significant" differences too small to
matter (and a shared machine drifts by several percent between runs), so a verdict also needs
the effect to exceed ``min_effect`` (10% by default).
"""

from __future__ import annotations

import math
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
    a: np.ndarray, b: np.ndarray, q: float, rng: np.random.Generator, rounds: int = 300
) -> tuple[float, float, float]:
    n = min(len(a), len(b), 2000)
    ia = rng.integers(0, len(a), size=(rounds, n))
    ib = rng.integers(0, len(b), size=(rounds, n))
    diffs = np.quantile(b[ib], q, axis=1) - np.quantile(a[ia], q, axis=1)
    point = float(np.quantile(b, q) - np.quantile(a, q))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return point / 1000.0, float(lo) / 1000.0, float(hi) / 1000.0


def _series_rps(data: RunData) -> np.ndarray:
    """Successful requests in each *full* second (a last partial second would bias the mean)."""
    series = [i.requests - i.errors for i in data.series if i.t + 1 <= data.elapsed + 0.05]
    return np.asarray(series, dtype=float)


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
    min_effect: float = 0.10,
    max_samples: int = 20_000,
    seed: int = 0,
) -> Comparison:
    """Compare result ``b`` with baseline ``a``.

    >>> # compare(Result.load("a.json"), Result.load("b.json")).verdict -> 'slower'
    """
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    p_value, latency, lat_verdict = _latency(a, b, rng, alpha, min_effect, max_samples, notes)
    throughput, thr_verdict = _throughput(a, b, rng, min_effect, notes)
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


def _latency(
    a: Result,
    b: Result,
    rng: np.random.Generator,
    alpha: float,
    min_effect: float,
    max_samples: int,
    notes: list[str],
) -> tuple[float, dict[str, dict[str, float]], int]:
    """Mann-Whitney U p-value, percentile differences with CIs, and +1 slower / -1 faster / 0."""
    from scipy.stats import mannwhitneyu  # slow to import (~1 s); only compare needs it

    sa = hist_samples(a.data.hists["latency"], max_samples, rng)
    sb = hist_samples(b.data.hists["latency"], max_samples, rng)
    if len(sa) < 5 or len(sb) < 5:
        notes.append("too few latency samples for a test (need 5 per side)")
        return 1.0, {}, 0
    p_value = float(mannwhitneyu(sa, sb, alternative="two-sided").pvalue)
    latency: dict[str, dict[str, float]] = {}
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
    verdict = 0
    if p_value < alpha and abs(ratio - 1) > min_effect:
        verdict = 1 if ratio > 1 else -1
    return p_value, latency, verdict


def _throughput(
    a: Result, b: Result, rng: np.random.Generator, min_effect: float, notes: list[str]
) -> tuple[dict[str, float], int]:
    """Throughput ratio B/A with a bootstrap CI over full seconds; +1 faster / -1 slower / 0."""
    ra, rb = _series_rps(a.data), _series_rps(b.data)
    total_a, total_b = a.metric("throughput"), b.metric("throughput")
    lo = hi = float("nan")
    if len(ra) >= 3 and len(rb) >= 3:
        means_a = ra[rng.integers(0, len(ra), size=(1000, len(ra)))].mean(axis=1)
        means_b = rb[rng.integers(0, len(rb), size=(1000, len(rb)))].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = means_b / means_a
        if np.isfinite(boot).any():
            lo, hi = (float(x) for x in np.quantile(boot[np.isfinite(boot)], [0.025, 0.975]))
    else:
        notes.append("runs shorter than 3 s: no confidence interval for throughput")
    out = {
        "a_rps": round(total_a, 2),
        "b_rps": round(total_b, 2),
        "ratio": round(total_b / total_a, 4) if total_a else float("nan"),
        "ci_low": round(lo, 4),
        "ci_high": round(hi, 4),
    }
    if a.config.get("model") == "open" and b.config.get("model") == "open":
        notes.append("open-model runs: throughput is set by the rate; judge by latency")
        return out, 0
    if math.isfinite(lo) and (lo > 1 + min_effect or hi < 1 - min_effect):
        return out, 1 if lo > 1 else -1  # more throughput is faster
    return out, 0


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
