"""Stress tests: raise the load step by step until an SLO breaks; find the knee and the maximum.

Each step is a full run (open model at a rate, or closed model at a concurrency) of
``step_duration`` seconds. A step *passes* when every SLO threshold holds (by default p99 < 1 s and
error_rate < 1%) and, in rate mode, the server kept up (throughput >= 90% of the offered rate).
The test stops after the first failing step (or at ``max_level``/``max_steps``).

- **Maximum sustainable throughput**: the highest throughput of a passing step.
- **Knee**: the last step before latency bends upwards: p50 more than ``knee_factor`` (1.5x) above
  the first step's, or throughput no longer following the load (rate mode: below 95% of the
  offered rate; concurrency mode: below 70% of the first step's throughput per user).

``StressResult.to_json()`` (schema ``gyroscope.bench.stress/1``) is what capacity planning reads::

    {"schema": "gyroscope.bench.stress/1", "target": URL, "mode": "rate" | "concurrency",
     "slo": ["p99<1s", ...], "stopped_because": "...",
     "max_sustainable": {"level": L, "throughput_rps": X, "p99_ms": ...} | null,
     "knee": {"level": L, "throughput_rps": X, "p50_ms": ..., "p99_ms": ...} | null,
     "steps": [{"level": L, "offered_rps": R | null, "throughput_rps": X, "rps": X_all,
                "error_rate": E, "latency_ms": {"p50", "p90", "p99", "p99.9", "max", "mean"},
                "passed": bool, "failed": ["p99<1s (was 1432.1)", ...],
                "tokens_per_s": T, "ttft_p99_ms": ..., "itl_p99_ms": ...}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gyroscope.bench._llm import LlmConfig, run_llm
from gyroscope.bench._load import LoadConfig, run_load
from gyroscope.bench._result import Result
from gyroscope.bench._thresholds import evaluate
from gyroscope.bench._units import Threshold, parse_threshold
from gyroscope.core import atomic_write
from gyroscope.errors import BenchError

__all__ = [
    "STRESS_SCHEMA",
    "StressResult",
    "StressStep",
    "find_knee",
    "run_stress",
    "stress_levels",
]

STRESS_SCHEMA = "gyroscope.bench.stress/1"
DEFAULT_SLO = ("p99<1s", "error_rate<1%")


@dataclass
class StressStep:
    level: float
    result: Result
    passed: bool
    failed: list[str]

    def figures(self, mode: str) -> dict[str, Any]:
        r = self.result
        out: dict[str, Any] = {
            "level": self.level,
            "offered_rps": self.level if mode == "rate" else None,
            "throughput_rps": round(r.metric("throughput"), 3),
            "rps": round(r.metric("rps"), 3),
            "error_rate": round(r.metric("error_rate"), 6),
            "latency_ms": r.latency_summary(),
            "passed": self.passed,
            "failed": self.failed,
        }
        if r.kind == "llm":
            out["tokens_per_s"] = round(r.metric("tokens_per_s"), 2)
            out["ttft_p99_ms"] = round(r.metric("ttft_p99"), 3)
            out["itl_p99_ms"] = round(r.metric("itl_p99"), 3)
            out["goodput_rps"] = round(r.metric("goodput"), 3)
        return out


@dataclass
class StressResult:
    """The whole curve, the knee and the maximum sustainable throughput."""

    target: str
    mode: str
    slo: list[str]
    steps: list[StressStep] = field(default_factory=list)
    stopped_because: str = ""
    interrupted: bool = False

    @property
    def knee(self) -> StressStep | None:
        return find_knee(self.steps, self.mode)

    @property
    def max_sustainable(self) -> StressStep | None:
        passing = [s for s in self.steps if s.passed]
        return max(passing, key=lambda s: s.result.metric("throughput"), default=None)

    def to_json(self) -> dict[str, Any]:
        def brief(step: StressStep | None) -> dict[str, Any] | None:
            if step is None:
                return None
            return {
                "level": step.level,
                "throughput_rps": round(step.result.metric("throughput"), 3),
                "p50_ms": round(step.result.metric("p50"), 3),
                "p99_ms": round(step.result.metric("p99"), 3),
            }

        return {
            "schema": STRESS_SCHEMA,
            "target": self.target,
            "mode": self.mode,
            "slo": self.slo,
            "stopped_because": self.stopped_because,
            "interrupted": self.interrupted,
            "max_sustainable": brief(self.max_sustainable),
            "knee": brief(self.knee),
            "steps": [s.figures(self.mode) for s in self.steps],
            "step_results": [s.result.to_json() for s in self.steps],
        }

    def save(self, path: str | Path) -> None:
        atomic_write(Path(path), json.dumps(self.to_json(), indent=1).encode())


def find_knee(
    steps: Sequence[StressStep], mode: str, knee_factor: float = 1.5
) -> StressStep | None:
    """The last step before latency bends upwards (pure; see the module docstring)."""
    if not steps:
        return None
    first = steps[0]
    base = max(first.result.metric("p50"), 1e-3)
    per_user = first.result.metric("throughput") / max(first.level, 1e-9)
    knee = None
    for step in steps:
        r = step.result
        bent = r.metric("p50") > knee_factor * base or r.metric("error_rate") > 0.01
        if mode == "rate" and r.metric("throughput") < 0.95 * step.level:
            bent = True
        if mode == "concurrency" and r.metric("throughput") < 0.7 * per_user * step.level:
            bent = True  # users added beyond capacity only wait: throughput stops following
        if bent:
            break
        knee = step
    return knee


def stress_levels(
    start: float, step: float, factor: float, max_level: float, max_steps: int
) -> list[float]:
    """``start``, then each level ``+ step`` (or ``* factor`` when factor > 1), up to ``max_level``."""
    if start <= 0 or max_level < start:
        raise BenchError("stress levels: start must be above 0 and at most --max")
    if factor <= 1 and step <= 0:
        raise BenchError("stress levels: give --step above 0 or --factor above 1")
    levels = [start]
    while len(levels) < max_steps:
        nxt = levels[-1] * factor if factor > 1 else levels[-1] + step
        if nxt > max_level + 1e-9:
            break
        levels.append(round(nxt, 6))
    return levels


async def run_stress(
    base: LoadConfig | LlmConfig,
    levels: Sequence[float],
    *,
    mode: str = "rate",
    step_duration: float = 5.0,
    slo: Sequence[str] = DEFAULT_SLO,
    on_step: Callable[[StressStep], None] | None = None,
    stop: Any = None,
) -> StressResult:
    """Run one step per level until a step fails; returns the whole curve.

    >>> # await run_stress(LoadConfig(url=URL), [2, 4, 6, 8], mode="concurrency", step_duration=2)
    """
    if mode not in ("rate", "concurrency"):
        raise BenchError(f"bad stress mode {mode!r}: expected rate or concurrency")
    thresholds: list[Threshold] = [parse_threshold(t) for t in slo]
    out = StressResult(target=base.url, mode=mode, slo=list(slo))
    for level in levels:
        if stop is not None and stop.is_set():
            out.interrupted = True
            out.stopped_because = "interrupted"
            break
        result = await _one_step(base, level, mode, step_duration, stop)
        checks = evaluate(result, thresholds)
        failed = [f"{t.text} (was {actual:.4g})" for t, actual, ok in checks if not ok]
        if mode == "rate" and result.metric("throughput") < 0.9 * level:
            failed.append(
                f"throughput {result.metric('throughput'):.1f} < 90% of {level:g} offered"
            )
        step = StressStep(level=level, result=result, passed=not failed, failed=failed)
        out.steps.append(step)
        if on_step is not None:
            on_step(step)
        if result.interrupted:
            out.interrupted = True
            out.stopped_because = "interrupted"
            break
        if failed:
            out.stopped_because = f"level {level:g}: " + "; ".join(failed)
            break
    else:
        out.stopped_because = "reached the last level with every SLO holding"
    return out


async def _one_step(
    base: LoadConfig | LlmConfig, level: float, mode: str, duration: float, stop: Any
) -> Result:
    if isinstance(base, LlmConfig):
        changes: dict[str, Any] = {"duration": duration, "requests": None}
        changes.update(
            {"rate": level} if mode == "rate" else {"concurrency": int(level), "rate": None}
        )
        cfg_llm = base.model_copy(update=changes)
        result: Result = await run_llm(LlmConfig.model_validate(cfg_llm.model_dump()), stop=stop)
        return result
    changes = {"duration": duration, "requests": None, "stages": []}
    changes.update({"rate": level} if mode == "rate" else {"connections": int(level), "rate": None})
    cfg = LoadConfig.model_validate({**base.model_dump(), **changes})
    return await run_load(cfg, stop=stop)
