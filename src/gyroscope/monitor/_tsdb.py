"""The embedded time-series store: an in-memory head per series, compressed chunks in SQLite.

Appends go to the head (two typed arrays per series). When a head holds ``chunk_samples`` samples
it is encoded (``_chunks``) and written, with every other full head, in one transaction. Reads merge
stored chunks (decoded chunks are cached) with the head. ``close()`` writes partial heads, so a clean
stop loses nothing.

Crash safety: ``commit()`` first appends the samples added since the last commit to the head log
(``_wal``, next to the SQLite file), so once ``commit()`` returns they survive a crash of the
process (kill -9, OOM); they are fsynced within ``wal_sync_s`` (power loss). Opening the store
replays the log into the heads. When the log outgrows ``wal_checkpoint_bytes`` (and twice its last
checkpoint) it is rewritten with only the samples not yet in chunks, after SQLite has synced them.

Samples older than a series' newest sample, and samples from more than ``max_future`` ahead of the
store's clock (a pushing client with a skewed clock), are rejected and counted, never stored.

>>> import tempfile, pathlib
>>> db = TSDB(pathlib.Path(tempfile.mkdtemp()) / "tsdb.sqlite")
>>> db.append((("__name__", "up"), ("job", "a")), 1000, 1.0)
True
>>> [(dict(s.labels)["job"], s.values.tolist()) for s in db.select([("__name__", "=", "up")], 0, 2000)]
[('a', [1.0])]
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import zstandard

from gyroscope.errors import MonitorError
from gyroscope.monitor._chunks import decode_chunk, encode_chunk
from gyroscope.monitor._downsample import downsample_chunks
from gyroscope.monitor._exposition import Labels
from gyroscope.monitor._head import NEVER, Head, log_records, snapshot_records
from gyroscope.monitor._wal import HeadLog, Record, SeriesRecord, sample_records, series_record

__all__ = ["NEVER", "TSDB", "Head", "Matcher", "SeriesData", "match_labels"]

log = logging.getLogger(__name__)

Matcher = tuple[str, str, str]  # (label, op, value) with op one of = != =~ !~

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, labels TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS chunks (
    series_id INTEGER NOT NULL, min_t INTEGER NOT NULL, max_t INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (series_id, min_t)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_max_t ON chunks (max_t);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class SeriesData:
    """One series' samples in a time range: timestamps in ms, values (may hold staleness markers)."""

    labels: Labels
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


def _compile(matchers: Sequence[Matcher]) -> list[tuple[str, str, str, re.Pattern[str] | None]]:
    out = []
    for name, op, value in matchers:
        pattern = re.compile(value) if op in ("=~", "!~") else None
        out.append((name, op, value, pattern))
    return out


def match_labels(labels: dict[str, str], matchers: Sequence[Matcher]) -> bool:
    """True when ``labels`` satisfy every matcher (regexes are anchored, as in PromQL)."""
    return _matches(labels, _compile(matchers))


