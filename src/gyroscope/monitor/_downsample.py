"""Downsampling of old chunks: one sample (the last) per resolution bucket.

>>> import sqlite3
>>> db = sqlite3.connect(":memory:", isolation_level=None)
>>> _ = db.executescript(
...     "CREATE TABLE chunks (series_id, min_t, max_t, data, PRIMARY KEY (series_id, min_t));"
...     "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER)")
>>> ts, vs = np.arange(0, 60_000, 1000, dtype=np.int64), np.arange(60, dtype=np.float64)
>>> _ = db.execute("INSERT INTO chunks VALUES (1, 0, 59000, ?)", (encode_chunk(ts, vs),))
>>> downsample_chunks(db, 120_000, 15_000)   # 60 samples -> 4
56
"""

from __future__ import annotations

import sqlite3

import numpy as np
import zstandard

from gyroscope.monitor._chunks import decode_chunk, encode_chunk

__all__ = ["downsample_chunks"]


def downsample_chunks(db: sqlite3.Connection, cutoff_ms: int, resolution_ms: int) -> int:
    """Keep one sample (the last) per ``resolution_ms`` in chunks that end before ``cutoff_ms``.

    Runs are incremental: a watermark remembers where the previous run stopped. The last sample
    of each bucket keeps counters exact for rate() over windows of several buckets and keeps
    staleness markers. Returns the number of samples removed.
    """
    row = db.execute("SELECT value FROM meta WHERE key = 'downsampled_until'").fetchone()
    mark = int(row[0]) if row else 0
    if cutoff_ms <= mark:
        return 0
    removed = 0
    sids = [
        s
        for (s,) in db.execute(
            "SELECT DISTINCT series_id FROM chunks WHERE max_t >= ? AND max_t < ?",
            (mark, cutoff_ms),
        )
    ]
    for sid in sids:
        removed += _downsample_series(db, sid, mark, cutoff_ms, resolution_ms)
    with db:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('downsampled_until', ?)", (cutoff_ms,))
    return removed


def _downsample_series(
    db: sqlite3.Connection, sid: int, mark: int, cutoff: int, resolution: int
) -> int:
    rows = db.execute(
        "SELECT min_t, data FROM chunks WHERE series_id = ? AND max_t >= ? AND max_t < ? ORDER BY min_t",
        (sid, mark, cutoff),
    ).fetchall()
    parts = []
    for _, blob in rows:
        try:
            parts.append(decode_chunk(blob))
        except (zstandard.ZstdError, ValueError):
            return 0  # leave a series with a corrupt chunk as it is; reads report it
    ts = np.concatenate([p[0] for p in parts])
    vs = np.concatenate([p[1] for p in parts])
    buckets = ts // resolution
    last = np.flatnonzero(np.append(buckets[1:] != buckets[:-1], True))
    kept_t, kept_v = ts[last], vs[last]
    db.execute("BEGIN")
    db.executemany(
        "DELETE FROM chunks WHERE series_id = ? AND min_t = ?", [(sid, m) for m, _ in rows]
    )
    db.execute(
        "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?)",
        (sid, int(kept_t[0]), int(kept_t[-1]), encode_chunk(kept_t, kept_v)),
    )
    db.execute("COMMIT")
    return len(ts) - len(kept_t)
