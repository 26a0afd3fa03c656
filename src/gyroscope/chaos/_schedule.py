"""Process faults on a schedule (``gyro chaos run``): restart every N s, pause every N s, kill once.

``next_event`` is the decision, pure over the times it is given; ``run_schedule`` is the thin loop
that sleeps until then and acts on a ``ManagedProcess``.

>>> s = Schedule(restart_every=10.0, duration=25.0)
>>> next_event(s, Progress(started=0.0, last_restart=0.0, last_pause=0.0))
(10.0, 'restart')
>>> next_event(s, Progress(started=0.0, last_restart=20.0, last_pause=0.0))
(25.0, 'stop')
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gyroscope.chaos._managed import ManagedProcess
from gyroscope.errors import ChaosError

__all__ = ["Progress", "Schedule", "next_event", "parse_duration", "run_schedule"]

Action = Literal["restart", "pause", "kill", "stop"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``"500ms"``, ``"10s"``, ``"2m"``, ``"1h"`` or plain seconds, to seconds.

    >>> parse_duration("500ms"), parse_duration("2m"), parse_duration("1.5")
    (0.5, 120.0, 1.5)
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 500ms, 10s, 2m or 1.5, got {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When to inject which process fault, in seconds from the start (None = never)."""

    restart_every: float | None = None
    pause_every: float | None = None
    pause_for: float = 1.0
    kill_after: float | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        for name in ("restart_every", "pause_every", "kill_after", "duration"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ChaosError(f"--{name.replace('_', '-')} must be more than 0, got {value:g}")
        if self.pause_every is not None and not 0 < self.pause_for < self.pause_every:
            raise ChaosError(
                f"--pause-for ({self.pause_for:g} s) must be more than 0 and less than "
                f"--pause-every ({self.pause_every:g} s)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """What has happened so far (monotonic times)."""

    started: float
    last_restart: float
    last_pause: float


def next_event(schedule: Schedule, progress: Progress) -> tuple[float, Action] | None:
    """The next fault due (time, action), or None when the schedule holds no more."""
    due: list[tuple[float, Action]] = []
    if schedule.duration is not None:
        due.append((progress.started + schedule.duration, "stop"))
    if schedule.kill_after is not None:
        due.append((progress.started + schedule.kill_after, "kill"))
    if schedule.restart_every is not None:
        due.append((progress.last_restart + schedule.restart_every, "restart"))
    if schedule.pause_every is not None:
        due.append((progress.last_pause + schedule.pause_every, "pause"))
    return min(due, default=None, key=lambda item: item[0])


def run_schedule(
    argv: list[str],
    schedule: Schedule,
    report: Callable[[dict[str, Any]], None],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run ``argv`` under ``schedule``; return its exit code (0 when we ended it on purpose)."""
    with ManagedProcess(argv) as proc:
        now = clock()
        progress = Progress(started=now, last_restart=now, last_pause=now)
        report({"event": "started", "pid": proc.pid})
        while True:
            planned = next_event(schedule, progress)
            while proc.running and (planned is None or clock() < planned[0]):
                time.sleep(0.05 if planned is None else min(0.05, max(0.0, planned[0] - clock())))
            if not proc.running:
                code = proc.returncode or 0
                report({"event": "exited", "pid": proc.pid, "code": code})
                return code
            assert planned is not None
            when, action = planned
            if action == "stop":
                proc.terminate()
                report({"event": "stopped", "pid": proc.pid})
                return 0
            if action == "kill":
                code = proc.kill()
                report({"event": "killed", "pid": proc.pid, "signal": "SIGKILL", "code": code})
                return 0
            if action == "restart":
                old = proc.pid
                report({"event": "restarted", "old_pid": old, "pid": proc.restart()})
                progress = Progress(started=progress.started, last_restart=when, last_pause=when)
            else:
                proc.pause(schedule.pause_for)
                report({"event": "paused", "pid": proc.pid, "seconds": schedule.pause_for})
                progress = Progress(
                    started=progress.started, last_restart=progress.last_restart, last_pause=when
                )
