"""Folding the hot path's buffers into histograms gives exactly what recording each value would."""

from __future__ import annotations

import time
from array import array

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from gyroscope.bench._recorder import Recorder, new_hist, record_all

_HIGH = 3_600_000_000


def one_by_one(values: list[int], figures: int) -> HdrHistogram:
    hist = new_hist(figures)
    for v in values:
        hist.record_value(v)
    return hist


def same(a: HdrHistogram, b: HdrHistogram) -> None:
    assert list(a.counts) == list(b.counts)
    assert a.get_total_count() == b.get_total_count()
    assert (a.get_min_value(), a.get_max_value()) == (b.get_min_value(), b.get_max_value())
    for p in (0.0, 50.0, 90.0, 99.0, 99.9, 100.0):
        assert a.get_value_at_percentile(p) == b.get_value_at_percentile(p)
    assert a.encode() == b.encode()


# Every bucket edge: exact values below 2048, then powers of two and their neighbours up to the
# top of the range (one hour in microseconds).
EDGES = sorted(
    {1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 4097, _HIGH - 1, _HIGH}
    | {2**k + d for k in range(11, 32) for d in (-1, 0, 1)}
)


@pytest.mark.parametrize("figures", [2, 3])
def test_bucket_edges_land_where_record_value_puts_them(figures: int) -> None:
    hist = new_hist(figures)
    record_all(hist, np.array(EDGES, dtype=np.int64))
    same(hist, one_by_one(EDGES, figures))


@pytest.mark.parametrize("figures", [2, 3])
def test_random_latencies_and_repeated_folds(figures: int) -> None:
    rng = np.random.default_rng(7)
    parts = [
        rng.integers(1, 3000, 5000),
        (rng.lognormal(8, 2, 5000)).astype(np.int64).clip(1, _HIGH),
        np.full(100, 123_456),
    ]
    hist = new_hist(figures)
    for part in parts:  # several folds add up, as the recorder's once-a-second folds do
        record_all(hist, part.astype(np.int64))
    same(hist, one_by_one([int(v) for p in parts for v in p], figures))


def test_empty_fold_changes_nothing() -> None:
    hist = new_hist()
    record_all(hist, np.array([], dtype=np.int64))
    same(hist, new_hist())


def test_recorder_tick_folds_and_clips_out_of_range_values() -> None:
    rec = Recorder()
    rec.start(time.monotonic())
    values = [0, -5, 1, 1500, 2049, 10**12]  # below 1 us counts as 1 us, beyond an hour as an hour
    rec.latency.extend(values)
    rec.buffers["itl"].extend([7, 7, 8])
    interval = rec.tick(time.monotonic())
    assert len(rec.latency) == 0 and len(rec.buffers["itl"]) == 0
    clipped = [1, 1, 1, 1500, 2049, _HIGH]
    same(rec.data.hists["latency"], one_by_one(clipped, 3))
    same(interval.hist, one_by_one(clipped, 2))
    same(rec.data.hists["itl"], one_by_one([7, 7, 8], 3))


def test_buffers_are_folded_in_place() -> None:
    # The LLM decoder keeps a reference to the ITL buffer; a fold must empty it, not replace it.
    rec = Recorder()
    itl = rec.buffers["itl"]
    itl.extend(array("q", [5, 6]))
    rec.tick(time.monotonic())
    assert rec.buffers["itl"] is itl and len(itl) == 0
