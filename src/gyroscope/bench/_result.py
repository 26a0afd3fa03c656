"""A run's result: what was asked, what was measured, and every figure derived from it.

The JSON form (schema ``gyroscope.bench.result/1``) keeps the full histograms (HdrHistogram's
compressed base64 encoding) and the per-second series, so every figure can be recomputed from the
file alone; ``summary`` is there for readers that want the headline numbers without decoding.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gyroscope.bench._recorder import RunData
from gyroscope.core import atomic_write
from gyroscope.errors import BenchError

__all__ = ["PERCENTILES", "SCHEMA", "Result"]

SCHEMA = "gyroscope.bench.result/1"
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def _pname(p: float) -> str:
    return f"p{p:g}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Result:
    """The outcome of ``run_load`` / ``run_llm`` (and each step of a stress test).

    >>> r = Result(kind="load", target="http://127.0.0.1:1/", data=RunData())
    >>> r.metric("error_rate")
    0.0
    """

    kind: str
    target: str
    data: RunData
    config: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=_now)
    interrupted: bool = False

    # -- derived figures ----------------------------------------------------------------------

    def hist_ms(self, name: str, p: float) -> float:
        hist = self.data.hists[name]
        if hist.get_total_count() == 0:
            return 0.0
        if p >= 100:
            return float(hist.get_max_value()) / 1000.0
        return float(hist.get_value_at_percentile(p)) / 1000.0

    def metric(self, name: str) -> float:
        """One figure by name: ``p99`` (ms), ``error_rate`` (fraction), ``rps``, ``ttft_p99``...

        Latency names take a histogram prefix (``lag_``, ``ttft_``, ``itl_``, ``tpot_``, ``e2e_``);
        plain ``p99``/``max``/``mean`` mean end-to-end latency.
        """
        c = self.data.counters
        elapsed = max(self.data.elapsed, 1e-9)
        simple = {
            "requests": float(c["requests"]),
            "ok": float(c["ok"]),
            "errors": float(c["errors"]),
            "error_rate": c["errors"] / c["requests"] if c["requests"] else 0.0,
            "rps": c["requests"] / elapsed,
            "throughput": c["ok"] / elapsed,
            "bytes_in": float(c["bytes_in"]),
            "tokens": float(c["tokens"]),
            "tokens_per_s": c["tokens"] / elapsed,
            "goodput": c["good"] / elapsed,
            "goodput_ratio": c["good"] / c["requests"] if c["requests"] else 0.0,
            "unsent": float(c["unsent"]),
            "unfinished": float(c["unfinished"]),
            "duration": elapsed,
            "cpu": self.data.cpu_seconds / (elapsed * max(self.data.workers, 1)),
        }
        if name in simple:
            return simple[name]
        hist, _, stat = name.rpartition("_")
        hist = {"": "latency", "e2e": "latency"}.get(hist, hist)
        if hist not in self.data.hists:
            raise BenchError(
                f"unknown metric {name!r}: try p50, p99, max, error_rate, rps, ttft_p99"
            )
        h = self.data.hists[hist]
        if stat == "max":
            return self.hist_ms(hist, 100)
        if stat == "min":
            return float(h.get_min_value()) / 1000.0 if h.get_total_count() else 0.0
        if stat == "mean":
            return float(h.get_mean_value()) / 1000.0 if h.get_total_count() else 0.0
        if stat.startswith("p"):
            try:
                p = float(stat[1:])
            except ValueError:
                p = math.nan
            if 0 <= p <= 100:
                return self.hist_ms(hist, p)
        raise BenchError(f"unknown metric {name!r}: try p50, p99, max, error_rate, rps, ttft_p99")

    def latency_summary(self, name: str = "latency") -> dict[str, float]:
        out = {_pname(p): round(self.hist_ms(name, p), 3) for p in PERCENTILES}
        out["max"] = round(self.hist_ms(name, 100), 3)
        out["mean"] = round(self.metric(("" if name == "latency" else name + "_") + "mean"), 3)
        out["count"] = int(self.data.hists[name].get_total_count())
        return out

    def summary(self) -> dict[str, Any]:
        c = self.data.counters
        out: dict[str, Any] = {
            "requests": c["requests"],
            "ok": c["ok"],
            "errors": c["errors"],
            "error_rate": round(self.metric("error_rate"), 6),
            "rps": round(self.metric("rps"), 2),
            "throughput": round(self.metric("throughput"), 2),
            "bytes_in": c["bytes_in"],
            "bytes_out": c["bytes_out"],
            "duration_s": round(self.data.elapsed, 3),
            "latency_ms": self.latency_summary(),
            "generator_cpu": round(self.metric("cpu"), 3),
            "unsent": c["unsent"],
            "unfinished": c["unfinished"],
        }
        if self.data.hists["lag"].get_total_count():
            out["schedule_lag_ms"] = self.latency_summary("lag")
        if self.kind == "llm":
            out["llm"] = {
                "output_tokens": c["tokens"],
                "output_tokens_per_s": round(self.metric("tokens_per_s"), 2),
                "goodput_rps": round(self.metric("goodput"), 3),
                "goodput_ratio": round(self.metric("goodput_ratio"), 4),
                "ttft_ms": self.latency_summary("ttft"),
                "itl_ms": self.latency_summary("itl"),
                "tpot_ms": self.latency_summary("tpot"),
            }
        return out

    # -- files ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "target": self.target,
            "started_at": self.started_at,
            "interrupted": self.interrupted,
            "config": self.config,
            "summary": self.summary(),
            "status_codes": {str(k): v for k, v in sorted(self.data.status.items())},
            "errors": dict(sorted(self.data.errors.items())),
            "warnings": list(self.data.warnings),
            "data": self.data.to_json(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], *, source: str = "<result>") -> Result:
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise BenchError(f"{source}: not a gyroscope bench result (schema {SCHEMA} expected)")
        try:
            return cls(
                kind=str(doc["kind"]),
                target=str(doc["target"]),
                data=RunData.from_json(doc["data"]),
                config=dict(doc.get("config", {})),
                started_at=str(doc.get("started_at", "")),
                interrupted=bool(doc.get("interrupted", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"{source}: malformed result file: {exc}") from None

    def save(self, path: str | Path) -> None:
        atomic_write(Path(path), json.dumps(self.to_json(), indent=1).encode())

    @classmethod
    def load(cls, path: str | Path) -> Result:
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise BenchError(f"{path}: cannot read: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise BenchError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
        if isinstance(doc, dict) and doc.get("schema", "").startswith("gyroscope.bench.stress"):
            raise BenchError(f"{path}: a stress result; compare takes load or llm results")
        return cls.from_json(doc, source=str(path))
