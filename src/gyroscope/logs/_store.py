"""The embedded log store: segments, crash recovery, durable batched appends, selection for queries.

Durability contract: ``append(batch)`` returns only after the batch's bytes are fsynced (fdatasync)
to its segment file. A batch is atomic: each record carries a flag marking the last record of its
batch, and crash recovery cuts a torn tail back to the end of the last complete batch, so after a
crash a batch is there entirely or not at all. A damaged region in the middle of a segment is not cut
away: it is reported (file and byte offset) and every valid record around it keeps being served.

Concurrency: one writer (``append``, ``redact``, retention) at a time under ``self.lock``; readers
work from a snapshot of the segment list and may run in other threads. A second process may open the
store ``readonly`` (the CLI does) while the daemon writes.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from blake3 import blake3

from gyroscope.logs._checkpoint import Checkpoint, CheckpointLog
from gyroscope.logs._errors import CorruptRecordError, LogStoreError, StoreLockedError
from gyroscope.logs._record import (
    MAX_LINE_BYTES,
    FrameError,
    Record,
    decode,
    frame_batch,
    leaf_hashes,
)
from gyroscope.logs._segment import Damage, Segment, scan_frames
from gyroscope.logs._tree import MerkleLog

__all__ = ["AppendResult", "Entry", "LogStore"]

log = logging.getLogger(__name__)

_DEDUP_KEYS = 100_000


class Entry(NamedTuple):
    """One line to append: canonical label text (see ``canonical``), the line, its timestamp.

    A named tuple: ingest builds one per line, and a tuple is built several times faster than a
    frozen dataclass.
    """

    labels: str
    line: bytes
    ts_ns: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Sequence numbers ``first .. first+count-1`` are durable; ``duplicate`` means an earlier batch
    with the same key already stored them."""

    first: int
    count: int
    duplicate: bool = False


