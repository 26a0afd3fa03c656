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

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "LabelMatcher",
    "Silence",
    "matcher_from_api",
    "matches_all",
    "parse_matcher",
    "parse_time",
    "parse_weekdays",
]

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
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise ValueError(
            'every matcher must be an object like {"name": "job", "value": "demo", '
            f'"isRegex": false}}, got {json.dumps(item, default=str)[:80]}'
        )
    regex, equal = bool(item.get("isRegex")), bool(item.get("isEqual", True))
    op = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
    value = str(item.get("value", ""))
    if regex:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex in matcher {item['name']!r}: {exc}") from None
    return LabelMatcher(item["name"], op, value)


def matches_all(matchers: Sequence[LabelMatcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _minutes(text: object, what: str) -> int:
    found = re.fullmatch(r"\s*(\d{1,2})(?::(\d{2}))?\s*", text) if isinstance(text, str) else None
    value = int(found.group(1)) * 60 + int(found.group(2) or 0) if found else -1
    if found is None or int(found.group(2) or 0) > 59 or not 0 <= value <= 24 * 60:
        raise ValueError(f"{what}: expected a time of day HH:MM (00:00 to 24:00), got {text!r}")
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
            start_minute=_minutes(start, "recurring start"),
            end_minute=_minutes(end, "recurring end"),
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


# Times the API takes: datetime's range (years 1-9999), so every stored time can be printed.
MIN_TIME = datetime(1, 1, 2, tzinfo=UTC).timestamp()
MAX_TIME = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


def parse_time(value: object) -> float:
    """RFC 3339 (``2026-01-02T03:04:05Z``) or Unix seconds -> Unix seconds, finite, years 1-9999.

    Anything else (``inf``, ``nan``, ``1e300``, a JSON object) is a ``ValueError`` saying so.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(
            f"expected a time (RFC 3339 or Unix seconds), got a {type(value).__name__}"
        )
    if isinstance(value, str):
        try:
            t = float(value)
        except ValueError:
            try:
                t = datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise ValueError(f"invalid time {value!r} (use RFC 3339 or Unix seconds)") from None
    else:
        t = float(value)
    if not (math.isfinite(t) and MIN_TIME <= t <= MAX_TIME):
        raise ValueError(f"time {value!r} is out of range (years 1 to 9999)")
    return t


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_weekdays(items: Sequence[object]) -> list[int]:
    """Weekday numbers (0 = Monday) from numbers 0-6, ``sat``-style abbreviations or full names.

    >>> parse_weekdays(["sat", "Sunday", 0])
    [5, 6, 0]
    """
    days: list[int] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 6:
            days.append(item)
            continue
        text = item.strip().lower() if isinstance(item, str) else ""
        found = [i for i, name in enumerate(_WEEKDAYS) if text in (name, name[:3])]
        if not found:
            raise ValueError(
                f"unknown weekday {item!r}: use mon, tue, wed, thu, fri, sat, sun "
                "(or full names, or numbers 0 = Monday to 6 = Sunday)"
            )
        days.append(found[0])
    return days