class TSDB:
    """Append samples, select series by matchers, enforce retention. Not thread-safe (one loop)."""

    def __init__(
        self,
        path: Path,
        *,
        chunk_samples: int = 240,
        retention_s: float = 15 * 86400,
        max_future_s: float = 600.0,
        cache_chunks: int = 4096,
        wal: bool = True,
        wal_sync_s: float = 1.0,
        wal_checkpoint_bytes: int = 64 << 20,
    ) -> None:
        self.path = path
        self.chunk_samples = chunk_samples
        self.retention_ms = int(retention_s * 1000)
        self.max_future_ms = int(max_future_s * 1000)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)
        self._ids: dict[Labels, int] = {}
        self._labels: dict[int, Labels] = {}
        self._by_name: dict[str, set[int]] = {}
        self._heads: dict[int, Head] = {}
        self._full: list[int] = []
        self._cache: OrderedDict[
            tuple[int, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
        ]
        self._cache = OrderedDict()
        self._cache_size = cache_chunks
        self.rejected_out_of_order = 0
        self.rejected_future = 0
        self.appended = 0
        self.corrupt_chunks = 0
        self._dirty: list[Head] = []  # heads appended to since the last commit (may repeat)
        self._new_series: list[tuple[int, Labels]] = []
        self._pending: list[bytes] = []  # head log records built by the scrape path
        self._pending_heads: list[Head] = []
        self.wal_checkpoint_bytes = wal_checkpoint_bytes
        self._checkpointed = 0  # size of the log right after its last rewrite
        self.wal_replayed = 0
        self.wal_errors = 0
        self._load_series()
        self._wal: HeadLog | None = None
        if wal:
            self._wal = HeadLog(path.with_suffix(".headlog"), sync_interval_s=wal_sync_s)
            self._replay(self._wal.replay())

    def _load_series(self) -> None:
        for sid, text in self._db.execute("SELECT id, labels FROM series"):
            self._index(sid, tuple(tuple(p) for p in json.loads(text)))
        for sid, max_t in self._db.execute("SELECT series_id, max(max_t) FROM chunks GROUP BY 1"):
            self._heads[sid] = Head(sid, max_t)

    def _index(self, sid: int, labels: Labels) -> None:
        self._ids[labels] = sid
        self._labels[sid] = labels
        self._by_name.setdefault(dict(labels).get("__name__", ""), set()).add(sid)

    def series_id(self, labels: Labels) -> int:
        sid = self._ids.get(labels)
        if sid is None:
            cur = self._db.execute(
                "INSERT INTO series (labels) VALUES (?)",
                (json.dumps(labels, separators=(",", ":")),),
            )
            sid = int(cur.lastrowid or 0)
            self._index(sid, labels)
            self._new_series.append((sid, labels))
        return sid

    # -- writing -------------------------------------------------------------------------------
    def append(self, labels: Labels, t_ms: int, value: float, now_ms: int | None = None) -> bool:
        """Add one sample; False (and counted) when it is out of order or too far in the future."""
        return self.append_id(self.series_id(labels), t_ms, value, now_ms)

    def head(self, sid: int) -> Head:
        head = self._heads.get(sid)
        if head is None:
            head = self._heads[sid] = Head(sid)
        return head

    def mark_full(self, head: Head) -> None:
        """Called when a head reaches ``chunk_samples``; ``commit()`` writes it."""
        self._full.append(head.sid)

    def append_id(self, sid: int, t_ms: int, value: float, now_ms: int | None = None) -> bool:
        head = self.head(sid)
        if t_ms <= head.last:
            if t_ms < head.last:
                self.rejected_out_of_order += 1
            return False
        if now_ms is not None and t_ms > now_ms + self.max_future_ms:
            self.rejected_future += 1
            return False
        head.ts.append(t_ms)
        head.values.append(value)
        head.last = t_ms
        self.appended += 1
        self._dirty.append(head)
        if len(head.ts) == self.chunk_samples:
            self._full.append(sid)
        return True

    def touch(self, heads: list[Head]) -> None:
        """Heads a caller appended to directly (the scrape hot path); ``commit()`` logs them."""
        self._dirty += heads

    def rollback(self, heads: Iterable[Head], t_ms: int) -> None:
        """Take back samples appended at ``t_ms`` to ``heads`` (a scrape that turned out bad)."""
        for head in heads:
            if head.ts and head.ts[-1] == t_ms:
                head.ts.pop()
                head.values.pop()
                head.last = head.ts[-1] if head.ts else head.written
                head.logged = min(head.logged, len(head.ts))
                self.appended -= 1

    def append_many(
        self, samples: Iterable[tuple[Labels, int, float]], now_ms: int | None = None
    ) -> int:
        stored = 0
        for labels, t_ms, value in samples:
            stored += self.append(labels, t_ms, value, now_ms)
        return stored

    def commit(self) -> None:
        """Log what was appended (durable on return), then write every full head as a chunk."""
        self._log()
        if self._full:
            full, self._full = self._full, []
            self._write(full)
        wal = self._wal
        if wal is not None and wal.size > max(self.wal_checkpoint_bytes, 2 * self._checkpointed):
            self.checkpoint()

    def flush_all(self) -> None:
        """Write every non-empty head, full or not (on stop)."""
        self._log()
        self._full = []
        self._write([sid for sid, head in self._heads.items() if head.ts])

    def sync(self) -> None:
        """fsync the head log now (``commit()`` does it at most every ``wal_sync_s``)."""
        if self._wal is not None:
            self._wal.sync()

    def _write(self, sids: Sequence[int]) -> None:
        rows = []
        written: list[Head] = []
        for sid in dict.fromkeys(sids):
            head = self._heads.get(sid)
            if head is None or not head.ts:
                continue
            ts = np.frombuffer(head.ts, dtype=np.int64)
            vs = np.frombuffer(head.values, dtype=np.float64)
            rows.append((sid, int(ts[0]), int(ts[-1]), encode_chunk(ts, vs)))
            written.append(head)
        if not rows:
            return
        try:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            # the heads keep their samples: a later commit tries again
            raise MonitorError(f"{self.path}: cannot write chunks: {exc}") from exc
        for head in written:  # only now: a failed write must not lose the samples
            head.written = head.ts[-1]
            head.ts = array("q")
            head.values = array("d")
            head.logged = 0

    # -- the head log ------------------------------------------------------------------------------
    def log_scrape(
        self, t_ms: int, sids: array[int], values: array[float], heads: list[Head]
    ) -> None:
        """Samples the scrape hot path appended at ``t_ms`` and already marked logged.

        They are written with the next ``commit()``, before other heads' records (which can only
        hold newer samples of the same series).
        """
        if self._wal is not None and sids:
            ts = array("q", [t_ms]) * len(sids)
            self._pending += sample_records(sids, ts, values)
            self._pending_heads += heads

    def _log(self) -> None:
        dirty, self._dirty = self._dirty, []
        new, self._new_series = self._new_series, []
        pending, self._pending = self._pending, []
        pending_heads, self._pending_heads = self._pending_heads, []
        if self._wal is None or not (dirty or new or pending):
            return
        bodies = [series_record(sid, labels) for sid, labels in new]  # before their samples
        bodies += pending
        bodies += log_records(dirty)
        if not bodies:
            return
        try:
            self._wal.append(*bodies)
        except OSError as exc:  # disk full, I/O error: keep storing, log it all again next time
            self.wal_errors += 1
            if self.wal_errors == 1 or self.wal_errors % 1000 == 0:
                log.error(
                    "%s: cannot write the head log (%d times): %s", self.path, self.wal_errors, exc
                )
            again = dirty + pending_heads
            for head in again:
                head.logged = 0
            self._dirty = again + self._dirty
            self._new_series = new + self._new_series

    def _sync_chunks(self) -> None:
        # WAL mode, synchronous=NORMAL: a checkpoint fsyncs SQLite's own log first, so every
        # chunk (and series row) committed so far survives power loss before ours is shortened.
        self._db.execute("PRAGMA wal_checkpoint(FULL)").fetchall()

    def checkpoint(self) -> None:
        """Rewrite the head log with only the samples not yet in chunks."""
        if self._wal is None:
            return
        self._log()
        self._sync_chunks()
        self._wal.rewrite(snapshot_records(self._heads.values()))
        self._checkpointed = self._wal.size
        log.debug("%s: head log checkpointed to %d bytes", self.path, self._wal.size)

    def _replay(self, records: list[Record]) -> None:
        unknown = 0
        for record in records:
            if isinstance(record, SeriesRecord):
                if record.sid not in self._labels:
                    text = json.dumps(record.labels, separators=(",", ":"))
                    self._db.execute(
                        "INSERT OR IGNORE INTO series (id, labels) VALUES (?, ?)",
                        (record.sid, text),
                    )
                    self._index(record.sid, record.labels)
                continue
            columns = (record.sids.tolist(), record.ts.tolist(), record.values.tolist())
            for sid, t, v in zip(*columns, strict=True):
                if sid not in self._labels:
                    unknown += 1
                    continue
                head = self.head(sid)
                if t > head.last:  # older ones are already in a chunk
                    head.ts.append(t)
                    head.values.append(v)
                    head.last = t
                    self.wal_replayed += 1
        for head in self._heads.values():
            head.logged = len(head.ts)
            if len(head.ts) >= self.chunk_samples:
                self._full.append(head.sid)
        if self.wal_replayed or unknown:
            log.info(
                "%s: replayed %d sample(s) from the head log (%d of unknown series skipped)",
                self.path,
                self.wal_replayed,
                unknown,
            )
        assert self._wal is not None
        self._checkpointed = self._wal.size

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete chunks wholly older than the retention period; returns how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        cur = self._db.execute("DELETE FROM chunks WHERE max_t < ?", (now_ms - self.retention_ms,))
        self._cache.clear()
        return cur.rowcount

    def downsample(self, cutoff_ms: int, resolution_ms: int) -> int:
        """Keep one sample (the last) per ``resolution_ms`` before ``cutoff_ms`` (``_downsample``)."""
        removed = downsample_chunks(self._db, cutoff_ms, resolution_ms)
        self._cache.clear()
        return removed

    def close(self) -> None:
        self.flush_all()
        if self._wal is not None:
            self._sync_chunks()
            self._wal.rewrite([])  # everything is in chunks now
            self._wal.close()
        self._db.close()

    # -- reading -------------------------------------------------------------------------------
    def series_ids(self, matchers: Sequence[Matcher]) -> list[int]:
        """Ids of every series the matchers select (all series when there is no name matcher)."""
        names = [v for n, op, v in matchers if n == "__name__" and op == "="]
        pool: Iterable[int] = self._by_name.get(names[0], set()) if names else self._labels.keys()
        compiled = _compile(matchers)
        return [sid for sid in pool if _matches(dict(self._labels[sid]), compiled)]

    def labels_of(self, sid: int) -> Labels:
        return self._labels[sid]

    def all_labels(self) -> list[Labels]:
        return list(self._labels.values())

    def read(self, sid: int, mint: int, maxt: int) -> SeriesData:
        """Samples of one series with ``mint <= t <= maxt``."""
        parts_t: list[npt.NDArray[np.int64]] = []
        parts_v: list[npt.NDArray[np.float64]] = []
        for chunk_min, blob in self._db.execute(
            "SELECT min_t, NULL FROM chunks "
            "WHERE series_id = ? AND max_t >= ? AND min_t <= ? ORDER BY min_t",
            (sid, mint, maxt),
        ):
            del blob
            decoded = self._chunk(sid, chunk_min)
            if decoded is not None:
                parts_t.append(decoded[0])
                parts_v.append(decoded[1])
        head = self._heads.get(sid)
        if head is not None and head.ts:
            parts_t.append(np.frombuffer(head.ts, dtype=np.int64).copy())
            parts_v.append(np.frombuffer(head.values, dtype=np.float64).copy())
        if not parts_t:
            return SeriesData(self._labels[sid], np.empty(0, np.int64), np.empty(0, np.float64))
        ts, vs = np.concatenate(parts_t), np.concatenate(parts_v)
        lo, hi = np.searchsorted(ts, mint, "left"), np.searchsorted(ts, maxt, "right")
        return SeriesData(self._labels[sid], ts[lo:hi], vs[lo:hi])

    def _chunk(
        self, sid: int, mint: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None:
        key = (sid, mint)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        row = self._db.execute(
            "SELECT data FROM chunks WHERE series_id = ? AND min_t = ?", (sid, mint)
        ).fetchone()
        try:
            decoded = decode_chunk(row[0])
        except (zstandard.ZstdError, ValueError, TypeError) as exc:
            self.corrupt_chunks += 1
            log.error(
                "%s: skipping corrupt chunk of series %s at %s: %s", self.path, sid, mint, exc
            )
            return None
        self._cache[key] = decoded
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return decoded

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesData]:
        """Every selected series with its samples in ``[mint, maxt]`` (empty ones left out)."""
        out = []
        for sid in self.series_ids(matchers):
            data = self.read(sid, mint, maxt)
            if len(data.ts):
                out.append(data)
        return out

    def stats(self) -> dict[str, int]:
        ((chunks, size),) = self._db.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM chunks"
        )
        return {
            "series": len(self._labels),
            "chunks": int(chunks),
            "chunk_bytes": int(size),
            "head_samples": sum(len(h.ts) for h in self._heads.values()),
            "appended": self.appended,
            "rejected_out_of_order": self.rejected_out_of_order,
            "rejected_future": self.rejected_future,
            "corrupt_chunks": self.corrupt_chunks,
            "wal_bytes": self._wal.size if self._wal is not None else 0,
            "wal_replayed": self.wal_replayed,
            "wal_errors": self.wal_errors,
        }


def _matches(
    labels: dict[str, str], compiled: list[tuple[str, str, str, re.Pattern[str] | None]]
) -> bool:
    for name, op, value, pattern in compiled:
        have = labels.get(name, "")
        if (op == "=" and have != value) or (op == "!=" and have == value):
            return False
        if pattern is not None and (pattern.fullmatch(have) is not None) != (op == "=~"):
            return False
    return True
