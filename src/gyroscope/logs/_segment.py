"""One segment file and its index.

A segment holds consecutive records (by sequence number) of every stream. Its index lists, per
record, the byte offset, the timestamp and the stream, plus the stream names and time range; sealed
segments keep it in a sidecar ``.idx`` file (an ``.npz`` whose members carry zip CRCs), together with
an n-gram bloom filter built in the background. A missing or damaged index is rebuilt from the
segment itself, so the index is never the only copy of anything.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import mmap
import os
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gyroscope.core import atomic_write
from gyroscope.logs._bloom import BloomFilter
from gyroscope.logs._record import Frame, FrameError, decode

__all__ = ["Damage", "ScanResult", "Segment", "scan_frames"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Damage:
    """A damaged region of a segment: where it starts and what is wrong."""

    path: str
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: offset {self.offset}: {self.reason}"


@dataclass(slots=True)
class ScanResult:
    frames: list[Frame] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    valid_end: int = 0  # end of the last valid frame before the first damage
    resynced: bool = False  # valid frames were found after damage (corruption, not a torn tail)


def _resync(buf: memoryview, start: int, min_seq: int) -> int | None:
    """The offset of the next valid frame after ``start`` with a sequence number >= min_seq."""
    limit = len(buf)
    for pos in range(start + 1, limit - 8):
        try:
            frame = decode(buf, pos, with_leaf=False)
        except FrameError:
            continue
        if frame.record.seq >= min_seq:
            return pos
    return None


def scan_frames(path: Path, data: bytes | memoryview, *, resync: bool = True) -> ScanResult:
    """Decode every frame; on damage, note it and (``resync``) carry on at the next valid frame."""
    buf = memoryview(data)
    result = ScanResult()
    offset = 0
    last_seq = -1
    while offset < len(buf):
        try:
            frame = decode(buf, offset)
        except FrameError as exc:
            if not result.damage:
                result.valid_end = offset
            result.damage.append(Damage(str(path), exc.offset, exc.reason))
            nxt = _resync(buf, offset, last_seq + 1) if resync else None
            if nxt is None:
                return result
            result.resynced = True
            offset = nxt
            continue
        result.frames.append(frame)
        last_seq = frame.record.seq
        offset = frame.end
    if not result.damage:
        result.valid_end = offset
    return result


class Segment:
    """A segment file named by its first sequence number, with its in-memory index.

    The active segment appends to ``offsets``/``ts``/``sids`` as records are written; a sealed one
    loads them from its sidecar.
    """

    def __init__(self, path: Path, base: int) -> None:
        self.path = path
        self.base = base
        self.size = 0
        self.sealed = False
        self.streams: list[str] = []
        self._sid: dict[str, int] = {}
        self.offsets = array("Q")
        self.ts = array("q")
        self.sids = array("H")
        self.seqs = array("q")
        self.stream_bytes: dict[str, int] = {}
        self.keys: dict[bytes, int] = {}  # de-duplication key -> last seq of its batch
        self.bloom: BloomFilter | None = None
        self._np: (
            tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint16]] | None
        ) = None
        self.damage: list[Damage] = []
        # Held while the sidecar is written or the segment rewritten: the background indexer and
        # redaction/retention must not write the same files at once.
        self.index_lock = threading.RLock()

    @staticmethod
    def name_for(base: int) -> str:
        return f"{base:020d}.seg"

    @property
    def idx_path(self) -> Path:
        return self.path.with_suffix(".idx")

    @property
    def count(self) -> int:
        return len(self.offsets)

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else self.base - 1

    @property
    def min_ts(self) -> int:
        return min(self.ts) if self.ts else 0

    @property
    def max_ts(self) -> int:
        return max(self.ts) if self.ts else 0

    def sid(self, labels: str) -> int:
        sid = self._sid.get(labels)
        if sid is None:
            sid = self._sid[labels] = len(self.streams)
            self.streams.append(labels)
        return sid

    def note(self, seq: int, offset: int, ts_ns: int, labels: str, size: int) -> None:
        """Index one record just written (or found while scanning)."""
        # readers take len(offsets) as the record count, so offsets grow last
        self.ts.append(ts_ns)
        self.sids.append(self.sid(labels))
        self.seqs.append(seq)
        self.offsets.append(offset)
        self.stream_bytes[labels] = self.stream_bytes.get(labels, 0) + size

    def note_batch(
        self, first: int, offset: int, ts: list[int], labels: list[str], sizes: list[int]
    ) -> None:
        """Index a batch just written (the bulk form of ``note``)."""
        if not sizes:
            return
        for lab in dict.fromkeys(labels):
            if lab not in self._sid:
                self.sid(lab)
        sid_of, stream_bytes = self._sid, self.stream_bytes
        if len(labels) and labels[0] == labels[-1] and labels.count(labels[0]) == len(labels):
            lab = labels[0]  # the usual batch: one stream
            sids = array("H", [sid_of[lab]]) * len(labels)
            stream_bytes[lab] = stream_bytes.get(lab, 0) + sum(sizes)
        else:
            sids = array("H", [sid_of[lab] for lab in labels])
            for lab, size in zip(labels, sizes, strict=True):
                stream_bytes[lab] = stream_bytes.get(lab, 0) + size
        self.ts.extend(ts)
        self.sids.extend(sids)
        self.seqs.extend(range(first, first + len(ts)))
        # last: readers take len(offsets) as the count
        self.offsets.extend(itertools.accumulate(sizes[:-1], initial=offset))

    def reset_index(self) -> None:
        self.streams, self._sid = [], {}
        self.offsets, self.ts, self.sids, self.seqs = array("Q"), array("q"), array("H"), array("q")
        self.stream_bytes = {}
        self.keys = {}
        self._np = None

    def index_from(self, result: ScanResult) -> None:
        self.reset_index()
        for frame in result.frames:
            rec = frame.record
            self.note(rec.seq, frame.offset, rec.ts_ns, rec.labels, frame.end - frame.offset)
            if rec.key:
                self.keys[rec.key] = rec.seq
        self.damage = list(result.damage)

    # -- reading -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def mapped(self) -> Iterator[memoryview]:
        """The segment's bytes (up to ``size``), memory-mapped while the context is open."""
        if self.size == 0:
            yield memoryview(b"")
            return
        with open(self.path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mm)[: self.size]
        try:
            yield view
        finally:
            view.release()
            # a caller's slice may still point into the map; then the garbage collector unmaps it
            with contextlib.suppress(BufferError):
                mm.close()

    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint16]]:
        """(offsets, timestamps, stream ids) as numpy arrays, for vectorised selection.

        They are copies: a numpy view would pin the writer's growing ``array`` (which then cannot
        resize). A sealed segment no longer changes, so its copies are made once and kept.
        """
        cached = self._np
        if cached is not None and cached[0].shape[0] == len(self.offsets):
            return cached
        count = len(self.offsets)  # first: the other arrays are at least this long
        out = (
            np.frombuffer(self.offsets[:count], dtype=np.uint64).astype(np.int64),
            np.frombuffer(self.ts[:count], dtype=np.int64),
            np.frombuffer(self.sids[:count], dtype=np.uint16),
        )
        if self.sealed:
            self._np = out
        return out

    # -- sidecar -------------------------------------------------------------------------------
    def save_index(self, *, with_bloom: bool) -> None:
        """Write the sidecar (and build the bloom filter first when asked); runs off the ingest path."""
        with self.index_lock:
            self._save_index(with_bloom=with_bloom)

    def _save_index(self, *, with_bloom: bool) -> None:
        if with_bloom and self.bloom is None:
            with self.mapped() as view:
                self.bloom = BloomFilter.build(view)
        meta = {
            "base": self.base,
            "size": self.size,
            "streams": self.streams,
            "stream_bytes": self.stream_bytes,
            "keys": {k.hex(): v for k, v in self.keys.items()},
            "bloom_bits": self.bloom.bits if self.bloom else 0,
        }
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "offsets": np.frombuffer(self.offsets, dtype=np.uint64),
            "ts": np.frombuffer(self.ts, dtype=np.int64),
            "sids": np.frombuffer(self.sids, dtype=np.uint16),
            "seqs": np.frombuffer(self.seqs, dtype=np.int64),
        }
        if self.bloom is not None:
            arrays["bloom"] = self.bloom.packed
        out = io.BytesIO()
        np.savez(out, **arrays)  # type: ignore[arg-type]
        atomic_write(self.idx_path, out.getvalue())

    def load_index(self) -> bool:
        """Load the sidecar; False when it is missing, damaged or does not match the segment."""
        try:
            with np.load(self.idx_path) as npz:
                meta = json.loads(bytes(npz["meta"]).decode())
                if meta["base"] != self.base or meta["size"] != self.size:
                    return False
                self.reset_index()
                self.offsets = array("Q", npz["offsets"].tobytes())
                self.ts = array("q", npz["ts"].tobytes())
                self.sids = array("H", npz["sids"].tobytes())
                self.seqs = array("q", npz["seqs"].tobytes())
                self.streams = list(meta["streams"])
                self._sid = {s: i for i, s in enumerate(self.streams)}
                self.stream_bytes = dict(meta["stream_bytes"])
                self.keys = {bytes.fromhex(k): int(v) for k, v in meta["keys"].items()}
                if meta["bloom_bits"]:
                    self.bloom = BloomFilter(np.array(npz["bloom"]), int(meta["bloom_bits"]))
        except FileNotFoundError:
            return False
        except Exception as exc:  # a damaged sidecar is rebuilt, never trusted
            log.warning(
                "%s: index unreadable (%s); rebuilding it from the segment", self.idx_path, exc
            )
            return False
        return True

    def remove(self) -> None:
        for path in (self.path, self.idx_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
