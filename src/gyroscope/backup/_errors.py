"""The errors of the backup subsystem, all under ``gyroscope.errors.BackupError``.

::

    BackupError
     ├── RepositoryError              the repository cannot be used as asked
     │    ├── RepositoryNotFound      no repository at that location
     │    ├── RepositoryExists        init over an existing repository
     │    ├── RepositoryVersionError  written by a newer gyroscope
     │    ├── WrongPasswordError      no key opens with the password / key file given
     │    ├── CorruptDataError        a pack, index or snapshot fails its checksum
     │    ├── MissingDataError        an indexed pack or a referenced chunk is gone
     │    ├── AppendOnlyError         delete or overwrite refused by an append-only repository
     │    ├── RepositoryLockedError   prune refused while backups run (or another prune)
     │    ├── StorageFullError        the backend has no space left
     │    └── BackendError            the backend (disk, SFTP) failed
     ├── SourceError                  a source (path, SQLite, PostgreSQL, Redis) cannot be read
     └── SnapshotNotFound             no snapshot matches the id / time given
"""

from __future__ import annotations

from gyroscope.errors import BackupError

__all__ = [
    "AppendOnlyError",
    "BackendError",
    "CorruptDataError",
    "MissingDataError",
    "RepositoryError",
    "RepositoryExists",
    "RepositoryLockedError",
    "RepositoryNotFound",
    "RepositoryVersionError",
    "SnapshotNotFound",
    "SourceError",
    "StorageFullError",
    "WrongPasswordError",
]


class RepositoryError(BackupError):
    """The repository at ``location`` cannot be used as asked."""

    def __init__(self, message: str, *, location: str) -> None:
        self.location = location
        super().__init__(f"{location}: {message}")


class RepositoryNotFound(RepositoryError):
    """No repository at ``location`` (run ``gyro backup init`` first)."""


class RepositoryExists(RepositoryError):
    """``init`` was pointed at a location that already holds a repository."""


class RepositoryVersionError(RepositoryError):
    """The repository was written by a newer format than this gyroscope reads."""


class WrongPasswordError(RepositoryError):
    """No key of the repository opens with the password or key file given."""


class CorruptDataError(RepositoryError):
    """A stored object failed its authentication or hash check; names the object."""


class MissingDataError(RepositoryError):
    """An indexed pack file or a chunk referenced by a snapshot is missing."""


class AppendOnlyError(RepositoryError):
    """The repository is append-only: it refuses to delete or overwrite."""


class RepositoryLockedError(RepositoryError):
    """An operation that needs exclusivity (prune) found live locks."""

    retryable = True


class StorageFullError(RepositoryError):
    """The backend ran out of space; what was committed before stays valid."""

    retryable = True


class BackendError(RepositoryError):
    """The storage backend failed (I/O error, SFTP connection)."""

    retryable = True


class SourceError(BackupError):
    """A backup source cannot be read."""

    def __init__(self, message: str, *, source: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


class SnapshotNotFound(BackupError):
    """No snapshot matches what was asked for."""
