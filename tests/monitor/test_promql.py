"""PromQL over the store, against values computed by hand from Prometheus's definitions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.monitor import STALE_NAN, TSDB, Engine, PromQLError, parse_text
from gyroscope.monitor._promql_funcs import extrapolated_rate
from gyroscope.monitor._promql_steps import windowed_rate

STEP_MS = 15_000


def load(db: TSDB, series: dict[str, list[float]]) -> None:
    """Each series gets one sample per 15 s from t=0 (values in order)."""
    for text, values in series.items():
        ((labels, _, _),) = parse_text(f"{text} 0\n")
        for i, value in enumerate(values):
            db.append(labels, i * STEP_MS, value)
    db.commit()


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    db = TSDB(tmp_path / "t.sqlite")
    load(
        db,
        {
            'req_total{job="api",instance="a"}': [10.0 * i for i in range(11)],
            'req_total{job="api",instance="b"}': [0, 10, 20, 5, 15, 25, 35, 45, 55, 65, 75],
            'req_total{job="db",instance="c"}': [1.0] * 11,
            'limit{job="api"}': [100.0] * 11,
            'limit{job="db"}': [10.0] * 11,
            'lat_bucket{job="api",le="0.1"}': [10.0] * 11,
            'lat_bucket{job="api",le="0.5"}': [30.0] * 11,
            'lat_bucket{job="api",le="1"}': [40.0] * 11,
            'lat_bucket{job="api",le="+Inf"}': [40.0] * 11,
            'gauge{job="api"}': [float(i) for i in range(11)],
            'gone{job="api"}': [1.0] * 10 + [STALE_NAN],
        },
    )
    return Engine(db)


def vec(engine: Engine, query: str, t: float = 150.0) -> dict[str, float]:
    value = engine.instant(query, t)
    assert isinstance(value, list)
    return {",".join(f"{k}={v}" for k, v in lb): round(v, 6) for lb, v in value}  # type: ignore[misc]


def test_rate_increase_irate(engine: Engine) -> None:
    # window (90, 150]: samples 70, 80, 90, 100 at 105..150 s; extrapolated over the whole 60 s
    assert vec(engine, 'rate(req_total{instance="a"}[1m])') == {"instance=a,job=api": 0.666667}
    assert vec(engine, 'increase(req_total{instance="a"}[1m])') == {"instance=a,job=api": 40.0}
    assert vec(engine, 'irate(req_total{instance="a"}[1m])') == {"instance=a,job=api": 0.666667}


def test_counter_reset_is_corrected(engine: Engine) -> None:
    # window (0, 60]: 10, 20, 5, 15 -> 15 - 10 + 20 (reset) = 25, extrapolated 45 s -> 60 s
    assert vec(engine, 'increase(req_total{instance="b"}[1m])', 60.0) == {
        "instance=b,job=api": 33.333333
    }
    assert vec(engine, 'resets(req_total{instance="b"}[1m])', 60.0) == {"instance=b,job=api": 1.0}


def test_over_time_functions(engine: Engine) -> None:
    assert vec(engine, "avg_over_time(gauge[1m])") == {"job=api": 8.5}
    assert vec(engine, "max_over_time(gauge[1m])") == {"job=api": 10.0}
    assert vec(engine, "count_over_time(gauge[1m])") == {"job=api": 4.0}
    assert vec(engine, "quantile_over_time(0.5, gauge[1m])") == {"job=api": 8.5}
    assert vec(engine, "last_over_time(gauge[1m])") == {"__name__=gauge,job=api": 10.0}


def test_predict_linear_and_deriv(engine: Engine) -> None:
    assert vec(engine, "deriv(gauge[1m])") == {"job=api": round(1 / 15, 6)}
    assert vec(engine, "predict_linear(gauge[1m], 60)") == {"job=api": 14.0}


def test_aggregations(engine: Engine) -> None:
    assert vec(engine, "sum by (job) (req_total)") == {"job=api": 175.0, "job=db": 1.0}
    assert vec(engine, "avg without (instance) (req_total)") == {"job=api": 87.5, "job=db": 1.0}
    assert vec(engine, "count(req_total)") == {"": 3.0}
    assert vec(engine, "max by (job) (req_total)") == {"job=api": 100.0, "job=db": 1.0}
    assert list(vec(engine, "topk(1, req_total)")) == ["__name__=req_total,instance=a,job=api"]


def test_vector_matching(engine: Engine) -> None:
    got = vec(engine, "req_total / on (job) group_left limit")
    assert got == {"instance=a,job=api": 1.0, "instance=b,job=api": 0.75, "instance=c,job=db": 0.1}
    got = vec(engine, "sum by (job) (req_total) / ignoring () limit")
    assert got == {"job=api": 1.75, "job=db": 0.1}
    with pytest.raises(PromQLError, match="many-to-many"):
        engine.instant("limit / on (job) req_total", 150.0)


def test_comparisons_filter_or_return_bool(engine: Engine) -> None:
    assert vec(engine, "req_total > 50") == {
        "__name__=req_total,instance=a,job=api": 100.0,
        "__name__=req_total,instance=b,job=api": 75.0,
    }
    assert vec(engine, 'req_total{job="db"} > bool 50') == {"instance=c,job=db": 0.0}
    assert vec(engine, "limit > on (job) group_right sum by (job) (req_total)") == {"job=db": 10.0}


def test_set_operators(engine: Engine) -> None:
    assert set(vec(engine, 'req_total and on (job) limit{job="db"}')) == {
        "__name__=req_total,instance=c,job=db"
    }
    assert len(vec(engine, 'req_total unless on (job) limit{job="db"}')) == 2
    assert len(vec(engine, "limit or req_total")) == 5


def test_histogram_quantile(engine: Engine) -> None:
    # rank 20 falls in (0.1, 0.5] holding 20 observations, 10 of them below the rank
    assert vec(engine, "histogram_quantile(0.5, lat_bucket)") == {"job=api": 0.3}
    # rank 39.6 falls in (0.5, 1] holding 10 observations, 9.6 of them below the rank
    assert vec(engine, "histogram_quantile(0.99, lat_bucket)") == {"job=api": 0.98}


def test_absent(engine: Engine) -> None:
    assert vec(engine, 'absent(nothing{job="x", env=~"p.*"})') == {"job=x": 1.0}
    assert vec(engine, "absent(req_total)") == {}


def test_staleness_and_lookback(engine: Engine) -> None:
    assert vec(engine, "gone", 140.0) == {"__name__=gone,job=api": 1.0}
    assert vec(engine, "gone", 150.0) == {}
    assert vec(engine, "gauge", 150.0 + 299.0) == {"__name__=gauge,job=api": 10.0}
    assert vec(engine, "gauge", 150.0 + 301.0) == {}


def test_scalars_and_arithmetic(engine: Engine) -> None:
    assert engine.instant("1 + 2 * 3", 0.0) == 7.0
    assert vec(engine, "-gauge * 2") == {"job=api": -20.0}
    assert vec(engine, "gauge / 0") == {"job=api": math.inf}
    assert engine.instant("time()", 150.0) == 150.0


def test_range_query_steps(engine: Engine) -> None:
    result = engine.range_query("gauge * 2", 0.0, 150.0, 15.0)
    assert [v for _, v in result[(("job", "api"),)]] == [2.0 * i for i in range(11)]


@pytest.mark.parametrize(
    ("query", "reason", "position"),
    [
        ("sum(rate(x[5m])", "unclosed left parenthesis", 3),
        ("rate(x)", "expected type matrix", 6),
        ("x{a=}", "near '}'", 4),
        ("up == ", "ends too early", 6),
        ("sum(x) by", "", 9),
        ("", "empty query", 0),
    ],
)
def test_bad_queries_say_why_and_where(
    engine: Engine, query: str, reason: str, position: int | None
) -> None:
    with pytest.raises(PromQLError) as info:
        engine.instant(query, 0.0)
    assert reason in info.value.reason
    assert info.value.position == position


def test_unsupported_function_is_named(engine: Engine) -> None:
    with pytest.raises(PromQLError, match=r"holt_winters|not supported"):
        engine.instant("holt_winters(gauge[1m], 0.5, 0.5)", 150.0)


def test_label_replace_and_join(engine: Engine) -> None:
    got = vec(engine, 'label_replace(limit{job="api"}, "svc", "$1-x", "job", "(.*)")')
    assert got == {"__name__=limit,job=api,svc=api-x": 100.0}
    got = vec(engine, 'label_join(limit{job="db"}, "both", "/", "job", "__name__")')
    assert got == {"__name__=limit,both=db/limit,job=db": 10.0}


@pytest.mark.parametrize(
    "query",
    [
        "rate(req_total[1m])",
        "increase(req_total[45s] offset 10s)",
        "delta(gauge[1m])",
        "sum(rate(req_total[2m])) / sum(rate(req_total[1m]))",
        "req_total offset 30s",
        "max_over_time(gauge[45s])",
        "gone",
        "sum by (job) (irate(req_total[30s] offset 15s))",
        "max_over_time(rate(req_total[30s])[1m:15s])",
    ],
)
def test_range_query_equals_instant_queries(engine: Engine, query: str) -> None:
    ranged = engine.range_query(query, 60.0, 150.0, 7.5)
    for i in range(13):
        t = 60.0 + i * 7.5
        instant = engine.instant(query, t)
        assert isinstance(instant, list)
        want = {lb: v for lb, v in instant}  # type: ignore[misc]
        got = {lb: dict(points)[t] for lb, points in ranged.items() if t in dict(points)}
        assert got.keys() == want.keys(), t
        for lb, value in want.items():  # all steps at once may round the last bit differently
            assert got[lb] == pytest.approx(value, rel=1e-12), (t, lb)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.integers(1, 30_000), min_size=0, max_size=40),
    values=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=40, max_size=40),
    width=st.integers(1_000, 200_000),
    ends=st.lists(st.integers(0, 800_000), min_size=1, max_size=20),
    kind=st.sampled_from(["rate", "increase", "delta"]),
)
def test_all_steps_at_once_equals_one_window_at_a_time(
    steps: list[int], values: list[float], width: int, ends: list[int], kind: str
) -> None:
    ts = np.cumsum(np.array([0, *steps], dtype=np.int64))
    vs = np.array(values[: len(ts)], dtype=np.float64)
    end_array = np.array(sorted(ends), dtype=np.int64)
    counter, rate = kind != "delta", kind == "rate"
    got, valid = windowed_rate(ts, vs, end_array, width, counter=counter, rate=rate)
    for k, end in enumerate(end_array.tolist()):
        keep = (ts > end - width) & (ts <= end)
        want = extrapolated_rate(ts[keep], vs[keep], end - width, end, counter=counter, rate=rate)
        assert bool(valid[k]) == (want is not None)
        if want is not None:
            assert got[k] == pytest.approx(want, rel=1e-9, abs=1e-9)
