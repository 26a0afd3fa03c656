"""Self-contained HTML reports: inline SVG charts drawn here, every text escaped, a strict CSP.

The page loads nothing (the machines that run it are often offline, and a report may be opened
anywhere): no scripts at all, styles inline, and a Content-Security-Policy that forbids the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from gyroscope.bench._result import Result
from gyroscope.core import atomic_write

__all__ = ["CSP", "render_html", "render_stress_html", "write_html"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
_COLORS = ("#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd")
_W, _H, _PAD = 640, 220, 46


def _nice(v: float) -> str:
    return f"{v:.3g}"


def line_chart(
    title: str, xs: Sequence[float], series: dict[str, Sequence[float]], unit: str
) -> str:
    """An SVG line chart of one or more series over the same x values."""
    if not xs or not series:
        return f"<p>{escape(title)}: no data</p>"
    ymax = max((max(v) for v in series.values() if v), default=1.0) or 1.0
    xmin, xmax = min(xs), max(xs)
    xspan = (xmax - xmin) or 1.0

    def px(x: float) -> float:
        return _PAD + (x - xmin) / xspan * (_W - 2 * _PAD)

    def py(y: float) -> float:
        return _H - _PAD + 10 - y / ymax * (_H - 2 * _PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_PAD}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{_PAD}" y1="{py(0)}" x2="{_W - _PAD}" y2="{py(0)}" stroke="#999"/>',
        f'<text x="4" y="{py(ymax) + 4}" font-size="10">{_nice(ymax)} {escape(unit)}</text>',
        f'<text x="4" y="{py(0) + 4}" font-size="10">0</text>',
        f'<text x="{_PAD}" y="{_H - 4}" font-size="10">{_nice(xmin)}</text>',
        f'<text x="{_W - _PAD - 30}" y="{_H - 4}" font-size="10">{_nice(xmax)}</text>',
    ]
    for i, (name, ys) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=False))
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{points}"/>'
        )
        parts.append(
            f'<text x="{_W - _PAD + 4 - 60 * (len(series) - i)}" y="16" font-size="11" '
            f'fill="{color}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def hist_chart(title: str, hist: HdrHistogram, unit_div: float = 1000.0, buckets: int = 40) -> str:
    """Bars of a latency histogram on log-spaced buckets (ms)."""
    total = hist.get_total_count()
    if not total:
        return f"<p>{escape(title)}: no data</p>"
    lo = max(hist.get_min_value(), 1)
    hi = max(hist.get_max_value(), lo + 1)
    edges = [lo * (hi / lo) ** (i / buckets) for i in range(buckets + 1)]
    counts = [0] * buckets
    for item in hist.get_recorded_iterator():
        v = item.value_iterated_to
        idx = (
            min(buckets - 1, max(0, int(math.log(max(v, lo) / lo) / math.log(hi / lo) * buckets)))
            if hi > lo
            else 0
        )
        counts[idx] += item.count_at_value_iterated_to
    cmax = max(counts) or 1
    bw = (_W - 2 * _PAD) / buckets
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_PAD}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for i, c in enumerate(counts):
        h = c / cmax * (_H - 2 * _PAD)
        parts.append(
            f'<rect x="{_PAD + i * bw:.1f}" y="{_H - _PAD - h + 10:.1f}" width="{bw - 1:.1f}" '
            f'height="{h:.1f}" fill="#1f77b4"><title>{_nice(edges[i] / unit_div)}-'
            f"{_nice(edges[i + 1] / unit_div)} ms: {c}</title></rect>"
        )
    parts.append(f'<text x="{_PAD}" y="{_H - 4}" font-size="10">{_nice(lo / unit_div)} ms</text>')
    parts.append(
        f'<text x="{_W - _PAD - 50}" y="{_H - 4}" font-size="10">{_nice(hi / unit_div)} ms '
        "(log scale)</text></svg>"
    )
    return "".join(parts)


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left}.warn{color:#b00;font-weight:bold}svg{display:block;margin:1em 0}"
        f"</style></head><body>{body}</body></html>"
    )


def render_html(result: Result) -> str:
    """One run as a page: summary, warnings, latency over time, throughput, histograms."""
    s = result.summary()
    lat = s["latency_ms"]
    parts = [
        f"<h1>{escape(result.kind)} test of {escape(result.target)}</h1>",
        f"<p>started {escape(result.started_at)}"
        + (" &mdash; <b>interrupted, partial results</b>" if result.interrupted else "")
        + "</p>",
    ]
    parts.extend(f'<p class="warn">{escape(w)}</p>' for w in result.data.warnings)
    rows: list[tuple[str, Any]] = [
        ("requests", f"{s['requests']} ({s['ok']} ok, {s['errors']} errors)"),
        ("throughput", f"{s['rps']} req/s"),
        ("error rate", f"{s['error_rate']:.2%}"),
        ("duration", f"{s['duration_s']} s"),
    ]
    rows += [
        (f"latency {k}", f"{lat[k]} ms") for k in ("p50", "p90", "p99", "p99.9", "max", "mean")
    ]
    rows.append(("status codes", json.dumps({str(k): v for k, v in result.data.status.items()})))
    rows.append(("errors by kind", json.dumps(dict(result.data.errors))))
    rows.append(("generator CPU", f"{s['generator_cpu']:.0%} of a core per worker"))
    if "llm" in s:
        llm = s["llm"]
        rows.append(("output tokens/s", llm["output_tokens_per_s"]))
        rows.append(("goodput", f"{llm['goodput_rps']} req/s ({llm['goodput_ratio']:.1%})"))
        for name in ("ttft", "itl", "tpot"):
            f = llm[f"{name}_ms"]
            rows.append((f"{name.upper()} p50 / p99", f"{f['p50']} / {f['p99']} ms"))
    parts.append(_table(rows))
    series = result.data.series
    xs = [float(i.t) for i in series]

    def pct(p: float) -> list[float]:
        return [
            i.hist.get_value_at_percentile(p) / 1000 if i.hist.get_total_count() else 0.0
            for i in series
        ]

    parts.append(
        line_chart(
            "Latency percentiles over time (x: seconds)",
            xs,
            {"p50": pct(50), "p90": pct(90), "p99": pct(99)},
            "ms",
        )
    )
    parts.append(
        line_chart(
            "Throughput (x: seconds)",
            xs,
            {
                "req/s": [float(i.requests) for i in series],
                "errors/s": [float(i.errors) for i in series],
            },
            "req/s",
        )
    )
    parts.append(hist_chart("Latency distribution", result.data.hists["latency"]))
    if result.kind == "llm":
        parts.append(hist_chart("Time to first token", result.data.hists["ttft"]))
        parts.append(hist_chart("Inter-token latency", result.data.hists["itl"]))
        parts.append(
            line_chart(
                "Output tokens/s (x: seconds)",
                xs,
                {"tokens/s": [float(i.tokens) for i in series]},
                "tok/s",
            )
        )
    parts.append("<h2>Configuration</h2>")
    parts.append(f"<pre>{escape(json.dumps(result.config, indent=1, default=str))}</pre>")
    return _page(f"gyro bench: {result.target}", "".join(parts))


def render_stress_html(doc: dict[str, Any]) -> str:
    """A stress test's curve: throughput and latency against the offered load."""
    steps = doc["steps"]
    xs = [float(s["level"]) for s in steps]
    parts = [
        f"<h1>stress test of {escape(doc['target'])}</h1>",
        f"<p>mode {escape(doc['mode'])}; SLO {escape(', '.join(doc['slo']))}; stopped: "
        f"{escape(doc['stopped_because'])}</p>",
        _table(
            [
                ("max sustainable", json.dumps(doc["max_sustainable"])),
                ("knee", json.dumps(doc["knee"])),
            ]
        ),
        line_chart(
            "Throughput against load level",
            xs,
            {"throughput": [s["throughput_rps"] for s in steps]},
            "req/s",
        ),
        line_chart(
            "Latency against load level",
            xs,
            {
                "p50": [s["latency_ms"]["p50"] for s in steps],
                "p99": [s["latency_ms"]["p99"] for s in steps],
            },
            "ms",
        ),
        _table(
            [
                (
                    s["level"],
                    f"{s['throughput_rps']} req/s, p99 {s['latency_ms']['p99']} ms, "
                    f"errors {s['error_rate']:.2%}, {'pass' if s['passed'] else 'FAIL'}",
                )
                for s in steps
            ]
        ),
    ]
    return _page(f"gyro bench stress: {doc['target']}", "".join(parts))


def write_html(path: str | Path, page: str) -> None:
    atomic_write(Path(path), page.encode("utf-8"))
