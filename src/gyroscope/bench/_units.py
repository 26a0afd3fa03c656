"""Parsing of the small text forms users type: durations, rates, stages, thresholds and SLOs.

Every parser raises ``BenchError`` with a one-line message that says what was expected, so the CLI
can print it as is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gyroscope.errors import BenchError

__all__ = [
    "Stage",
    "Threshold",
    "parse_duration",
    "parse_rate",
    "parse_stage",
    "parse_threshold",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)?\s*$")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str | float | int) -> float:
    """``"30s"``, ``"1m"``, ``"250ms"`` or a number of seconds -> seconds.

    >>> parse_duration("1m"), parse_duration("250ms"), parse_duration(2)
    (60.0, 0.25, 2.0)
    """
    if isinstance(text, int | float):
        value = float(text)
    else:
        match = _DURATION.match(text)
        if match is None:
            raise BenchError(f"bad duration {text!r}: expected e.g. 500ms, 30s, 2m, 1h")
        value = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if value < 0:
        raise BenchError(f"bad duration {text!r}: must not be negative")
    return value


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(rps|/s|rpm|/m)?\s*$")


def parse_rate(text: str | float | int) -> float:
    """``"500rps"``, ``"500/s"``, ``"600rpm"`` or a number -> requests per second.

    >>> parse_rate("500rps"), parse_rate("120rpm")
    (500.0, 2.0)
    """
    if isinstance(text, int | float):
        value = float(text)
    else:
        match = _RATE.match(text)
        if match is None:
            raise BenchError(f"bad rate {text!r}: expected e.g. 100, 100rps, 600rpm")
        value = float(match.group(1))
        if match.group(2) in ("rpm", "/m"):
            value /= 60.0
    if value <= 0 or value > 10_000_000:
        raise BenchError(f"impossible rate {text!r}: must be above 0 and at most 10M requests/s")
    return value


@dataclass(frozen=True, kw_only=True)
class Stage:
    """One stage of a run: ``duration`` seconds from ``start`` to ``end`` (requests/s or users).

    ``kind`` is ``"rate"`` (open model) or ``"users"`` (closed model); a stage whose ``start`` equals
    its ``end`` holds steady, otherwise it ramps linearly.
    """

    duration: float
    start: float
    end: float
    kind: str


_STAGE = re.compile(
    r"^\s*(?P<dur>[^:]+):\s*(?:(?P<a>\d+(?:\.\d+)?)\s*(?:-|->|\.\.)\s*)?(?P<b>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>rps|/s|vu|users|c)\s*$"
)


def parse_stage(text: str) -> Stage:
    """``"30s:100rps"`` (hold), ``"1m:100-500rps"`` (ramp), ``"20s:50vu"`` (closed model).

    >>> parse_stage("1m:100-500rps")
    Stage(duration=60.0, start=100.0, end=500.0, kind='rate')
    """
    match = _STAGE.match(text)
    if match is None:
        raise BenchError(
            f"bad stage {text!r}: expected DURATION:RATE like 30s:100rps, 1m:100-500rps or 20s:50vu"
        )
    try:
        duration = parse_duration(match.group("dur"))
    except BenchError:
        raise BenchError(f"bad stage {text!r}: {match.group('dur')!r} is not a duration") from None
    end = float(match.group("b"))
    start = float(match.group("a")) if match.group("a") is not None else end
    kind = "rate" if match.group("unit") in ("rps", "/s") else "users"
    if duration <= 0:
        raise BenchError(f"bad stage {text!r}: the duration must be above 0")
    if kind == "users" and (start != int(start) or end != int(end) or max(start, end) < 1):
        raise BenchError(f"bad stage {text!r}: users must be whole numbers, at least 1")
    if kind == "rate" and max(start, end) <= 0:
        raise BenchError(f"bad stage {text!r}: the rate must be above 0")
    return Stage(duration=duration, start=start, end=end, kind=kind)


@dataclass(frozen=True, kw_only=True)
class Threshold:
    """A condition on one metric of a result: ``p99<200ms``, ``error_rate<1%``, ``rps>=1000``.

    ``value`` is in the metric's base unit: milliseconds for latencies, a fraction for rates given in
    percent, plain numbers otherwise.
    """

    text: str
    metric: str
    op: str
    value: float

    def holds(self, actual: float) -> bool:
        ops = {
            "<": actual < self.value,
            "<=": actual <= self.value,
            ">": actual > self.value,
            ">=": actual >= self.value,
        }
        return ops[self.op]


_THRESHOLD = re.compile(
    r"^\s*(?P<metric>[a-z][a-z0-9_.]*)\s*(?P<op><=|>=|<|>)\s*(?P<num>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>us|ms|s|%|rps|/s)?\s*$"
)
_TIME_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_threshold(text: str) -> Threshold:
    """Parse ``METRIC OP VALUE[UNIT]``; times become milliseconds, percentages fractions.

    >>> parse_threshold("p99<200ms").value, parse_threshold("error_rate<1%").value
    (200.0, 0.01)
    """
    match = _THRESHOLD.match(text.lower())
    if match is None:
        raise BenchError(
            f"bad threshold {text!r}: expected METRIC<VALUE like p99<200ms, error_rate<1%, rps>100"
        )
    value = float(match.group("num"))
    unit = match.group("unit")
    if unit in _TIME_TO_MS:
        value *= _TIME_TO_MS[unit]
    elif unit == "%":
        value /= 100.0
    return Threshold(text=text, metric=match.group("metric"), op=match.group("op"), value=value)
