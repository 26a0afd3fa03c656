"""The store against a simple in-memory model (hypothesis state machine, with crashes that keep
exactly the committed samples), plus corruption, retention, the skewed-clock guard and the size of
regular scrapes on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gyroscope.monitor import STALE_NAN, TSDB, decode_chunk, encode_chunk

SERIES = [(("__name__", "m"), ("i", str(i))) for i in range(3)]


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = Path(tempfile.mkdtemp())
        self.db = self._open()
        self.model: dict[int, list[tuple[int, float]]] = {i: [] for i in range(len(SERIES))}
        self.committed = dict.fromkeys(self.model, 0)

    def _open(self) -> TSDB:
        # a tiny checkpoint threshold so head-log rewrites happen between crashes
        return TSDB(self.dir / "t.sqlite", chunk_samples=5, wal_checkpoint_bytes=256)

    @rule(
        i=st.integers(0, len(SERIES) - 1),
        dt=st.integers(-3, 50),
        value=st.one_of(st.floats(allow_nan=False), st.integers(-(2**40), 2**40).map(float)),
    )
    def append(self, i: int, dt: int, value: float) -> None:
        samples = self.model[i]
        t = (samples[-1][0] if samples else 1000) + dt
        ok = self.db.append(SERIES[i], t, value)
        expected = not samples or t > samples[-1][0]
        assert ok == expected
        if ok:
            samples.append((t, value))

    @rule()
    def commit(self) -> None:
        self.db.commit()
        self.committed = {i: len(s) for i, s in self.model.items()}

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = self._open()
        self.committed = {i: len(s) for i, s in self.model.items()}

    @rule()
    def crash(self) -> None:
        """Drop the store without close(): what commit() acknowledged must come back."""
        if self.db._wal is not None:
            self.db._wal.close()
        self.db._db.close()
        self.db = self._open()
        for i, samples in self.model.items():
            del samples[self.committed[i] :]

    @rule(lo=st.integers(900, 3000), width=st.integers(0, 3000))
    def select_range(self, lo: int, width: int) -> None:
        got = {
            dict(d.labels)["i"]: list(zip(d.ts.tolist(), d.values.tolist(), strict=True))
            for d in self.db.select([("__name__", "=", "m")], lo, lo + width)
        }
        for i, samples in self.model.items():
            want = [(t, v) for t, v in samples if lo <= t <= lo + width]
            assert got.get(str(i), []) == want

    @invariant()
    def everything_readable(self) -> None:
        for i, samples in self.model.items():
            data = self.db.read(self.db.series_id(SERIES[i]), 0, 10**12)
            assert list(zip(data.ts.tolist(), data.values.tolist(), strict=True)) == samples

    def teardown(self) -> None:
        self.db.close()


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_chunk_round_trip_keeps_stale_markers_and_nan_bits() -> None:
    ts = np.arange(10, dtype=np.int64) * 1000
    values = np.array([1.5, STALE_NAN, np.nan, -0.0, np.inf, 2**60, 3, 4, 5, 6], dtype=np.float64)
    t2, v2 = decode_chunk(encode_chunk(ts, values))
    assert (t2 == ts).all()
    assert (v2.view(np.uint64) == values.view(np.uint64)).all()


def test_regular_scrapes_take_under_two_bytes_per_sample(tmp_path: Path) -> None:
    db = TSDB(tmp_path / "t.sqlite")
    rng = np.random.default_rng(1)
    counters = np.cumsum(rng.integers(0, 20, size=(50, 2400)), axis=1)
    for step in range(2400):
        for s in range(50):
            db.append(
                (("__name__", "req_total"), ("s", str(s))),
                1_700_000_000_000 + step * 1000,
                float(counters[s, step]),
            )
        if step % 240 == 239:
            db.commit()
    db.flush_all()
    assert db.stats()["chunk_bytes"] / (50 * 2400) <= 2.0


def test_corrupt_chunk_is_skipped_and_counted(tmp_path: Path) -> None:
    db = TSDB(tmp_path / "t.sqlite", chunk_samples=4)
    labels = (("__name__", "x"),)
    for i in range(8):
        db.append(labels, i * 1000, float(i))
        db.commit()
    db.close()
    raw = sqlite3.connect(tmp_path / "t.sqlite")
    blob = bytearray(raw.execute("SELECT data FROM chunks WHERE min_t = 0").fetchone()[0])
    blob[-3] ^= 0xFF
    raw.execute("UPDATE chunks SET data = ? WHERE min_t = 0", (bytes(blob),))
    raw.commit()
    raw.close()
    db = TSDB(tmp_path / "t.sqlite", chunk_samples=4)
    data = db.read(db.series_id(labels), 0, 10_000)
    assert data.ts.tolist() == [4000, 5000, 6000, 7000]
    assert db.corrupt_chunks == 1


def test_retention_deletes_old_chunks(tmp_path: Path) -> None:
    db = TSDB(tmp_path / "t.sqlite", chunk_samples=2, retention_s=10)
    labels = (("__name__", "x"),)
    for i in range(6):
        db.append(labels, i * 10_000, float(i))
        db.commit()
    assert db.enforce_retention(now_ms=60_000) == 2
    assert db.read(db.series_id(labels), 0, 10**9).ts.tolist() == [40_000, 50_000]


def test_future_samples_from_a_skewed_clock_are_rejected(tmp_path: Path) -> None:
    db = TSDB(tmp_path / "t.sqlite", max_future_s=600)
    labels = (("__name__", "x"),)
    assert not db.append(labels, 2_000_000, 1.0, now_ms=1_000_000)
    assert db.append(labels, 1_000_500, 1.0, now_ms=1_000_000)
    assert db.stats()["rejected_future"] == 1


@pytest.mark.parametrize("op", ["=~", "!~"])
def test_regex_matchers_are_anchored(tmp_path: Path, op: str) -> None:
    db = TSDB(tmp_path / "t.sqlite")
    for job in ("api", "api-canary"):
        db.append((("__name__", "up"), ("job", job)), 1000, 1.0)
    jobs = sorted(dict(d.labels)["job"] for d in db.select([("job", op, "api")], 0, 2000))
    assert jobs == (["api"] if op == "=~" else ["api-canary"])


def test_downsampling_keeps_last_sample_per_bucket_and_rates(tmp_path: Path) -> None:
    db = TSDB(tmp_path / "t.sqlite", chunk_samples=120)
    labels = (("__name__", "c_total"),)
    for i in range(3600):  # one hour at 1 s, a counter rising 2/s
        db.append(labels, i * 1000, 2.0 * i)
        db.commit()
    db.flush_all()
    from gyroscope.monitor import Engine

    before = Engine(db).instant("rate(c_total[30m])", 3000.0)
    removed = db.downsample(cutoff_ms=3_000_000, resolution_ms=60_000)
    assert removed == 3000 - 50  # 25 chunks end before the cutoff; one sample per minute stays
    data = db.read(db.series_id(labels), 0, 10**9)
    old = data.ts[data.ts < 3_000_000]
    assert old.tolist() == [59_000 + 60_000 * k for k in range(50)]
    assert (data.ts[data.ts >= 3_000_000] == np.arange(3_000_000, 3_600_000, 1000)).all()
    after = Engine(db).instant("rate(c_total[30m])", 3000.0)
    assert [round(v, 6) for _, v in before] == [round(v, 6) for _, v in after] == [2.0]  # type: ignore[misc]
    assert db.downsample(cutoff_ms=3_000_000, resolution_ms=60_000) == 0  # incremental: nothing new


def test_downsampling_keeps_the_last_sample_per_bucket(tmp_path: Path) -> None:
    db = TSDB(tmp_path / "t.sqlite", chunk_samples=120)
    counter = (("__name__", "c_total"),)
    for i in range(3600):  # one hour at 1 s, counter +2 per second
        db.append(counter, i * 1000, 2.0 * i)
        db.commit()
    db.flush_all()
    cutoff, resolution = 1_800_000, 300_000
    removed = db.downsample(cutoff, resolution)
    data = db.select([("__name__", "=", "c_total")], 0, 10**9)[0]
    old = data.ts[data.ts < cutoff - 120_000]  # chunks wholly before the cutoff
    assert old.tolist() == list(range(299_000, 1_500_000, 300_000))[: len(old)]
    assert len(old) >= 4 and removed > 1500
    assert (data.values == data.ts / 500.0).all()  # each kept sample kept its own value
    assert data.ts[-1] == 3_599_000 and (np.diff(data.ts[data.ts >= cutoff]) == 1000).all()
    assert db.downsample(cutoff, resolution) == 0  # the watermark: nothing twice
    db.close()
    reopened = TSDB(tmp_path / "t.sqlite")
    again = reopened.select([("__name__", "=", "c_total")], 0, 10**9)[0]
    assert again.ts.tolist() == data.ts.tolist()
    reopened.close()
