"""The head log: an append-only write-ahead log of samples not yet written as chunks.

File layout: an 8-byte magic, then records ``u32 length | u32 crc32c(body) | body``. A body is
``b"S" | i64 series id | labels JSON`` (a new series) or ``b"P" | u32 n | n x i64 series ids |
n x i64 timestamps | n x f64 values`` (samples, little-endian). Records go to the OS with one
``write()`` per commit (so a crash of the process loses nothing written) and are fsynced at most
``sync_interval_s`` later (power loss loses at most that much; 0 syncs every commit).

On open, records are read until the first one that is short, fails its CRC or does not parse; the
file is cut back there (a torn write from a crash) with a warning, never an error. ``rewrite()``
replaces the log atomically with a smaller one (a checkpoint: only what is not yet in chunks).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "t.headlog"
>>> wal = HeadLog(path)
>>> wal.replay()   # a new log: nothing to replay
[]
>>> wal.append(series_record(1, (("__name__", "up"),)))
>>> wal.close()
>>> HeadLog(path).replay()
[SeriesRecord(sid=1, labels=(('__name__', 'up'),))]
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import crc32c
import numpy as np
import numpy.typing as npt

from gyroscope.monitor._exposition import Labels

__all__ = [
    "HeadLog",
    "Record",
    "SampleRecord",
    "SeriesRecord",
    "sample_records",
    "series_record",
]

log = logging.getLogger(__name__)

MAGIC = b"GYROWAL1"
_HEAD = struct.Struct("<II")
_SERIES = struct.Struct("<cq")
_COUNT = struct.Struct("<cI")
MAX_RECORD = 64 << 20  # larger lengths can only come from a corrupt header
RECORD_SAMPLES = 1 << 16  # samples per record, so no record comes near MAX_RECORD


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """A series created after the last checkpoint (its row may not have reached the disk)."""

    sid: int
    labels: Labels


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """Samples in commit order: three equally long columns."""

    sids: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


Record = SeriesRecord | SampleRecord


def series_record(sid: int, labels: Labels) -> bytes:
    return _SERIES.pack(b"S", sid) + json.dumps(labels, separators=(",", ":")).encode()


def sample_records(sids: array[int], ts: array[int], values: array[float]) -> list[bytes]:
    """Sample bodies for equally long columns, split into records of ``RECORD_SAMPLES``."""
    if sys.byteorder == "big":  # the format is little-endian everywhere
        for column in (sids, ts, values):
            column.byteswap()
    out = []
    for lo in range(0, len(sids), RECORD_SAMPLES):
        hi = min(lo + RECORD_SAMPLES, len(sids))
        out.append(
            _COUNT.pack(b"P", hi - lo)
            + sids[lo:hi].tobytes()
            + ts[lo:hi].tobytes()
            + values[lo:hi].tobytes()
        )
    return out


def _frame(body: bytes) -> bytes:
    return _HEAD.pack(len(body), crc32c.crc32c(body)) + body


def _parse(body: bytes) -> Record:
    kind = body[:1]
    if kind == b"S":
        _, sid = _SERIES.unpack_from(body)
        labels = tuple((str(k), str(v)) for k, v in json.loads(body[_SERIES.size :]))
        return SeriesRecord(int(sid), labels)
    if kind == b"P":
        _, n = _COUNT.unpack_from(body)
        if len(body) != _COUNT.size + 24 * n:
            raise ValueError("sample record length does not match its count")
        start = _COUNT.size
        sids = np.frombuffer(body, "<i8", n, start).astype(np.int64)
        ts = np.frombuffer(body, "<i8", n, start + 8 * n).astype(np.int64)
        values = np.frombuffer(body, "<f8", n, start + 16 * n).astype(np.float64)
        return SampleRecord(sids, ts, values)
    raise ValueError(f"unknown record type {kind!r}")


class HeadLog:
    """Append, sync, replay and rewrite one head log file. Not thread-safe."""

    def __init__(
        self,
        path: Path,
        *,
        sync_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.sync_interval_s = sync_interval_s
        self._clock = clock
        self._fd = -1
        self.size = 0
        self._unsynced = False
        self._last_sync = clock()
        self.cut_bytes = 0  # bytes dropped from a torn or corrupt tail at open

    def replay(self) -> list[Record]:
        """Every valid record, oldest first; cuts a torn tail off; leaves the log open to append."""
        data = self.path.read_bytes() if self.path.exists() else b""
        if data[: len(MAGIC)] != MAGIC:
            if data:
                aside = self.path.with_name(self.path.name + ".corrupt")
                os.replace(self.path, aside)
                log.error("%s: not a head log (bad magic); moved to %s", self.path, aside)
            self._create()
            return []
        offset = len(MAGIC)
        records: list[Record] = []
        while offset < len(data):
            record = self._record_at(data, offset)
            if record is None:
                break
            records.append(record[0])
            offset = record[1]
        if offset < len(data):
            self.cut_bytes = len(data) - offset
            log.warning(
                "%s: torn or corrupt record at byte %d; cut the log back to the last valid "
                "record (%d bytes dropped)",
                self.path,
                offset,
                self.cut_bytes,
            )
            with open(self.path, "r+b") as fh:
                fh.truncate(offset)
                os.fsync(fh.fileno())
        self._open()
        return records

    @staticmethod
    def _record_at(data: bytes, offset: int) -> tuple[Record, int] | None:
        if offset + _HEAD.size > len(data):
            return None
        length, crc = _HEAD.unpack_from(data, offset)
        end = offset + _HEAD.size + length
        if length > MAX_RECORD or end > len(data):
            return None
        body = data[offset + _HEAD.size : end]
        if crc32c.crc32c(body) != crc:
            return None
        try:
            return _parse(body), end
        except (ValueError, struct.error, json.JSONDecodeError, TypeError):
            return None

    def _create(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(MAGIC)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _sync_dir(self.path.parent)
        self._open()

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = os.fstat(self._fd).st_size

    def append(self, *bodies: bytes) -> None:
        """Write records with one ``write()``: in the OS (safe from a process crash) on return."""
        if self._fd < 0:
            raise RuntimeError("replay() the head log before appending to it")
        blob = b"".join(_frame(b) for b in bodies)
        view = memoryview(blob)
        try:
            while view:  # a regular file takes it all at once, but write() may legally take less
                view = view[os.write(self._fd, view) :]
        except OSError:
            # a half-written record would hide every later one from replay: cut it off
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(blob)
        self._unsynced = True
        if self._clock() - self._last_sync >= self.sync_interval_s:
            self.sync()

    def sync(self) -> None:
        """fsync what was appended (cheap when nothing was)."""
        if self._unsynced and self._fd >= 0:
            os.fsync(self._fd)
            self._unsynced = False
        self._last_sync = self._clock()

    def rewrite(self, bodies: list[bytes]) -> None:
        """Atomically replace the log with these records (fsynced before it replaces the old)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(MAGIC)
            for body in bodies:
                fh.write(_frame(body))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _sync_dir(self.path.parent)
        self._unsynced = False
        self._open()

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