class LogStore:
    """Append-only, CRC-checked, Merkle-logged storage of log lines in one directory.

    >>> import tempfile
    >>> store = LogStore(Path(tempfile.mkdtemp())).open()
    >>> store.append([Entry(labels='{job="api"}', line=b"hello", ts_ns=1)]).first
    0
    >>> store.get(0).line
    b'hello'
    >>> store.close()
    """

    def __init__(
        self,
        path: Path,
        *,
        segment_bytes: int = 16 * 1024 * 1024,
        checkpoint_every: int = 100_000,
        checkpoint_dir: Path | None = None,
        bloom: bool = True,
    ) -> None:
        self.path = path
        self.segment_bytes = segment_bytes
        self.checkpoint_every = checkpoint_every
        self.bloom = bloom
        self.segments: list[Segment] = []
        self.merkle = MerkleLog(path / "leaves")
        self.checkpoints = CheckpointLog(checkpoint_dir or path / "checkpoints")
        self.lock = threading.RLock()
        self.readonly = False
        self.next_seq = 0
        self.damage: list[Damage] = []
        self.dedup: OrderedDict[bytes, tuple[int, int]] = OrderedDict()
        self._fd = -1
        self._hasher = blake3()  # of the active segment's bytes, as written: becomes its seal
        self._lock_fd = -1
        self._since_checkpoint = 0
        self._indexer: threading.Thread | None = None
        self._syncer: ThreadPoolExecutor | None = None  # runs fdatasync of large batches
        self._to_index: list[Segment] = []
        self.appended_lines = 0
        self.appended_bytes = 0

    @property
    def seg_dir(self) -> Path:
        return self.path / "segments"

    # -- open / recover ------------------------------------------------------------------------
    def open(self, *, readonly: bool = False) -> LogStore:
        """Open (and, unless ``readonly``, recover) the store; a failure releases what it took."""
        try:
            return self._open(readonly)
        except BaseException:
            self.close()  # the write lock above all: the caller may fix the cause and retry
            raise

    def _open(self, readonly: bool) -> LogStore:
        self.readonly = readonly
        self.seg_dir.mkdir(parents=True, exist_ok=True)
        if not readonly:
            self._take_lock()
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="logs-fsync")
        self.checkpoints.open(create=not readonly)
        self.merkle.open()
        bases = sorted(int(p.stem) for p in self.seg_dir.glob("*.seg"))
        self.segments = [Segment(self.seg_dir / Segment.name_for(b), b) for b in bases]
        for seg in self.segments[:-1]:
            self._load_sealed(seg)
        if self.segments:
            self._recover_last(self.segments[-1])
        last = max((s.last_seq for s in self.segments), default=-1)
        self.next_seq = max(last + 1, self._dropped_end())
        self._repair_leaves()
        self._load_dedup()
        if not readonly and (not self.segments or self.segments[-1].sealed):
            self._new_segment()
        elif not readonly:
            active = self.segments[-1]
            self._fd = os.open(active.path, os.O_WRONLY | os.O_APPEND)
            with active.mapped() as view:
                self._hasher = blake3(view)
        cp = self.checkpoints.latest()
        self._since_checkpoint = self.next_seq - (cp.size if cp else 0)
        return self

    def _take_lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise StoreLockedError(
                f"{self.path}: the log store is open for writing in another process "
                "(stop it, or use its HTTP API)"
            ) from exc

    def _load_sealed(self, seg: Segment) -> None:
        seg.size = seg.path.stat().st_size
        seg.sealed = True
        if seg.load_index():
            return
        with seg.mapped() as view:
            seg.index_from(scan_frames(seg.path, view))
        self.damage.extend(seg.damage)
        for d in seg.damage:
            log.error("corrupt log segment: %s", d)
        if not self.readonly:
            self._queue_index(seg)

    def _recover_last(self, seg: Segment) -> None:
        seg.size = seg.path.stat().st_size
        with seg.mapped() as view:
            result = scan_frames(seg.path, view)
        if result.resynced:  # valid records after the damage: corruption, not a torn write
            seg.index_from(result)
            seg.sealed = True
            self.damage.extend(result.damage)
            for d in result.damage:
                log.error("corrupt log segment: %s", d)
            if not self.readonly:
                self._queue_index(seg)
            return
        frames = result.frames
        while frames and not frames[-1].record.batch_end:
            frames.pop()  # the tail of a batch that was never acknowledged
        end = frames[-1].end if frames else 0
        result.frames, result.damage = frames, []
        seg.index_from(result)
        if end < seg.size and not self.readonly:
            log.warning(
                "%s: cutting a torn tail at offset %d (%d bytes)", seg.path, end, seg.size - end
            )
            with open(seg.path, "r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
        seg.size = end

    def _dropped_end(self) -> int:
        marker = self.path / "dropped_until"
        return int(marker.read_text()) if marker.exists() else 0

    def _repair_leaves(self) -> None:
        """Make ``leaves`` match the records exactly: cut extra hashes, recompute missing ones."""
        if self.merkle.size > self.next_seq and not self.readonly:
            self.merkle.truncate(self.next_seq)
        if self.merkle.size >= self.next_seq or self.readonly:
            return
        missing: list[bytes] = []
        for seq in range(self.merkle.size, self.next_seq):
            try:
                missing.append(self.get(seq).leaf)
            except LogStoreError as exc:
                log.error("cannot rebuild the leaf hash of record %d: %s", seq, exc)
                missing.append(bytes(32))
        self.merkle.append(missing)
        self.merkle.sync()

    def _load_dedup(self) -> None:
        for seg in self.segments:
            for key, seq in seg.keys.items():
                self._remember(key, seq)

    def _remember(self, key: bytes, last_seq: int) -> None:
        self.dedup[key] = (last_seq, 0)
        while len(self.dedup) > _DEDUP_KEYS:
            self.dedup.popitem(last=False)

    # -- writing -------------------------------------------------------------------------------
    def append(self, entries: Sequence[Entry], *, key: bytes = b"") -> AppendResult:
        """Write ``entries`` as one atomic batch and fsync; returns once they are durable."""
        if self.readonly:
            raise LogStoreError(f"{self.path}: the store is open read-only")
        with self.lock:
            if key and key in self.dedup:
                last = self.dedup[key][0]
                return AppendResult(last - len(entries) + 1, len(entries), duplicate=True)
            if not entries:
                return AppendResult(self.next_seq, 0)
            seg = self.segments[-1]
            if seg.size >= self.segment_bytes:
                seg = self._rotate()
            first = self.next_seq
            ts = [e.ts_ns for e in entries]
            labels = [e.labels for e in entries]
            lines = [e.line for e in entries]
            longest = max(map(len, lines))
            if longest > MAX_LINE_BYTES:
                raise LogStoreError(f"line of {longest} bytes exceeds {MAX_LINE_BYTES}")
            encoded = {lab: lab.encode() for lab in dict.fromkeys(labels)}
            label_bytes = [encoded[lab] for lab in labels]
            data, sizes = frame_batch(first, ts, label_bytes, lines, key)
            self._write_all(data)
            # The disk wait overlaps the Merkle hashing of a large batch (fdatasync releases the
            # GIL); the batch is acknowledged, indexed and added to the tree only after it returns.
            syncer = self._syncer if len(entries) >= 64 else None
            synced = syncer.submit(os.fdatasync, self._fd) if syncer is not None else None
            leaves = leaf_hashes(ts, label_bytes, lines)
            stack = self.merkle.prepare(leaves)
            if synced is None:
                os.fdatasync(self._fd)
            else:
                synced.result()
            self._hasher.update(data)
            offset = seg.size
            # readers see the new size before the new records, so never a record past the end
            seg.size = offset + len(data)
            seg.note_batch(first, offset, ts, labels, sizes)
            self.next_seq = first + len(entries)
            self.merkle.append(leaves, stack)
            if key:
                seg.keys[key] = self.next_seq - 1
                self._remember(key, self.next_seq - 1)
            self.appended_lines += len(entries)
            self.appended_bytes += len(data)
            self._since_checkpoint += len(entries)
            if self.checkpoint_every and self._since_checkpoint >= self.checkpoint_every:
                self.checkpoint()
            return AppendResult(first, len(entries))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def checkpoint(self) -> Checkpoint:
        """Sign the current tree (size, root); leaves are fsynced first so the root can be rebuilt."""
        with self.lock:
            self.merkle.sync()
            self._since_checkpoint = 0
            return self.checkpoints.sign(self.next_seq, self.merkle.root(), time.time_ns())

    def _new_segment(self) -> Segment:
        seg = Segment(self.seg_dir / Segment.name_for(self.next_seq), self.next_seq)
        self._fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        dfd = os.open(self.seg_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)  # the new file's name must survive a crash too
        finally:
            os.close(dfd)
        self.segments.append(seg)
        self._hasher = blake3()
        return seg

    def _rotate(self) -> Segment:
        old = self.segments[-1]
        os.close(self._fd)
        old.sealed = True
        self.merkle.sync()
        self.checkpoints.seal(old.base, old.last_seq, old.size, self._hasher.digest())
        self._queue_index(old)
        return self._new_segment()

    def rotate(self) -> None:
        """Seal the active segment now (redaction and retention only rewrite sealed segments)."""
        with self.lock:
            if self.segments[-1].count:
                self._rotate()

    def _queue_index(self, seg: Segment) -> None:
        """Write the sidecar index (with bloom filter) in a background thread, off the ingest path.

        Until it is written, a reopened store rebuilds the index by scanning the segment, so the
        batch that sealed the segment is not held up by the sidecar's write and fsync.
        """
        if not self.bloom:
            seg.save_index(with_bloom=False)
            return
        with self.lock:
            self._to_index.append(seg)
            if self._indexer is None or not self._indexer.is_alive():
                self._indexer = threading.Thread(
                    target=self._index_loop, name="logs-index", daemon=True
                )
                self._indexer.start()

    def _index_loop(self) -> None:
        while True:
            with self.lock:
                if not self._to_index:
                    return
                seg = self._to_index.pop(0)
                if seg not in self.segments:
                    continue  # removed by retention meanwhile
            try:
                seg.save_index(with_bloom=True)
            except (OSError, ValueError) as exc:
                log.warning("%s: cannot build the bloom filter: %s", seg.path, exc)

    def wait_indexed(self, timeout: float = 60.0) -> None:
        """Block until background index building is done (for tests and benchmarks)."""
        thread = self._indexer
        if thread is not None:
            thread.join(timeout)

    def close(self) -> None:
        self.wait_indexed()
        if self._syncer is not None:
            self._syncer.shutdown(wait=True)
            self._syncer = None
        with self.lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self.merkle.close()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    # -- reading -------------------------------------------------------------------------------
    def segment_of(self, seq: int) -> Segment | None:
        for seg in reversed(self.segments):
            if seg.base <= seq:
                return seg
        return None

    def get(self, seq: int) -> Record:
        """The record ``seq``; ``LogStoreError`` when it is gone (retention) or damaged."""
        seg = self.segment_of(seq)
        if seg is None or not seg.count:
            raise LogStoreError(f"record {seq} does not exist (or was dropped by retention)")
        idx = bisect.bisect_left(seg.seqs, seq)
        if idx >= seg.count or seg.seqs[idx] != seq:
            raise LogStoreError(f"record {seq} is missing from {seg.path} (damaged or dropped)")
        with seg.mapped() as view:
            try:
                return decode(view, seg.offsets[idx]).record
            except FrameError as exc:
                raise CorruptRecordError(exc.reason, path=str(seg.path), offset=exc.offset) from exc

    def select(
        self,
        stream_ok: Callable[[str], bool],
        *,
        start_ns: int = 0,
        end_ns: int = 2**63 - 1,
        needles: Sequence[bytes] = (),
        backward: bool = True,
    ) -> Iterator[Record]:
        """Records of matching streams in ``[start_ns, end_ns)`` that contain every needle
        (a pre-filter: callers still apply the exact filters), in sequence order."""
        from gyroscope.logs._select import select_segment

        segments = list(self.segments)
        for seg in reversed(segments) if backward else segments:
            yield from select_segment(
                seg, stream_ok, start_ns, end_ns, needles, backward, self.damage
            )

    def labels(self) -> list[str]:
        """Every stream's canonical label text."""
        seen: dict[str, None] = {}
        for seg in list(self.segments):
            seen.update(dict.fromkeys(seg.streams))
        return list(seen)
