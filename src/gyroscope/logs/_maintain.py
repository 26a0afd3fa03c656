"""Rewriting sealed segments: redaction of single records and applying retention.

Both turn records into redacted stubs (the line is gone, the Merkle leaf hash stays), rewrite the
segment atomically (temp file, fsync, rename, fsync dir) and rebuild its index. The active segment
is sealed first, because the writer only ever appends to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from blake3 import blake3

from gyroscope.core import atomic_write
from gyroscope.logs._errors import LogStoreError
from gyroscope.logs._record import encode
from gyroscope.logs._retention import RetentionRule, SegmentUsage, plan_retention
from gyroscope.logs._segment import Segment, scan_frames
from gyroscope.logs._store import LogStore

__all__ = ["apply_retention", "redact"]

log = logging.getLogger(__name__)


def _rewrite(store: LogStore, seg: Segment, drop: Callable[[int, str], bool]) -> int:
    """Rewrite ``seg`` with the records ``drop(seq, labels)`` selects turned into stubs."""
    with seg.index_lock:  # not while the background indexer writes this segment's sidecar
        return _rewrite_locked(store, seg, drop)


def _rewrite_locked(store: LogStore, seg: Segment, drop: Callable[[int, str], bool]) -> int:
    with seg.mapped() as view:
        result = scan_frames(seg.path, view)
        if result.damage:
            raise LogStoreError(
                f"{result.damage[0]}: will not rewrite a damaged segment (run `gyro logs verify`)"
            )
        parts, changed = [], 0
        for frame in result.frames:
            rec = frame.record
            if rec.seq < store.merkle.size and store.merkle.leaf(rec.seq) != rec.leaf:
                raise LogStoreError(
                    f"{seg.path}: offset {frame.offset}: record {rec.seq} does not match its "
                    "Merkle leaf; will not rewrite a tampered segment (run `gyro logs verify`)"
                )
            if rec.redacted or not drop(rec.seq, rec.labels):
                parts.append(bytes(view[frame.offset : frame.end]))
                continue
            parts.append(
                encode(
                    rec.seq,
                    rec.ts_ns,
                    rec.labels.encode(),
                    b"",
                    rec.key,
                    leaf=rec.leaf,
                    batch_end=rec.batch_end,
                )
            )
            changed += 1
    if changed:
        data = b"".join(parts)
        atomic_write(seg.path, data)
        store.checkpoints.seal(seg.base, seg.last_seq, len(data), blake3(data).digest())
        seg.size = len(data)
        seg.bloom = None
        seg.index_from(scan_frames(seg.path, data))
        seg.save_index(with_bloom=store.bloom)
    return changed


def redact(store: LogStore, seq: int) -> None:
    """Remove record ``seq``'s line for good; its leaf hash (and so every proof) stays valid."""
    with store.lock:
        seg = store.segment_of(seq)
        if seg is None or seq >= store.next_seq:
            raise LogStoreError(f"record {seq} does not exist")
        if not seg.sealed:
            store.rotate()
            seg = store.segment_of(seq)
            assert seg is not None
        if _rewrite(store, seg, lambda s, _labels: s == seq) == 0:
            log.info("record %d was already redacted", seq)


def usage(seg: Segment) -> SegmentUsage:
    _, ts, sids = seg.arrays()
    streams = {}
    for sid, labels in enumerate(seg.streams):
        mine = ts[sids == sid]
        if len(mine):
            streams[labels] = (int(mine.max()), seg.stream_bytes.get(labels, 0))
    return SegmentUsage(seg.base, seg.size, streams)


def apply_retention(
    store: LogStore, rules: Sequence[RetentionRule], default: RetentionRule, *, now_ns: int
) -> int:
    """Expire what the rules say; returns how many records were turned into stubs or removed."""
    with store.lock:
        sealed = [s for s in store.segments if s.sealed]
        plan = plan_retention([usage(s) for s in sealed], rules, default, now_ns=now_ns)
        removed = 0
        for seg in sealed:
            streams = plan.get(seg.base)
            if not streams:
                continue
            if set(seg.streams) <= streams and seg is store.segments[0]:
                removed += seg.count
                store.merkle.sync()  # the leaves are the only copy of these hashes from now on
                atomic_write(store.path / "dropped_until", str(seg.last_seq + 1).encode())
                with seg.index_lock:
                    seg.remove()
                store.segments.remove(seg)
                continue
            removed += _rewrite(store, seg, lambda _s, labels, st=streams: labels in st)  # type: ignore[misc]
        return removed
