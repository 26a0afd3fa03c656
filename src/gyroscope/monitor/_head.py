"""In-memory heads (samples of one series not yet in a chunk) and how they go to the head log.

>>> head = Head(7)
>>> head.ts.append(1000); head.values.append(1.0); head.last = 1000
>>> [len(body) for body in log_records([head])]   # one sample: 5-byte header + 24 bytes
[29]
>>> head.logged
1
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from gyroscope.monitor._wal import sample_records

__all__ = ["NEVER", "Head", "log_records", "snapshot_records"]

NEVER = -(2**63)


class Head:
    """One series' samples not yet written, and the newest timestamp stored (for order checks).

    Heads live as long as the store; a scraper keeps references to them (its hot path).
    """

    __slots__ = ("last", "logged", "sid", "ts", "values", "written")

    def __init__(self, sid: int, last: int = NEVER) -> None:
        self.sid = sid
        self.ts: array[int] = array("q")
        self.values: array[float] = array("d")
        self.last = last  # newest timestamp appended
        self.written = last  # newest timestamp already in a chunk
        self.logged = 0  # how many of ts/values are in the head log


def log_records(dirty: Iterable[Head]) -> list[bytes]:
    """Records for the samples of ``dirty`` heads not logged yet.

    Marks them logged. A head may be listed more than once; the common case (one new sample per
    head per commit) costs three array appends. Should the write fail, setting ``logged = 0``
    logs them again next time: replay skips samples it already has, so repeats are harmless.
    """
    bodies: list[bytes] = []
    sids: array[int] = array("q")
    ts: array[int] = array("q")
    vs: array[float] = array("d")
    for head in dirty:
        k, n = head.logged, len(head.ts)
        if n == k + 1:
            sids.append(head.sid)
            ts.append(head.ts[k])
            vs.append(head.values[k])
        elif n > k:
            sids.extend([head.sid] * (n - k))
            ts.extend(head.ts[k:])
            vs.extend(head.values[k:])
        else:
            continue
        head.logged = n
    if sids:
        bodies += sample_records(sids, ts, vs)
    return bodies


def snapshot_records(heads: Iterable[Head]) -> list[bytes]:
    """Every sample held in ``heads`` (a checkpoint), marking them all logged."""
    sids: array[int] = array("q")
    ts: array[int] = array("q")
    vs: array[float] = array("d")
    for head in heads:
        if head.ts:
            sids.extend([head.sid] * len(head.ts))
            ts.extend(head.ts)
            vs.extend(head.values)
        head.logged = len(head.ts)
    return sample_records(sids, ts, vs) if sids else []
