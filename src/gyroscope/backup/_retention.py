"""Which snapshots to keep: a pure function of the snapshots and a policy (no I/O, no clock).

The rules follow restic's, so users can bring their policies along:

- ``last=n``      the n newest snapshots;
- ``hourly=n`` .. ``yearly=n``   for each of the n newest hours/days/ISO weeks/months/years that have
  a snapshot, the newest snapshot in it (buckets are UTC);
- ``within=d``    every snapshot taken within ``d`` of the newest one (relative to the newest snapshot,
  not to the clock, so a repository nobody backed up for a while does not lose its history);
- ``tags``        every snapshot carrying one of these tags.

A snapshot is kept when any rule keeps it. A policy with no rule keeps everything (forget refuses it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["RetentionPolicy", "SnapshotRef", "apply_retention"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionPolicy:
    """How many snapshots each rule keeps.

    >>> RetentionPolicy(daily=7, weekly=4).empty
    False
    """

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta | None = None
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        counts = (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        return not any(counts) and self.within is None and not self.tags


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """What retention looks at: id, time (aware) and tags."""

    id: str
    time: datetime
    tags: frozenset[str] = frozenset()


def _bucket(fmt: Callable[[datetime], object]) -> Callable[[datetime], object]:
    return lambda t: fmt(t.astimezone(UTC))


_BUCKETS: dict[str, Callable[[datetime], object]] = {
    "hourly": _bucket(lambda t: (t.year, t.month, t.day, t.hour)),
    "daily": _bucket(lambda t: (t.year, t.month, t.day)),
    "weekly": _bucket(lambda t: t.isocalendar()[:2]),
    "monthly": _bucket(lambda t: (t.year, t.month)),
    "yearly": _bucket(lambda t: t.year),
}


def apply_retention(
    snapshots: Sequence[SnapshotRef], policy: RetentionPolicy
) -> tuple[list[SnapshotRef], list[SnapshotRef], dict[str, list[str]]]:
    """Split ``snapshots`` into (keep, remove), newest first, with the reasons for each kept one.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> snaps = [SnapshotRef(str(i), t + timedelta(hours=6 * i)) for i in range(8)]
    >>> keep, remove, why = apply_retention(snaps, RetentionPolicy(daily=2))
    >>> [s.id for s in keep], why["7"]
    (['7', '3'], ['daily'])
    """
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
    if policy.empty:
        return ordered, [], {s.id: ["no policy"] for s in ordered}
    reasons: dict[str, list[str]] = {}
    for snap in ordered[: policy.last]:
        reasons.setdefault(snap.id, []).append("last")
    for rule, bucket_of in _BUCKETS.items():
        count = getattr(policy, rule)
        seen: set[object] = set()
        for snap in ordered:
            if len(seen) >= count:
                break
            bucket = bucket_of(snap.time)
            if bucket not in seen:
                seen.add(bucket)
                reasons.setdefault(snap.id, []).append(rule)
    if policy.within is not None and ordered:
        newest = ordered[0].time
        for snap in ordered:
            if newest - snap.time <= policy.within:
                reasons.setdefault(snap.id, []).append("within")
    for snap in ordered:
        if snap.tags & policy.tags:
            reasons.setdefault(snap.id, []).append("tag")
    keep = [s for s in ordered if s.id in reasons]
    remove = [s for s in ordered if s.id not in reasons]
    return keep, remove, reasons
