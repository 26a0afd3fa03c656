"""Load, stress and benchmark tests, HTTP and LLM-aware: ``gyro bench`` as a Python API.

The engine runs on uvloop with asyncio Protocols and httptools' response parser over keep-alive
connection pools, in one or several worker processes whose HdrHistograms are merged. Closed model
(connections / virtual users) or open model (constant or Poisson arrivals, latency measured from
the intended send time), stages and ramps, scenarios, LLM streaming metrics, stress curves with a
knee, statistical comparison, CI thresholds, JSON and HTML reports.

>>> cfg = LoadConfig(url="http://127.0.0.1:8080/", rate=200, duration="5s")
>>> # result = run_load_sync(cfg); result.metric("p99"); result.save("result.json")
>>> parse_threshold("p99<200ms").value
200.0
"""

from gyroscope.bench._compare import Comparison, compare, concat
from gyroscope.bench._engine import Engine, WorkerPlan
from gyroscope.bench._html import CSP, render_html, render_stress_html, write_html
from gyroscope.bench._llm import LlmConfig, run_llm
from gyroscope.bench._load import LoadConfig, build_plan, run_load, run_load_sync
from gyroscope.bench._recorder import Interval, RunData
from gyroscope.bench._result import SCHEMA, Result
from gyroscope.bench._scenario import Scenario, load_rows, load_scenario
from gyroscope.bench._schedule import Schedule
from gyroscope.bench._stress import (
    STRESS_SCHEMA,
    StressResult,
    StressStep,
    find_knee,
    run_stress,
    stress_levels,
)
from gyroscope.bench._thresholds import check_thresholds, evaluate
from gyroscope.bench._units import (
    Stage,
    Threshold,
    parse_duration,
    parse_rate,
    parse_stage,
    parse_threshold,
)

__all__ = [
    "CSP",
    "SCHEMA",
    "STRESS_SCHEMA",
    "Comparison",
    "Engine",
    "Interval",
    "LlmConfig",
    "LoadConfig",
    "Result",
    "RunData",
    "Scenario",
    "Schedule",
    "Stage",
    "StressResult",
    "StressStep",
    "Threshold",
    "WorkerPlan",
    "build_plan",
    "check_thresholds",
    "compare",
    "concat",
    "evaluate",
    "find_knee",
    "load_rows",
    "load_scenario",
    "parse_duration",
    "parse_rate",
    "parse_stage",
    "parse_threshold",
    "render_html",
    "render_stress_html",
    "run_llm",
    "run_load",
    "run_load_sync",
    "run_stress",
    "stress_levels",
    "write_html",
]
