"""Retention by age and size, per stream: the decision (pure) and its application.

A rule names the streams it covers (a label matcher) and how long / how many bytes to keep. Rules
are checked in order; the first that matches a stream applies, else the default. Decisions are made
per (segment, stream): a stream's records in a sealed segment expire together once the newest of
them is older than ``max_age``, or once newer segments already hold ``max_bytes`` of that stream.
Expired records become redacted stubs that keep their Merkle leaf hash, so every proof and every
checkpoint still verifies; a segment whose records all expired is removed, and when it is the
oldest, its range is recorded in ``dropped_until``.

>>> segs = [SegmentUsage(0, 100, {"a": (10, 50)}), SegmentUsage(1, 100, {"a": (90, 50)})]
>>> plan_retention(segs, [], RetentionRule(max_age_ns=50), now_ns=100)
{0: {'a'}}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["RetentionRule", "SegmentUsage", "plan_retention"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionRule:
    """Keep a stream's records for ``max_age_ns`` and at most ``max_bytes`` (0 = no limit)."""

    matches: Callable[[str], bool] = lambda labels: True
    max_age_ns: int = 0
    max_bytes: int = 0


@dataclass(frozen=True, slots=True)
class SegmentUsage:
    """A sealed segment as retention sees it: stream -> (newest timestamp, bytes)."""

    base: int
    size: int
    streams: dict[str, tuple[int, int]]


def plan_retention(
    segments: Sequence[SegmentUsage],
    rules: Sequence[RetentionRule],
    default: RetentionRule,
    *,
    now_ns: int,
) -> dict[int, set[str]]:
    """Which streams expire in which segment (by segment base). Segments oldest first."""

    def rule_for(labels: str) -> RetentionRule:
        return next((r for r in rules if r.matches(labels)), default)

    expired: dict[int, set[str]] = {}
    kept_bytes: dict[str, int] = {}
    for seg in reversed(segments):  # newest first, so size limits keep the newest data
        for labels, (newest, size) in seg.streams.items():
            rule = rule_for(labels)
            too_old = rule.max_age_ns > 0 and newest < now_ns - rule.max_age_ns
            total = kept_bytes.get(labels, 0) + size
            too_big = rule.max_bytes > 0 and total > rule.max_bytes
            if too_old or too_big:
                expired.setdefault(seg.base, set()).add(labels)
            else:
                kept_bytes[labels] = total
    return expired
