"""The data directory: one per daemon, guarded by an exclusive lock file.

Every write that must survive a crash goes through ``atomic_write``: the bytes go to a temporary file
in the same directory, are fsynced, renamed over the target, and the directory is fsynced, so a reader
sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from pathlib import Path
from types import TracebackType

from gyroscope.errors import DataDirError, DataDirLockedError, FileWriteError

__all__ = ["DataDir", "atomic_write", "create_new", "default_data_dir"]

DEFAULT_DATA_DIR = ".gyroscope"


def default_data_dir() -> Path:
    """``$GYRO_DATA_DIR`` when set, else ``./.gyroscope``."""
    return Path(os.environ.get("GYRO_DATA_DIR") or DEFAULT_DATA_DIR)


def atomic_write(path: Path, data: bytes | bytearray | memoryview, *, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    The temporary file has an unpredictable name and is created exclusively without following a
    symlink, so nobody sharing the directory can plant one to redirect the write. A replaced file
    keeps its permissions; a new one gets ``mode`` (less the umask). Failures raise
    ``FileWriteError`` (an ``OSError`` too), one clear line.
    """
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    try:
        try:
            kept: int | None = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            kept = None
        _write_exclusive(tmp, data, mode, kept)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, FileWriteError):
            raise FileWriteError(path, exc) from exc
        raise


def create_new(path: Path, data: bytes | bytearray | memoryview, *, mode: int = 0o600) -> bool:
    """Create ``path`` holding ``data`` unless something is there already (then False): the
    create-only twin of ``atomic_write``. The bytes go to an exclusive temporary file, are fsynced
    and hard-linked to ``path``, which the kernel refuses over any existing name (a dangling
    symlink included); the directory is fsynced. Of several processes racing, exactly one wins.
    Failures other than "exists" raise ``FileWriteError``.
    """
    tmp = path.with_name(f".{path.name}.new-{secrets.token_hex(8)}")
    try:
        _write_exclusive(tmp, data, mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        _fsync_dir(path.parent)
        return True
    except OSError as exc:
        raise FileWriteError(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _write_exclusive(
    tmp: Path, data: bytes | bytearray | memoryview, mode: int, chmod: int | None = None
) -> None:
    """Create ``tmp`` (never an existing name, never through a symlink), write all of ``data``
    and fsync it: the temporary file both ``atomic_write`` and ``create_new`` then put in place."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        if chmod is not None:
            os.fchmod(fd, chmod)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DataDir:
    """A data directory held exclusively by one daemon.

    >>> import tempfile
    >>> with DataDir(Path(tempfile.mkdtemp())) as d:
    ...     (d.path / "demo").is_dir() or d.subdir("demo").is_dir()
    True
    """

    LOCK_NAME = "gyroscope.lock"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def open(self) -> DataDir:
        """Create the directory if needed and take its lock; raise if another daemon has it."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / self.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataDirError(
                f"cannot use data directory: {exc.strerror} (choose another with --data-dir)",
                path=self.path,
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLockedError(
                f"already in use by another gyroscope daemon (pid {holder}); "
                "stop it or choose another --data-dir",
                path=self.path,
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return self

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def subdir(self, name: str) -> Path:
        """The directory a subsystem keeps its data in, created on first use."""
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def __enter__(self) -> DataDir:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
