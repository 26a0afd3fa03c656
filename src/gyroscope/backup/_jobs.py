"""Running one configured job: open the repository, dump database sources, back up, apply retention.

This is what the scheduler runs in a worker thread and what ``gyro backup run JOB`` runs now.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from gyroscope.backup._archiver import BackupResult, backup
from gyroscope.backup._config import BackupConfig, JobConfig, RepositoryConfig, parse_duration
from gyroscope.backup._drill import DrillResult, restore_drill
from gyroscope.backup._errors import (
    AppendOnlyError,
    RepositoryExists,
    RepositoryLockedError,
    RepositoryNotFound,
)
from gyroscope.backup._prune import forget, prune
from gyroscope.backup._repo import Repository, Secret
from gyroscope.backup._retention import RetentionPolicy
from gyroscope.backup._sources import (
    PostgresSource,
    RedisSource,
    Source,
    SqliteSource,
    dump_sources,
)
from gyroscope.errors import BackupError

__all__ = ["open_repository", "run_drill", "run_job"]

log = logging.getLogger(__name__)


def _secret(cfg: RepositoryConfig) -> Secret:
    if cfg.key_file is not None:
        return Secret(key_file=cfg.key_file)
    if cfg.password_file is not None:
        try:
            lines = cfg.password_file.read_text().splitlines()
        except OSError as exc:
            raise BackupError(
                f"{cfg.password_file}: cannot read password file: {exc.strerror}"
            ) from None
        return Secret(password=(lines[0] if lines else "").encode())
    assert cfg.password is not None  # the config model guarantees exactly one secret
    return Secret(password=cfg.password.get_secret_value().encode())


def open_repository(config: BackupConfig, name: str) -> Repository:
    cfg = config.repository(name)
    secret = _secret(cfg)
    try:
        return Repository.open(cfg.location, secret, append_only=cfg.append_only)
    except RepositoryNotFound:
        if not cfg.init_if_missing:
            raise
    log.info("creating backup repository %s at %s (init_if_missing)", cfg.name, cfg.location)
    try:
        return Repository.init(cfg.location, secret, append_only=cfg.append_only)
    except RepositoryExists:
        # Created meanwhile: by this job's drill firing in the same minute, or by another host's
        # first run. Init creates the config exclusively, so exactly one of them made it.
        return Repository.open(cfg.location, secret, append_only=cfg.append_only)


def _sources(job: JobConfig) -> tuple[list[str], list[Source]]:
    paths: list[str] = []
    dbs: list[Source] = []
    for src in job.sources:
        name = src.name or ""
        if src.type == "files":
            paths += src.paths
        elif src.type == "sqlite":
            dbs.append(SqliteSource(name, src.path or ""))
        elif src.type == "postgres" and src.dsn is not None:
            dbs.append(PostgresSource(name, src.dsn.get_secret_value()))
        elif src.url is not None:
            dbs.append(RedisSource(name, src.url.get_secret_value()))
    return paths, dbs


def _policy(job: JobConfig) -> RetentionPolicy | None:
    r = job.retention
    if r is None:
        return None
    within: timedelta | None = parse_duration(r.within) if r.within else None
    return RetentionPolicy(
        last=r.last,
        hourly=r.hourly,
        daily=r.daily,
        weekly=r.weekly,
        monthly=r.monthly,
        yearly=r.yearly,
        within=within,
        tags=frozenset(r.tags),
    )


def run_job(config: BackupConfig, job: JobConfig) -> BackupResult:
    """Back up ``job``'s sources, then forget/prune by its retention (a locked prune waits a run)."""
    repo = open_repository(config, job.repository)
    try:
        paths, dbs = _sources(job)
        with dump_sources(dbs) as extra:
            result = backup(repo, paths, tags=job.tags, extra=extra, threads=job.threads)
        policy = _policy(job)
        if policy is not None and not policy.empty and job.retention is not None:
            try:
                forget(repo, policy, paths=result.snapshot.paths)
                if job.retention.prune:
                    prune(repo, min_pack_age=job.retention.min_pack_age)
            except (RepositoryLockedError, AppendOnlyError) as exc:
                log.warning("job %s: retention skipped this run: %s", job.name, exc)
        return result
    finally:
        repo.close()


def run_drill(config: BackupConfig, job: JobConfig, workdir: Path | None = None) -> DrillResult:
    repo = open_repository(config, job.repository)
    try:
        return restore_drill(repo, "latest", workdir=workdir)
    finally:
        repo.close()
