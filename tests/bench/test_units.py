"""Pure parts: text forms (durations, rates, stages, thresholds) and the arrival schedule."""

from __future__ import annotations

import statistics
from itertools import pairwise

import pytest

from gyroscope.bench import (
    Schedule,
    Stage,
    parse_duration,
    parse_rate,
    parse_stage,
    parse_threshold,
)
from gyroscope.errors import BenchError


def test_durations_and_rates() -> None:
    assert parse_duration("1m") == 60.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration(3) == 3.0
    assert parse_rate("500rps") == 500.0
    assert parse_rate("120rpm") == 2.0
    for bad in ("abc", "-1s", "1 parsec"):
        with pytest.raises(BenchError, match="bad duration"):
            parse_duration(bad)
    for impossible in ("0", "0rps", "1e9"):
        with pytest.raises(BenchError):
            parse_rate(impossible)


def test_stages() -> None:
    assert parse_stage("30s:100rps") == Stage(duration=30.0, start=100.0, end=100.0, kind="rate")
    assert parse_stage("1m:100-500rps") == Stage(duration=60.0, start=100.0, end=500.0, kind="rate")
    assert parse_stage("20s:50vu").kind == "users"
    for bad in ("30s", "x:10rps", "10s:0rps", "0s:10rps", "5s:2.5vu"):
        with pytest.raises(BenchError, match="stage"):
            parse_stage(bad)


def test_thresholds() -> None:
    t = parse_threshold("p99<200ms")
    assert (t.metric, t.op, t.value) == ("p99", "<", 200.0)
    assert parse_threshold("p99.9 <= 1s").value == 1000.0
    assert parse_threshold("error_rate<1%").value == pytest.approx(0.01)
    assert parse_threshold("rps>=100").holds(100.0)
    assert not parse_threshold("p50<10ms").holds(10.0)
    with pytest.raises(BenchError, match="bad threshold"):
        parse_threshold("p99 about 200")


def test_constant_schedule_is_even_and_bounded() -> None:
    s = Schedule([Stage(duration=2.0, start=100.0, end=100.0, kind="rate")])
    times = list(iter(s.next, None))
    assert len(times) == 200
    gaps = {round(b - a, 9) for a, b in pairwise(times)}
    assert gaps == {0.01}


def test_split_across_workers_interleaves_without_bursts() -> None:
    stages = [Stage(duration=1.0, start=100.0, end=100.0, kind="rate")]
    merged = sorted(
        t for i in range(4) for t in iter(Schedule(stages, workers=4, index=i).next, None)
    )
    assert len(merged) == 100
    gaps = [b - a for a, b in pairwise(merged)]
    assert min(gaps) == pytest.approx(0.01) and max(gaps) == pytest.approx(0.01)


def test_poisson_schedule_has_the_mean_rate_and_exponential_gaps() -> None:
    s = Schedule([Stage(duration=100.0, start=50.0, end=50.0, kind="rate")], poisson=True, seed=3)
    times = list(iter(s.next, None))
    assert 4700 < len(times) < 5300
    gaps = [b - a for a, b in pairwise(times)]
    # Exponential: the standard deviation equals the mean (an even schedule would have ~0).
    assert statistics.stdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.1)


def test_ramp_schedule_follows_the_ramp() -> None:
    s = Schedule([Stage(duration=10.0, start=0.0, end=100.0, kind="rate")])
    times = list(iter(s.next, None))
    assert len(times) == pytest.approx(500, rel=0.05)  # the area under the ramp
    first_half = sum(1 for t in times if t < 5.0)
    assert first_half == pytest.approx(125, rel=0.1)
