"""Backup and recovery: deduplicated, compressed, encrypted snapshots with verified restores.

>>> import tempfile, pathlib
>>> from gyroscope.backup import KdfParams, Repository, Secret, backup, check, restore
>>> src = pathlib.Path(tempfile.mkdtemp()); (src / "a.txt").write_text("hello")
5
>>> repo = Repository.init(tempfile.mkdtemp() + "/repo", Secret(password=b"pw"),
...                        kdf=KdfParams(time=1, memory_kib=8, parallelism=1))
>>> snap = backup(repo, [str(src)]).snapshot
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> restore(repo, snap, out).files
1
>>> check(repo, read_data=True).ok
True
"""

import importlib
from typing import TYPE_CHECKING, Any

from gyroscope.errors import BackupError

__all__ = [
    "FORMAT_VERSION",
    "AppendOnly",
    "AppendOnlyError",
    "Backend",
    "BackendError",
    "BackupConfig",
    "BackupError",
    "BackupResult",
    "BackupScheduler",
    "BackupStats",
    "CheckReport",
    "CorruptDataError",
    "DrillConfig",
    "DrillResult",
    "JobConfig",
    "KdfParams",
    "LocalBackend",
    "MissingDataError",
    "ObjectInfo",
    "PruneStats",
    "RepoLock",
    "Repository",
    "RepositoryConfig",
    "RepositoryError",
    "RepositoryExists",
    "RepositoryLockedError",
    "RepositoryNotFound",
    "RepositoryVersionError",
    "RestoreStats",
    "RetentionConfig",
    "RetentionPolicy",
    "Secret",
    "Snapshot",
    "SnapshotNotFound",
    "SnapshotRef",
    "SourceConfig",
    "SourceError",
    "StorageFullError",
    "Walk",
    "WrongPasswordError",
    "apply_retention",
    "backup",
    "build_services",
    "check",
    "dump",
    "find_snapshot",
    "forget",
    "is_overdue",
    "list_snapshots",
    "live_locks",
    "open_backend",
    "prune",
    "remove_stale_locks",
    "restore",
    "restore_drill",
    "run_drill",
    "run_job",
    "seconds_until_next",
]


# Every name loads on first use, with only the modules it needs: `gyro backup create` runs from
# cron, often, and an incremental run that finds little changed is short enough that its imports
# showed in its time. It starts the key derivation (_kdf) and the listing of the sources (_walk)
# first, then imports the rest while both run; the scheduler with its config models and job runner
# (pydantic, the HTTP kernel) never loads for a backup.
_LAZY = {
    "BackupResult": "_archiver",
    "BackupStats": "_archiver",
    "backup": "_archiver",
    "AppendOnly": "_backend",
    "Backend": "_backend",
    "LocalBackend": "_backend",
    "ObjectInfo": "_backend",
    "open_backend": "_backend",
    "KdfParams": "_crypto",
    "AppendOnlyError": "_errors",
    "BackendError": "_errors",
    "CorruptDataError": "_errors",
    "MissingDataError": "_errors",
    "RepositoryError": "_errors",
    "RepositoryExists": "_errors",
    "RepositoryLockedError": "_errors",
    "RepositoryNotFound": "_errors",
    "RepositoryVersionError": "_errors",
    "SnapshotNotFound": "_errors",
    "SourceError": "_errors",
    "StorageFullError": "_errors",
    "WrongPasswordError": "_errors",
    "RepoLock": "_locks",
    "live_locks": "_locks",
    "remove_stale_locks": "_locks",
    "FORMAT_VERSION": "_repo",
    "Repository": "_repo",
    "Secret": "_repo",
    "Snapshot": "_tree",
    "find_snapshot": "_tree",
    "list_snapshots": "_tree",
    "Walk": "_walk",
    "CheckReport": "_check",
    "check": "_check",
    "DrillResult": "_drill",
    "restore_drill": "_drill",
    "PruneStats": "_prune",
    "forget": "_prune",
    "prune": "_prune",
    "RestoreStats": "_restore",
    "dump": "_restore",
    "restore": "_restore",
    "RetentionPolicy": "_retention",
    "SnapshotRef": "_retention",
    "apply_retention": "_retention",
    "BackupConfig": "_config",
    "DrillConfig": "_config",
    "JobConfig": "_config",
    "RepositoryConfig": "_config",
    "RetentionConfig": "_config",
    "SourceConfig": "_config",
    "run_drill": "_jobs",
    "run_job": "_jobs",
    "BackupScheduler": "_service",
    "build_services": "_service",
    "is_overdue": "_service",
    "seconds_until_next": "_service",
}

if TYPE_CHECKING:
    from gyroscope.backup._archiver import BackupResult, BackupStats, backup
    from gyroscope.backup._backend import (
        AppendOnly,
        Backend,
        LocalBackend,
        ObjectInfo,
        open_backend,
    )
    from gyroscope.backup._check import CheckReport, check
    from gyroscope.backup._config import (
        BackupConfig,
        DrillConfig,
        JobConfig,
        RepositoryConfig,
        RetentionConfig,
        SourceConfig,
    )
    from gyroscope.backup._crypto import KdfParams
    from gyroscope.backup._drill import DrillResult, restore_drill
    from gyroscope.backup._errors import (
        AppendOnlyError,
        BackendError,
        CorruptDataError,
        MissingDataError,
        RepositoryError,
        RepositoryExists,
        RepositoryLockedError,
        RepositoryNotFound,
        RepositoryVersionError,
        SnapshotNotFound,
        SourceError,
        StorageFullError,
        WrongPasswordError,
    )
    from gyroscope.backup._jobs import run_drill, run_job
    from gyroscope.backup._locks import RepoLock, live_locks, remove_stale_locks
    from gyroscope.backup._prune import PruneStats, forget, prune
    from gyroscope.backup._repo import FORMAT_VERSION, Repository, Secret
    from gyroscope.backup._restore import RestoreStats, dump, restore
    from gyroscope.backup._retention import RetentionPolicy, SnapshotRef, apply_retention
    from gyroscope.backup._service import (
        BackupScheduler,
        build_services,
        is_overdue,
        seconds_until_next,
    )
    from gyroscope.backup._tree import Snapshot, find_snapshot, list_snapshots
    from gyroscope.backup._walk import Walk


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gyroscope.backup' has no attribute {name!r}")
    return getattr(importlib.import_module(f"gyroscope.backup.{module}"), name)
