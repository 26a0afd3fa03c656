"""Backup and recovery: deduplicated, compressed, encrypted snapshots with verified restores.

>>> import tempfile, pathlib
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

from gyroscope.backup._archiver import BackupResult, BackupStats, backup
from gyroscope.backup._backend import AppendOnly, Backend, LocalBackend, ObjectInfo, open_backend
from gyroscope.backup._check import CheckReport, check
from gyroscope.backup._crypto import KdfParams
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
from gyroscope.backup._locks import RepoLock, live_locks, remove_stale_locks
from gyroscope.backup._prune import PruneStats, forget, prune
from gyroscope.backup._repo import FORMAT_VERSION, Repository, Secret
from gyroscope.backup._restore import RestoreStats, dump, restore
from gyroscope.backup._retention import RetentionPolicy, SnapshotRef, apply_retention
from gyroscope.backup._tree import Snapshot, find_snapshot, list_snapshots
from gyroscope.errors import BackupError

__all__ = [
    "FORMAT_VERSION",
    "AppendOnly",
    "AppendOnlyError",
    "Backend",
    "BackendError",
    "BackupError",
    "BackupResult",
    "BackupStats",
    "CheckReport",
    "CorruptDataError",
    "KdfParams",
    "LocalBackend",
    "MissingDataError",
    "ObjectInfo",
    "PruneStats",
    "RepoLock",
    "Repository",
    "RepositoryError",
    "RepositoryExists",
    "RepositoryLockedError",
    "RepositoryNotFound",
    "RepositoryVersionError",
    "RestoreStats",
    "RetentionPolicy",
    "Secret",
    "Snapshot",
    "SnapshotNotFound",
    "SnapshotRef",
    "SourceError",
    "StorageFullError",
    "WrongPasswordError",
    "apply_retention",
    "backup",
    "check",
    "dump",
    "find_snapshot",
    "forget",
    "list_snapshots",
    "live_locks",
    "open_backend",
    "prune",
    "remove_stale_locks",
    "restore",
]
