"""Picking a segment's candidate records for a query without decoding the rest.

Streams are matched by label set through the segment's stream list, time through its per-record
timestamps (numpy), and substring filters by the n-gram bloom filter and then by a memchr-speed
search of the mapped segment whose hits map back to records through the offsets index. Only the
surviving records are decoded and CRC-checked; a damaged one is reported and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from gyroscope.logs._record import FrameError, Record, decode
from gyroscope.logs._segment import Damage, Segment

__all__ = ["select_segment"]

log = logging.getLogger(__name__)
_SCAN_ALL_BELOW = 256  # below this many candidates, decoding them beats searching the file


def _needle_records(
    view: memoryview, needle: bytes, offsets: npt.NDArray[np.int64], backward: bool
) -> Iterator[int]:
    """Indices of records containing ``needle``, lazily, in the asked direction.

    The search runs on the mmap itself (memchr-fast, no copy) and moves one record at a time, so
    a query that stops after ``limit`` lines never scans the rest of the segment.
    """
    mm = view.obj
    size = len(view)
    find = getattr(mm, "find", None) or bytes(view).find
    rfind = getattr(mm, "rfind", None) or bytes(view).rfind
    count = len(offsets)
    if backward:
        end = size
        while (pos := rfind(needle, 0, end)) >= 0:
            i = int(np.searchsorted(offsets, pos, side="right")) - 1
            if i < 0:
                return
            yield i
            end = int(offsets[i])
    else:
        start = 0
        while (pos := find(needle, start, size)) >= 0:
            i = int(np.searchsorted(offsets, pos, side="right")) - 1
            yield i
            if i + 1 >= count:
                return
            start = int(offsets[i + 1])


def select_segment(
    seg: Segment,
    stream_ok: Callable[[str], bool],
    start_ns: int,
    end_ns: int,
    needles: Sequence[bytes],
    backward: bool,
    damage: list[Damage],
) -> Iterator[Record]:
    count = seg.count  # read before the size: the writer grows the size first
    if not count:
        return
    matched = [i for i, s in enumerate(list(seg.streams)) if stream_ok(s)]
    if not matched:
        return
    if seg.bloom is not None and not all(seg.bloom.may_contain(n) for n in needles):
        return
    offsets, ts, sids = seg.arrays()
    count = len(offsets)
    mask = (ts >= start_ns) & (ts < end_ns)
    if len(matched) < len(seg.streams):
        mask &= np.isin(sids, np.array(matched, dtype=np.uint16))
    size = seg.size
    with seg.mapped() as mapped:
        view = mapped[:size]
        if needles and int(mask.sum()) > _SCAN_ALL_BELOW:
            needle = max(needles, key=len)
            picks: Iterable[int] = (
                i for i in _needle_records(view, needle, offsets, backward) if mask[i]
            )
        else:
            found = np.flatnonzero(mask)
            picks = (int(i) for i in (found[::-1] if backward else found))
        for i in picks:
            try:
                yield decode(view, int(offsets[i])).record
            except FrameError as exc:
                d = Damage(str(seg.path), exc.offset, exc.reason)
                if d not in damage:
                    damage.append(d)
                    log.error("corrupt log record skipped: %s", d)
