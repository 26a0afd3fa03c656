"""The backup scheduler that ``gyro up`` runs: cron-driven jobs and drills, metrics, health.

Each job fires on its cron schedule (UTC) and runs in a worker thread, so the event loop and the
other services never wait for a backup. A job that has not succeeded within ``overdue_after``
(default two schedule intervals) turns the service's health to ``degraded`` and sets
``gyro_backup_overdue{job}`` to 1, so the monitor can alert on it. Last-success times survive
restarts in ``<data dir>/backup/state.json``. Backups take only shared repository locks, so a stale
lock left by a crash can never stop a scheduled backup.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cronsim import CronSim
from prometheus_client import Counter, Gauge

from gyroscope.backup._config import BackupConfig, JobConfig
from gyroscope.backup._errors import SnapshotNotFound
from gyroscope.backup._jobs import run_drill, run_job
from gyroscope.core import CollectorRegistry, Health, Service, ServiceSpec, atomic_write

__all__ = ["BackupScheduler", "build_services", "is_overdue", "seconds_until_next"]

log = logging.getLogger(__name__)


def seconds_until_next(expr: str, now: float) -> float:
    """Seconds from ``now`` (unix time) to the next time ``expr`` fires (UTC).

    >>> seconds_until_next("0 * * * *", 3600 * 5 + 10)
    3590.0
    """
    moment = datetime.fromtimestamp(now, UTC)
    return (next(CronSim(expr, moment)) - moment).total_seconds()


def is_overdue(last_success: float | None, since: float, now: float, overdue_after: float) -> bool:
    """True when nothing succeeded within ``overdue_after`` (counting from ``since`` before a first success).

    >>> is_overdue(None, since=0, now=100, overdue_after=50)
    True
    >>> is_overdue(90, since=0, now=100, overdue_after=50)
    False
    """
    return now - (last_success if last_success is not None else since) > overdue_after


T = TypeVar("T")


async def _in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run ``func`` in a daemon thread: unlike the loop's default executor, a backup still running
    at shutdown does not hold the daemon up (stopping mid-backup is safe: nothing is committed)."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return  # the awaiting task was cancelled before the thread started
        try:
            future.set_result(func(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=work, name="backup-job", daemon=True).start()
    return await asyncio.wrap_future(future)


@dataclass(slots=True)
class JobState:
    last_success: float | None = None
    last_error: str | None = None
    last_drill: float | None = None
    drill_ok: bool | None = None


class _Metrics:
    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        job = ["job"]
        self.last_success = Gauge(
            "gyro_backup_last_success_timestamp_seconds",
            "Last successful backup.",
            job,
            registry=reg,
        )
        self.duration = Gauge(
            "gyro_backup_last_duration_seconds", "Duration of the last backup.", job, registry=reg
        )
        self.bytes_total = Gauge(
            "gyro_backup_last_bytes", "Bytes in the last snapshot.", job, registry=reg
        )
        self.bytes_added = Gauge(
            "gyro_backup_last_bytes_added",
            "Bytes newly stored by the last backup.",
            job,
            registry=reg,
        )
        self.dedup = Gauge(
            "gyro_backup_last_dedup_ratio",
            "Snapshot bytes per stored byte, last backup.",
            job,
            registry=reg,
        )
        self.overdue = Gauge(
            "gyro_backup_overdue", "1 when no backup succeeded in time.", job, registry=reg
        )
        self.runs = Counter(
            "gyro_backup_runs", "Backup runs by result.", ["job", "result"], registry=reg
        )
        self.drill_ok = Gauge(
            "gyro_backup_drill_ok", "1 when the last restore drill passed.", job, registry=reg
        )


class BackupScheduler(Service):
    """Runs the ``backup:`` section's jobs on their cron schedules.

    >>> # BackupScheduler(config, data_dir=Path(".gyroscope")) under gyro up, or run_alone()
    """

    def __init__(
        self,
        config: BackupConfig,
        *,
        data_dir: Path,
        name: str = "backup",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(name)
        self.config = config
        self.state_path = data_dir / "backup" / "state.json"
        self.clock = clock
        self.sleep = sleep
        self.metrics = _Metrics()
        self.registry = self.metrics.registry
        self.states: dict[str, JobState] = {job.name: JobState() for job in config.jobs}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = 0.0

    async def start(self) -> None:
        self._started = self.clock()
        self._load_state()
        for job in self.config.jobs:
            self._tasks.append(
                asyncio.create_task(self._loop(job, self._backup), name=f"backup/{job.name}")
            )
            if job.drill is not None:
                self._tasks.append(
                    asyncio.create_task(self._loop(job, self._drill), name=f"drill/{job.name}")
                )
        self._refresh_overdue()

    async def stop(self, grace: float = 5.0) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        self._tasks.clear()

    def health(self) -> Health:
        overdue = self._refresh_overdue()
        failed_drills = [n for n, s in self.states.items() if s.drill_ok is False]
        problems = [f"{n}: no successful backup in time" for n in overdue]
        problems += [f"{n}: last restore drill failed" for n in failed_drills]
        data: dict[str, Any] = {"jobs": {n: asdict(s) for n, s in self.states.items()}}
        if problems:
            return Health(name=self.name, status="degraded", detail="; ".join(problems), data=data)
        return Health(name=self.name, status="ok", detail=f"{len(self.states)} jobs", data=data)

    def _refresh_overdue(self) -> list[str]:
        now = self.clock()
        late = []
        for job in self.config.jobs:
            late_now = is_overdue(
                self.states[job.name].last_success, self._started, now, job.overdue_seconds()
            )
            self.metrics.overdue.labels(job.name).set(int(late_now))
            if late_now:
                late.append(job.name)
        return late

    async def _loop(self, job: JobConfig, action: Callable[[JobConfig], Awaitable[None]]) -> None:
        expr = job.schedule if action == self._backup or job.drill is None else job.drill.schedule
        while True:
            await self.sleep(max(0.0, seconds_until_next(expr, self.clock())))
            await action(job)

    async def _backup(self, job: JobConfig) -> None:
        state = self.states[job.name]
        started = time.monotonic()
        try:
            result = await _in_thread(run_job, self.config, job)
        except Exception as exc:  # a failed run is recorded and retried at the next fire time
            state.last_error = str(exc)
            self.metrics.runs.labels(job.name, "error").inc()
            log.error("backup job %s failed: %s", job.name, exc)
        else:
            stats = result.stats
            state.last_success, state.last_error = self.clock(), None
            m = self.metrics
            m.runs.labels(job.name, "warning" if stats.warnings else "ok").inc()
            m.last_success.labels(job.name).set(state.last_success)
            m.duration.labels(job.name).set(time.monotonic() - started)
            m.bytes_total.labels(job.name).set(stats.bytes_total)
            m.bytes_added.labels(job.name).set(stats.bytes_stored)
            m.dedup.labels(job.name).set(stats.dedup_ratio)
            log.info("backup job %s: snapshot %s", job.name, result.snapshot.short_id)
        self._save_state()
        self._refresh_overdue()

    async def _drill(self, job: JobConfig) -> None:
        state = self.states[job.name]
        try:
            result = await _in_thread(run_drill, self.config, job)
        except SnapshotNotFound:
            log.info("restore drill %s: no snapshot yet", job.name)
            return
        except Exception as exc:
            state.drill_ok = False
            log.error("restore drill %s failed: %s", job.name, exc)
        else:
            state.drill_ok = result.ok
            if not result.ok:
                log.error("restore drill %s: %s", job.name, "; ".join(result.problems[:5]))
        state.last_drill = self.clock()
        self.metrics.drill_ok.labels(job.name).set(int(bool(state.drill_ok)))
        self._save_state()

    def _load_state(self) -> None:
        try:
            saved = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return
        for name, doc in saved.items():
            if name in self.states and isinstance(doc, dict):
                self.states[name] = JobState(
                    **{
                        k: doc.get(k)
                        for k in ("last_success", "last_error", "last_drill", "drill_ok")
                    }
                )
                if self.states[name].last_success:
                    self.metrics.last_success.labels(name).set(self.states[name].last_success or 0)

    def _save_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(
            self.state_path, json.dumps({n: asdict(s) for n, s in self.states.items()}).encode()
        )


def build_services(section: BackupConfig, data_dir: Path) -> list[ServiceSpec]:
    """The scheduler ``gyro up`` runs for the ``backup:`` section (none when no job is defined)."""
    if not section.jobs:
        return []
    return [
        ServiceSpec(
            name="backup",
            config=section,
            factory=lambda: BackupScheduler(section, data_dir=data_dir),
        )
    ]
