"""The ``backup:`` section of ``gyroscope.yaml``: repositories, jobs (sources, cron, retention, drills).

>>> cfg = BackupConfig.model_validate({
...     "repositories": [{"name": "local", "location": "/srv/backups/repo", "password": "pw"}],
...     "jobs": [{"name": "models", "repository": "local", "schedule": "0 3 * * *",
...               "sources": [{"type": "files", "paths": ["/var/lib/models"]}],
...               "retention": {"daily": 7, "weekly": 4}}]})
>>> cfg.jobs[0].overdue_seconds()
172800.0
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cronsim import CronSim, CronSimError
from pydantic import Field, SecretStr, field_validator, model_validator

from gyroscope.core import StrictModel

__all__ = [
    "BackupConfig",
    "DrillConfig",
    "JobConfig",
    "RepositoryConfig",
    "RetentionConfig",
    "SourceConfig",
    "cron_interval",
    "parse_duration",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> timedelta:
    """``90s``, ``15m``, ``36h``, ``7d``, ``2w``.

    >>> parse_duration("36h").total_seconds()
    129600.0
    """
    unit = value[-1:]
    if unit not in _UNITS or not value[:-1].isdigit():
        raise ValueError(f"expected a duration like 15m, 36h or 7d, got {value!r}")
    return timedelta(seconds=int(value[:-1]) * _UNITS[unit])


def _check_cron(value: str) -> str:
    try:
        next(CronSim(value, datetime(2026, 1, 1, tzinfo=UTC)))
    except (CronSimError, StopIteration) as exc:
        raise ValueError(f"expected a cron expression like '0 3 * * *': {exc}") from None
    return value


def cron_interval(expr: str, after: datetime) -> timedelta:
    """The gap between the next two times ``expr`` fires after ``after``."""
    it = CronSim(expr, after)
    first = next(it)
    return next(it) - first


class RepositoryConfig(StrictModel):
    """Where snapshots go and how to unlock them (exactly one of password, password_file, key_file)."""

    name: str
    location: str
    password: SecretStr | None = None
    password_file: Path | None = None
    key_file: Path | None = None
    append_only: bool = False
    # create the repository (with this password) the first time a job finds none there
    init_if_missing: bool = False

    @model_validator(mode="after")
    def _one_secret(self) -> RepositoryConfig:
        given = [
            self.password is not None,
            self.password_file is not None,
            self.key_file is not None,
        ]
        if sum(given) != 1:
            raise ValueError(
                "give exactly one of password (e.g. ${GYRO_BACKUP_PASSWORD}), password_file, key_file"
            )
        if self.init_if_missing and self.key_file is not None:
            raise ValueError("init_if_missing needs a password or password_file (not key_file)")
        return self


class SourceConfig(StrictModel):
    """One thing to back up: ``files`` (paths), ``sqlite`` (path), ``postgres`` (dsn), ``redis`` (url)."""

    type: Literal["files", "sqlite", "postgres", "redis"]
    paths: list[str] = Field(default_factory=list)
    name: str | None = None
    path: str | None = None
    dsn: SecretStr | None = None
    url: SecretStr | None = None

    @model_validator(mode="after")
    def _fields_for_type(self) -> SourceConfig:
        need = {"files": "paths", "sqlite": "path", "postgres": "dsn", "redis": "url"}[self.type]
        if not getattr(self, need):
            raise ValueError(f"a {self.type} source needs {need}")
        if self.type != "files" and not self.name:
            raise ValueError(f"a {self.type} source needs a name (the file name in the snapshot)")
        return self


class RetentionConfig(StrictModel):
    """What to keep after each backup (forget), then prune unless ``prune: false``."""

    last: int = Field(default=0, ge=0)
    hourly: int = Field(default=0, ge=0)
    daily: int = Field(default=0, ge=0)
    weekly: int = Field(default=0, ge=0)
    monthly: int = Field(default=0, ge=0)
    yearly: int = Field(default=0, ge=0)
    within: str | None = None
    tags: list[str] = Field(default_factory=list)
    prune: bool = True
    min_pack_age: float = Field(default=3600.0, ge=0)

    @field_validator("within")
    @classmethod
    def _within(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class DrillConfig(StrictModel):
    """A scheduled restore drill: restore the latest snapshot into a temp dir and compare."""

    schedule: str

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _check_cron(value)


class JobConfig(StrictModel):
    """A scheduled backup: sources into a repository on a cron schedule."""

    name: str
    repository: str
    schedule: str
    sources: list[SourceConfig] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    retention: RetentionConfig | None = None
    drill: DrillConfig | None = None
    overdue_after: str | None = None
    threads: int = Field(default=max(2, min(8, os.cpu_count() or 2)), ge=1, le=64)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _check_cron(value)

    @field_validator("overdue_after")
    @classmethod
    def _overdue(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    def overdue_seconds(self) -> float:
        """After how long without a success the job is overdue (default: two schedule intervals)."""
        if self.overdue_after is not None:
            return parse_duration(self.overdue_after).total_seconds()
        return 2 * cron_interval(self.schedule, datetime(2026, 1, 1, tzinfo=UTC)).total_seconds()


class BackupConfig(StrictModel):
    """The ``backup:`` section."""

    repositories: list[RepositoryConfig] = Field(min_length=1)
    jobs: list[JobConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names(self) -> BackupConfig:
        repos = [r.name for r in self.repositories]
        if len(set(repos)) != len(repos):
            raise ValueError("repository names must be unique")
        jobs = [j.name for j in self.jobs]
        if len(set(jobs)) != len(jobs):
            raise ValueError("job names must be unique")
        for job in self.jobs:
            if job.repository not in repos:
                raise ValueError(
                    f"job {job.name!r} names repository {job.repository!r}, which is not defined"
                )
        return self

    def repository(self, name: str) -> RepositoryConfig:
        return next(r for r in self.repositories if r.name == name)
