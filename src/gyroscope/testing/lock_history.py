"""A small history checker for locks: did mutual exclusion and fencing hold in a recorded run?

Worker processes append events (one JSON object per line, ``O_APPEND``) while they acquire,
write through a fenced store and release. Timestamps are ``time.monotonic()``, which on Linux is
one clock for every process of the host. ``check_history`` then verifies, without any I/O:

1. **Mutual exclusion** — hold B may start while hold A's critical section is still running only if
   A's lease had already expired by A's own conservative count (acquire *invoke* time + ttl, pushed
   forward by renewals counted from *their* invoke times). The engine's expiry is never earlier than
   that, so a grant before it is a double grant.
2. **Tokens** — fencing tokens strictly increase in grant order and are never reused.
3. **Fencing** — the guarded store never accepted a write whose token is lower than one it had
   already accepted, and never rejected a write that was not stale.

>>> h = [Event(process="a", op="acquire_invoke", time=0.0, ttl=2.0),
...      Event(process="a", op="acquire_ok", time=0.1, token=1),
...      Event(process="b", op="acquire_invoke", time=0.2, ttl=2.0),
...      Event(process="b", op="acquire_ok", time=0.5, token=2),
...      Event(process="a", op="release_invoke", time=0.6)]
>>> [v.kind for v in check_history(h)]
['double-grant']
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Event", "Hold", "Recorder", "Violation", "check_history", "holds", "load_history"]

Op = Literal[
    "acquire_invoke",
    "acquire_ok",
    "acquire_fail",
    "renew_invoke",
    "renew_ok",
    "release_invoke",
    "release_ok",
    "lost",
    "write_ok",
    "write_rejected",
    "died",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    process: str
    op: Op
    time: float
    token: int | None = None
    ttl: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """One critical section: from the grant to release (or loss, or the end of the history)."""

    process: str
    token: int
    start: float
    end: float
    lease_end: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    kind: Literal[
        "double-grant",
        "token-order",
        "token-reuse",
        "stale-write-accepted",
        "fresh-write-rejected",
        "malformed",
    ]
    detail: str


def holds(events: Iterable[Event]) -> tuple[list[Hold], list[Violation]]:
    """Pair each process's events into holds; report events that make no sense in order."""
    by_process: dict[str, list[Event]] = {}
    for event in sorted(events, key=lambda e: e.time):
        by_process.setdefault(event.process, []).append(event)
    result: list[Hold] = []
    problems: list[Violation] = []
    for process, evs in by_process.items():
        result.extend(_holds_of(process, evs, problems))
    result.sort(key=lambda h: h.start)
    return result, problems


def _holds_of(process: str, evs: list[Event], problems: list[Violation]) -> list[Hold]:
    out: list[Hold] = []
    invoke: Event | None = None
    current: dict[str, float | int] | None = None
    renew_sent: float | None = None
    for e in evs:
        if e.op == "acquire_invoke":
            invoke = e
        elif e.op == "acquire_ok":
            if invoke is None or invoke.ttl is None or e.token is None:
                problems.append(Violation(kind="malformed", detail=f"{process}: ok without invoke"))
                continue
            current = {"token": e.token, "start": e.time, "lease_end": invoke.time + invoke.ttl}
        elif e.op == "renew_invoke":
            renew_sent = e.time
        elif e.op == "renew_ok" and current is not None and renew_sent is not None and e.ttl:
            current["lease_end"] = max(current["lease_end"], renew_sent + e.ttl)
        elif e.op in ("release_invoke", "lost", "died") and current is not None:
            out.append(_hold(process, current, e.time))
            current = None
    if current is not None:  # still held when the history ends
        out.append(_hold(process, current, float("inf")))
    return out


def _hold(process: str, current: dict[str, float | int], end: float) -> Hold:
    return Hold(
        process=process,
        token=int(current["token"]),
        start=float(current["start"]),
        end=end,
        lease_end=float(current["lease_end"]),
    )


def check_history(events: Iterable[Event]) -> list[Violation]:
    """Every violation of mutual exclusion, token order and fencing in ``events``."""
    events = list(events)
    found, violations = holds(events)
    for i, a in enumerate(found):
        for b in found[i + 1 :]:
            if b.start >= a.end:
                continue
            if b.start < a.lease_end:
                violations.append(
                    Violation(
                        kind="double-grant",
                        detail=(
                            f"{b.process} got token {b.token} at {b.start:.4f} while {a.process} held "
                            f"token {a.token} with its lease valid until {a.lease_end:.4f}"
                        ),
                    )
                )
    violations.extend(_token_violations(found))
    violations.extend(_fence_violations(events))
    return violations


def _token_violations(found: list[Hold]) -> list[Violation]:
    out: list[Violation] = []
    seen: dict[int, str] = {}
    for prev, nxt in itertools.pairwise(found):
        if nxt.token <= prev.token:
            out.append(
                Violation(
                    kind="token-order",
                    detail=(
                        f"token {nxt.token} ({nxt.process}) granted after token {prev.token} ({prev.process})"
                    ),
                )
            )
    for h in found:
        if h.token in seen:
            out.append(
                Violation(
                    kind="token-reuse",
                    detail=(f"token {h.token} granted to both {seen[h.token]} and {h.process}"),
                )
            )
        seen[h.token] = h.process
    return out


def _fence_violations(events: list[Event]) -> list[Violation]:
    out: list[Violation] = []
    highest = 0
    for e in sorted(events, key=lambda e: e.time):
        if e.op not in ("write_ok", "write_rejected") or e.token is None:
            continue
        if e.op == "write_ok":
            if e.token < highest:
                out.append(
                    Violation(
                        kind="stale-write-accepted",
                        detail=(
                            f"{e.process} wrote with token {e.token} after token {highest} was accepted"
                        ),
                    )
                )
            highest = max(highest, e.token)
        elif e.token >= highest:
            out.append(
                Violation(
                    kind="fresh-write-rejected",
                    detail=(
                        f"{e.process}'s write with token {e.token} rejected; highest accepted was {highest}"
                    ),
                )
            )
    return out


class Recorder:
    """Appends events of one process to a shared history file (one JSON line per event).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "history.jsonl"
    >>> rec = Recorder(path, process="w1")
    >>> rec.record("acquire_invoke", ttl=2.0)
    >>> [e.op for e in load_history(path)]
    ['acquire_invoke']
    """

    def __init__(self, path: str | Path, *, process: str) -> None:
        self.path = Path(path)
        self.process = process

    def record(
        self, op: Op, *, token: int | None = None, ttl: float | None = None, at: float | None = None
    ) -> None:
        event = Event(
            process=self.process,
            op=op,
            time=time.monotonic() if at is None else at,
            token=token,
            ttl=ttl,
        )
        line = (json.dumps(asdict(event)) + "\n").encode()
        # One write() per line on an O_APPEND file: lines from many processes never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def load_history(path: str | Path) -> list[Event]:
    events = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            events.append(Event(**json.loads(line)))
    return events
