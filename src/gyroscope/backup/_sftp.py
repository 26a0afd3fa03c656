"""The SFTP backend (paramiko): a repository on any host reachable over SSH.

``sftp://user@host:port/path?key=/path/id_ed25519&known_hosts=/path/known_hosts``. The server's host
key must be known (``known_hosts``, default ``~/.ssh/known_hosts``): an unknown key is refused, never
accepted silently. Objects are written to a temporary name and renamed with the
``posix-rename@openssh.com`` extension, so a reader never sees half an object. One SFTP channel per
thread over one SSH connection lets restores and backups run requests in parallel.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import uuid
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import paramiko

from gyroscope.backup._backend import ObjectInfo
from gyroscope.backup._errors import BackendError, MissingDataError, StorageFullError

__all__ = ["SftpBackend"]

CONNECT_TIMEOUT = 15.0


class SftpBackend:
    """A repository directory on an SFTP server."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        root: str,
        *,
        key_file: Path | None = None,
        known_hosts: Path | None = None,
    ) -> None:
        self.root = PurePosixPath(root)
        self.location = f"sftp://{user}@{host}:{port}{root}"
        self._local = threading.local()
        self._dirs: set[str] = set()
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            hosts = known_hosts or Path("~/.ssh/known_hosts").expanduser()
            if hosts.exists():
                client.load_host_keys(str(hosts))
            client.connect(
                host,
                port=port,
                username=user,
                key_filename=str(key_file) if key_file else None,
                timeout=CONNECT_TIMEOUT,
                allow_agent=key_file is None,
                look_for_keys=key_file is None,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise BackendError(f"cannot connect: {exc}", location=self.location) from exc
        self._client = client

    @classmethod
    def from_url(cls, url: str) -> SftpBackend:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        key = query.get("key", [os.environ.get("GYRO_BACKUP_SFTP_KEY", "")])[0]
        hosts = query.get("known_hosts", [os.environ.get("GYRO_BACKUP_SFTP_KNOWN_HOSTS", "")])[0]
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 22,
            unquote(parts.username or os.environ.get("USER", "root")),
            unquote(parts.path) or "/",
            key_file=Path(key) if key else None,
            known_hosts=Path(hosts) if hosts else None,
        )

    def _sftp(self) -> Any:
        sftp = getattr(self._local, "sftp", None)
        if sftp is None:
            sftp = self._client.open_sftp()
            self._local.sftp = sftp
        return sftp

    def _path(self, name: str) -> str:
        return str(self.root / name)

    def _error(self, exc: Exception, name: str) -> Exception:
        if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENOENT:
            return MissingDataError(f"{name} is missing", location=self.location)
        if "space" in str(exc).lower():
            return StorageFullError(f"no space left while writing {name}", location=self.location)
        return BackendError(f"{name}: {exc}", location=self.location)

    def _mkdirs(self, directory: PurePosixPath) -> None:
        if str(directory) in self._dirs:
            return
        sftp = self._sftp()
        for parent in [*reversed(directory.parents), directory]:
            try:
                sftp.stat(str(parent))
            except FileNotFoundError:
                try:
                    sftp.mkdir(str(parent))
                except OSError:
                    sftp.stat(str(parent))  # created concurrently by another thread
        self._dirs.add(str(directory))

    def write(self, name: str, data: bytes | bytearray | memoryview) -> None:
        self._store(name, data, replace=True)

    def create(self, name: str, data: bytes | bytearray | memoryview) -> bool:
        """Like ``write``, but with the plain SFTP rename, which fails when the target exists
        (OpenSSH renames files with link and unlink): of two racing creators exactly one wins."""
        return self._store(name, data, replace=False)

    def _store(self, name: str, data: bytes | bytearray | memoryview, *, replace: bool) -> bool:
        """Upload to a temporary name, then rename it into place; False if ``name`` existed and
        ``replace`` is off."""
        path = PurePosixPath(self._path(name))
        tmp = str(path.with_name(f".tmp-{uuid.uuid4().hex}"))
        sftp = self._sftp()
        stored = False
        try:
            self._mkdirs(path.parent)
            with sftp.open(tmp, "wb") as fh:
                fh.set_pipelined(True)
                fh.write(bytes(data) if isinstance(data, memoryview) else data)
            if replace:
                sftp.posix_rename(tmp, str(path))
            else:
                try:
                    sftp.rename(tmp, str(path))
                except OSError:
                    if self.exists(name):
                        return False
                    raise
            stored = True
            return True
        except (OSError, paramiko.SSHException) as exc:
            raise self._error(exc, name) from exc
        finally:
            if not stored:
                with contextlib.suppress(OSError, paramiko.SSHException):
                    sftp.remove(tmp)

    def read(self, name: str) -> bytes:
        try:
            with self._sftp().open(self._path(name), "rb") as fh:
                fh.prefetch()
                data: bytes = fh.read()
                return data
        except (OSError, paramiko.SSHException) as exc:
            raise self._error(exc, name) from exc

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        try:
            with self._sftp().open(self._path(name), "rb") as fh:
                fh.seek(offset)
                data: bytes = fh.read(length)
        except (OSError, paramiko.SSHException) as exc:
            raise self._error(exc, name) from exc
        if len(data) != length:
            raise MissingDataError(f"{name} is truncated", location=self.location)
        return data

    def exists(self, name: str) -> bool:
        try:
            self._sftp().stat(self._path(name))
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        stack = [prefix]
        sftp = self._sftp()
        while stack:
            rel = stack.pop()
            try:
                attrs = sftp.listdir_attr(self._path(rel))
            except FileNotFoundError:
                continue
            for attr in attrs:
                if attr.filename.startswith("."):
                    continue  # another writer's upload in progress
                child = f"{rel}/{attr.filename}"
                if stat.S_ISDIR(attr.st_mode or 0):
                    stack.append(child)
                else:
                    found.append(ObjectInfo(child, attr.st_size or 0, float(attr.st_mtime or 0)))
        return found

    def delete(self, name: str) -> None:
        try:
            self._sftp().remove(self._path(name))
        except FileNotFoundError:
            return
        except (OSError, paramiko.SSHException) as exc:
            raise self._error(exc, name) from exc

    def close(self) -> None:
        self._client.close()
