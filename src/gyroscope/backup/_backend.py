"""Where a repository's files live: a small protocol and the local-directory backend.

A backend stores whole named objects (``config``, ``keys/<id>``, ``data/ab/<id>``, ``index/<id>``,
``snapshots/<id>``, ``locks/<id>``). Every ``write`` is atomic: the object appears whole or not at
all (temporary name, fsync, rename, fsync of the directory), so a crash or a full disk never leaves a
half object under a real name. ``AppendOnly`` wraps any backend and refuses deletes and overwrites
(except of lock files, which must be removable for the repository to stay usable).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gyroscope.backup._errors import (
    AppendOnlyError,
    BackendError,
    MissingDataError,
    StorageFullError,
)
from gyroscope.core import atomic_write, create_new

__all__ = ["AppendOnly", "Backend", "LocalBackend", "ObjectInfo", "open_backend"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object: its name relative to the repository root, size and modification time."""

    name: str
    size: int
    mtime: float


class Backend(Protocol):
    """The few atomic operations a repository needs from its storage."""

    location: str

    def write(self, name: str, data: bytes | bytearray | memoryview) -> None: ...
    def create(self, name: str, data: bytes | bytearray | memoryview) -> bool: ...
    def read(self, name: str) -> bytes: ...
    def read_range(self, name: str, offset: int, length: int) -> bytes: ...
    def exists(self, name: str) -> bool: ...
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Committed objects under ``prefix``; never a writer's temporary (a name starting with
        ".", renamed or linked into place when complete)."""
        ...

    def delete(self, name: str) -> None: ...
    def close(self) -> None: ...


def map_os_error(exc: OSError, location: str, name: str) -> Exception:
    """Turn an ``OSError`` into the backup error a user can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFullError(
            f"no space left while writing {name}; free space and rerun "
            "(committed snapshots are intact)",
            location=location,
        )
    if isinstance(exc, FileNotFoundError):
        return MissingDataError(f"{name} is missing", location=location)
    return BackendError(f"{name}: {exc.strerror or exc}", location=location)


class LocalBackend:
    """A repository in a local directory.

    >>> import tempfile
    >>> b = LocalBackend(Path(tempfile.mkdtemp()))
    >>> b.write("keys/a", b"x"); b.read("keys/a")
    b'x'
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)
        self._dirs: set[Path] = set()
        self._dirs_lock = threading.Lock()
        self._fds = _FdCache()

    def _path(self, name: str) -> Path:
        return self.root / name

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._dirs:
            return
        directory.mkdir(parents=True, exist_ok=True)
        with self._dirs_lock:
            self._dirs.add(directory)

    def write(self, name: str, data: bytes | bytearray | memoryview) -> None:
        path = self._path(name)
        try:
            self._ensure_dir(path.parent)
            atomic_write(path, data, mode=0o600)  # temporary, fsync, rename, directory fsync
        except OSError as exc:
            raise map_os_error(exc, self.location, name) from exc

    def create(self, name: str, data: bytes | bytearray | memoryview) -> bool:
        """Store ``data`` as ``name`` unless it exists (then False); see ``core.create_new``."""
        path = self._path(name)
        try:
            self._ensure_dir(path.parent)
            return create_new(path, data, mode=0o600)
        except OSError as exc:
            raise map_os_error(exc, self.location, name) from exc

    def read(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except OSError as exc:
            raise map_os_error(exc, self.location, name) from exc

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            data = os.pread(self._fds.get(self._path(name)), length, offset)
        except OSError as exc:
            raise map_os_error(exc, self.location, name) from exc
        if len(data) != length:
            raise MissingDataError(
                f"{name} is truncated (wanted {length} bytes at {offset})", location=self.location
            )
        return data

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return list(self._walk(base))

    def _walk(self, directory: Path) -> Iterator[ObjectInfo]:
        with os.scandir(directory) as entries:
            found = list(entries)
        for entry in found:
            if entry.name.startswith("."):
                continue  # another writer's temporary, not an object yet
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    yield ObjectInfo(
                        os.path.relpath(entry.path, self.root), st.st_size, st.st_mtime
                    )
            except FileNotFoundError:
                continue  # a temporary file renamed or removed while we listed

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise map_os_error(exc, self.location, name) from exc

    def close(self) -> None:
        self._fds.clear()


class _Fds:
    """One thread's open pack files (most recently used last); closed when the thread ends."""

    def __init__(self) -> None:
        self.fds: OrderedDict[Path, int] = OrderedDict()

    def __del__(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)


class _FdCache:
    """Per-thread caches of read-only descriptors, so restoring many small files from one pack does
    not open and close the pack once per chunk. Per thread, so no descriptor is ever closed while
    another thread reads from it. Packs are immutable, so a cached descriptor never reads stale data."""

    SIZE = 32

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, path: Path) -> int:
        cache: _Fds | None = getattr(self._local, "fds", None)
        if cache is None:
            cache = self._local.fds = _Fds()
        fd = cache.fds.get(path)
        if fd is not None:
            cache.fds.move_to_end(path)
            return fd
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        cache.fds[path] = fd
        if len(cache.fds) > self.SIZE:
            os.close(cache.fds.popitem(last=False)[1])
        return fd

    def clear(self) -> None:
        cache: _Fds | None = getattr(self._local, "fds", None)
        if cache is not None:
            for fd in cache.fds.values():
                os.close(fd)
            cache.fds.clear()


class AppendOnly:
    """Wraps a backend so that nothing already stored can be deleted or replaced.

    Ransomware (or a mistaken prune) running with the backup's own credentials can then add
    snapshots but not destroy old ones. Lock files stay removable.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.location = inner.location

    def write(self, name: str, data: bytes | bytearray | memoryview) -> None:
        if not name.startswith("locks/") and self.inner.exists(name):
            raise AppendOnlyError(
                f"refusing to overwrite {name}: the repository is append-only",
                location=self.location,
            )
        self.inner.write(name, data)

    def create(self, name: str, data: bytes | bytearray | memoryview) -> bool:
        return self.inner.create(name, data)  # never replaces anything

    def read(self, name: str) -> bytes:
        return self.inner.read(name)

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        return self.inner.read_range(name, offset, length)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def list(self, prefix: str) -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, name: str) -> None:
        if not name.startswith("locks/"):
            raise AppendOnlyError(
                f"refusing to delete {name}: the repository is append-only "
                "(run forget/prune with a client that has full access)",
                location=self.location,
            )
        self.inner.delete(name)

    def close(self) -> None:
        self.inner.close()


def open_backend(location: str) -> Backend:
    """``/path`` or ``file:///path`` -> local; ``sftp://user@host:port/path`` -> SFTP;
    ``http(s)://host:port/`` -> a ``gyro backup repo-serve`` server."""
    if location.startswith("sftp://"):
        from gyroscope.backup._sftp import SftpBackend

        return SftpBackend.from_url(location)
    if location.startswith(("http://", "https://")):
        from gyroscope.backup._rest import HttpBackend

        return HttpBackend.from_url(location)
    return LocalBackend(Path(location.removeprefix("file://")).expanduser())
