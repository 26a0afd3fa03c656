"""Crash safety of the store: kill -9 a writer, reopen, find every sample it acknowledged; a torn
or corrupt head-log tail is cut back to the last valid record with a warning, never a crash."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gyroscope.monitor import TSDB
from gyroscope.monitor._scrape import TargetState, ingest_text
from gyroscope.monitor._wal import MAGIC

SERIES = 12  # half appended one by one, half through the scrape hot path (ingest_text)

WRITER = """
import sys
from pathlib import Path
from gyroscope.monitor import TSDB
from gyroscope.monitor._scrape import TargetState, ingest_text

db = TSDB(Path(sys.argv[1]), chunk_samples=50, wal_checkpoint_bytes=16384)
state, extra = TargetState(), (("job", "scraped"),)
i = 0
while True:
    t = 1_000_000 + i * 1000
    for s in range(6):
        db.append((("__name__", "direct"), ("s", str(s))), t, float(i * 10 + s))
    page = "\\n".join(f'scraped{{s="{s}"}} {i * 10 + s}' for s in range(6))
    ingest_text(page, db, state, extra, t)
    db.commit()
    print(i, flush=True)  # acknowledged: commit() returned
    i += 1
"""


def _crash_writer(path: Path, acks: int) -> int:
    """Run the writer until it acknowledged ``acks`` commits, kill -9 it; the last ack seen."""
    last = -1
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            for line in proc.stdout:  # bounded: we stop reading at `acks`, then kill it
                last = int(line)
                if last >= acks:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        errors = proc.stderr.read()
    assert last >= acks, errors or "the writer died"
    return last


@pytest.mark.parametrize("acks", [173, 611])
def test_every_acknowledged_sample_survives_kill_9(tmp_path: Path, acks: int) -> None:
    path = tmp_path / "t.sqlite"
    last = _crash_writer(path, acks)
    db = TSDB(path, chunk_samples=50)
    try:
        stats = db.stats()
        # the crash left samples in heads that only the log had (chunks hold multiples of 50)
        assert stats["wal_replayed"] > 0
        for name in ("direct", "scraped"):
            found = db.select([("__name__", "=", name)], 0, 10**12)
            assert len(found) == 6
            for series in found:
                s = int(dict(series.labels)["s"])
                n = len(series.ts)
                assert n >= last + 1, f"{name} s={s}: {n} samples, {last + 1} acknowledged"
                assert (series.ts == 1_000_000 + np.arange(n) * 1000).all()
                assert (series.values == np.arange(n) * 10.0 + s).all()
        # the store keeps working after the replay: append, commit, clean reopen
        t = int(db.select([("__name__", "=", "direct")], 0, 10**12)[0].ts[-1]) + 1000
        assert db.append((("__name__", "direct"), ("s", "0")), t, -1.0)
        db.commit()
    finally:
        db.close()
    db = TSDB(path, chunk_samples=50)
    assert db.select([("__name__", "=", "direct"), ("s", "=", "0")], 0, 10**12)[0].values[-1] == -1
    db.close()
    assert (tmp_path / "t.headlog").read_bytes() == MAGIC  # a clean stop leaves an empty log


def _abandon(db: TSDB) -> None:
    """What a crash leaves: no close(), the files as they are."""
    assert db._wal is not None
    db._wal.close()
    db._db.close()


def _written(tmp_path: Path, commits: int) -> tuple[Path, list[int]]:
    path = tmp_path / "t.sqlite"
    db = TSDB(path, chunk_samples=1000)
    sizes = []
    for i in range(commits):
        db.append((("__name__", "m"),), 1000 * (i + 1), float(i))
        db.commit()
        sizes.append((tmp_path / "t.headlog").stat().st_size)
    _abandon(db)
    return path, sizes


def _values(path: Path) -> list[float]:
    db = TSDB(path, chunk_samples=1000)
    try:
        found = db.select([("__name__", "=", "m")], 0, 10**12)
        return found[0].values.tolist() if found else []
    finally:
        db.close()


@pytest.mark.parametrize("damage", ["torn", "bit flip", "garbage", "huge length"])
def test_corrupt_tail_is_cut_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    path, sizes = _written(tmp_path, 5)
    log_path = tmp_path / "t.headlog"
    data = bytearray(log_path.read_bytes())
    if damage == "torn":  # the last write only half reached the file
        data = data[: sizes[3] + (sizes[4] - sizes[3]) // 2]
    elif damage == "bit flip":
        data[-3] ^= 0x40
    elif damage == "garbage":
        data += os.urandom(37)
    else:  # a header claiming a 4 GiB record
        data += b"\xff\xff\xff\xff\x00\x00\x00\x00"
    log_path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="gyroscope.monitor._wal"):
        values = _values(path)
    assert "torn or corrupt record" in caplog.text
    keep = 5 if damage in ("garbage", "huge length") else 4
    assert values == [float(i) for i in range(keep)]
    # after the cut, new records follow valid ones and replay
    db = TSDB(path, chunk_samples=1000)
    db.append((("__name__", "m"),), 10**9, 99.0)
    db.commit()
    _abandon(db)
    assert _values(path)[-1] == 99.0


def test_not_a_head_log_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, _ = _written(tmp_path, 3)
    (tmp_path / "t.headlog").write_bytes(b"this is not a head log at all")
    with caplog.at_level(logging.ERROR, logger="gyroscope.monitor._wal"):
        assert _values(path) == []  # the samples were only in the log
    assert "bad magic" in caplog.text
    assert (tmp_path / "t.headlog.corrupt").read_bytes().startswith(b"this is not")


def test_log_stays_bounded_and_checkpoints_replay(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    db = TSDB(path, chunk_samples=50, wal_checkpoint_bytes=8192)
    largest = 0
    for i in range(1500):
        for s in range(10):
            db.append((("__name__", "m"), ("s", str(s))), 1000 * (i + 1), float(i))
        db.commit()
        largest = max(largest, (tmp_path / "t.headlog").stat().st_size)
    # heads hold <= 10 x 50 samples x 24 bytes = 12 KB; rewrites keep the log near twice that
    assert largest < 40_000
    _abandon(db)
    db = TSDB(path, chunk_samples=50)
    for series in db.select([("__name__", "=", "m")], 0, 10**12):
        assert series.values.tolist() == [float(i) for i in range(1500)]
    db.close()


def test_a_rolled_back_scrape_is_not_logged(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    db = TSDB(path)
    state = TargetState()
    ingest_text("a 1\nb 2", db, state, (("job", "j"),), 1000)
    db.commit()
    with pytest.raises(Exception, match="not the Prometheus text format"):
        ingest_text("a 5\nb 6\nnonsense here now", db, state, (("job", "j"),), 2000)
    db.commit()
    _abandon(db)
    db = TSDB(path)
    assert [s.values.tolist() for s in db.select([("job", "=", "j")], 0, 10**6)] == [[1.0], [2.0]]
    db.close()


def test_a_full_disk_is_logged_and_the_samples_are_logged_again_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The head log's descriptor is pointed at /dev/full: write() fails with ENOSPC."""
    path = tmp_path / "t.sqlite"
    db = TSDB(path, chunk_samples=1000)
    assert db._wal is not None
    wal_fd = db._wal._fd
    saved = os.dup(wal_fd)
    full = os.open("/dev/full", os.O_WRONLY)
    series = (("__name__", "m"),)
    try:
        db.append(series, 1000, 1.0)
        db.commit()
        os.dup2(full, wal_fd)
        with caplog.at_level(logging.ERROR, logger="gyroscope.monitor._tsdb"):
            for i in range(2, 5):
                assert db.append(series, i * 1000, float(i))
                db.commit()  # no exception: the store keeps working
        assert "cannot write the head log" in caplog.text
        assert db.stats()["wal_errors"] == 3
        os.dup2(saved, wal_fd)  # space again
        db.append(series, 5000, 5.0)
        db.commit()
    finally:
        os.close(full)
        os.close(saved)
    _abandon(db)
    assert _values(path) == [1.0, 2.0, 3.0, 4.0, 5.0]
