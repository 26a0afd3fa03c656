"""Label matchers as Alertmanager writes them, and silences (one-off or recurring).

A recurring silence is active inside its window on the given weekdays (UTC), between ``starts_at``
and ``ends_at``: e.g. every Saturday and Sunday 22:00-06:00 for a maintenance window. A window
that crosses midnight belongs to the day it starts on.

>>> s = Silence.create(["job=\\"demo\\""], starts_at=0, ends_at=10**10, weekdays=[5, 6],
...                    start="22:00", end="06:00")
>>> s.active(1700949600.0), s.active(1700906400.0)   # Sat 2023-11-25 22:00 UTC, Sat 10:00 UTC
(True, False)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["LabelMatcher", "Silence", "matches_all", "parse_matcher"]

_MATCHER = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*\Z'
)


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        hit = re.fullmatch(self.value, have) is not None
        return hit if self.op == "=~" else not hit

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": "~" in self.op,
            "isEqual": not self.op.startswith("!"),
        }

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> LabelMatcher:
    """``name="value"``, ``name=~"re"``, ``name!=value``; raises ``ValueError`` naming the text."""
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(f'invalid matcher {text!r} (expected name="value", name=~"regex", ...)')
    value = found.group(3) if found.group(3) is not None else found.group(4)
    value = value.replace('\\"', '"').replace("\\\\", "\\")
    if "~" in found.group(2):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from None
    return LabelMatcher(found.group(1), found.group(2), value)


def matcher_from_api(item: Mapping[str, Any]) -> LabelMatcher:
    """Alertmanager v2 JSON: ``{"name", "value", "isRegex", "isEqual"}``."""
    regex, equal = bool(item.get("isRegex")), bool(item.get("isEqual", True))
    op = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
    return LabelMatcher(str(item["name"]), op, str(item.get("value", "")))


def matches_all(matchers: Sequence[LabelMatcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _minutes(text: str) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes or 0)
    if not 0 <= value <= 24 * 60:
        raise ValueError(f"expected HH:MM, got {text!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    id: str
    matchers: tuple[LabelMatcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    weekdays: frozenset[int] = field(default_factory=frozenset)  # 0 = Monday; empty = one-off
    start_minute: int = 0
    end_minute: int = 24 * 60

    @classmethod
    def create(
        cls,
        matchers: Sequence[str | LabelMatcher],
        *,
        starts_at: float,
        ends_at: float,
        created_by: str = "",
        comment: str = "",
        weekdays: Sequence[int] = (),
        start: str = "00:00",
        end: str = "24:00",
        id: str | None = None,
    ) -> Silence:
        parsed = tuple(m if isinstance(m, LabelMatcher) else parse_matcher(m) for m in matchers)
        if not parsed:
            raise ValueError("a silence needs at least one matcher")
        if ends_at <= starts_at:
            raise ValueError("a silence must end after it starts")
        if any(not 0 <= d <= 6 for d in weekdays):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return cls(
            id=id or str(uuid.uuid4()),
            matchers=parsed,
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
            weekdays=frozenset(weekdays),
            start_minute=_minutes(start),
            end_minute=_minutes(end),
        )

    def active(self, now: float) -> bool:
        if not self.starts_at <= now < self.ends_at:
            return False
        if not self.weekdays:
            return True
        moment = datetime.fromtimestamp(now, UTC)
        minute = moment.hour * 60 + moment.minute
        if self.start_minute <= self.end_minute:
            return (
                moment.weekday() in self.weekdays and self.start_minute <= minute < self.end_minute
            )
        if minute >= self.start_minute:
            return moment.weekday() in self.weekdays
        yesterday = (moment - timedelta(days=1)).weekday()
        return minute < self.end_minute and yesterday in self.weekdays

    def silences(self, labels: Mapping[str, str], now: float) -> bool:
        return self.active(now) and matches_all(self.matchers, labels)

    def as_dict(self, now: float) -> dict[str, Any]:
        state = "active" if self.active(now) else ("expired" if now >= self.ends_at else "pending")
        out: dict[str, Any] = {
            "id": self.id,
            "matchers": [m.as_dict() for m in self.matchers],
            "startsAt": _iso(self.starts_at),
            "endsAt": _iso(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
            "status": {"state": state},
        }
        if self.weekdays:
            out["recurring"] = {
                "weekdays": sorted(self.weekdays),
                "start": f"{self.start_minute // 60:02d}:{self.start_minute % 60:02d}",
                "end": f"{self.end_minute // 60:02d}:{self.end_minute % 60:02d}",
            }
        return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """RFC 3339 (``2026-01-02T03:04:05Z``) or Unix seconds -> Unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
