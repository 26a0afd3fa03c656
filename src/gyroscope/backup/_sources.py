"""Sources beyond plain files, each captured consistently into a temporary file first.

- SQLite: the online backup API (a consistent copy even while writers are active);
- PostgreSQL: ``pg_dump -Fc`` (one consistent MVCC snapshot; restore with ``pg_restore``);
- Redis: ``redis-cli --rdb`` (the server forks and streams a point-in-time RDB, as for a replica).

The dump lands in the snapshot at ``@<kind>/<name>.<ext>``; deduplication makes repeated dumps of a
slowly changing database cheap. Credentials come from the usual places (``PGPASSWORD``, ``.pgpass``,
the Redis URL) and are never logged.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from gyroscope.backup._errors import SourceError

__all__ = ["PostgresSource", "RedisSource", "Source", "SqliteSource", "dump_sources"]

DUMP_TIMEOUT = 3600.0


class Source(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def ext(self) -> str: ...

    def dump(self, out: Path) -> None: ...


def _split(spec: str, what: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name or not value or "/" in name:
        raise SourceError(f"expected NAME={what}, got {spec!r}", source=spec)
    return name, value


def _without_password(url: str) -> tuple[str, str | None]:
    """Split a password out of a URL, so it travels in the environment, not in ``ps`` output.

    >>> _without_password("postgresql://app:s3cret@127.0.0.1:5432/main")
    ('postgresql://app@127.0.0.1:5432/main', 's3cret')
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{parts.username}@{host}" if parts.username else host
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def _run(argv: list[str], source: str, env: dict[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            timeout=DUMP_TIMEOUT,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except FileNotFoundError:
        raise SourceError(f"{argv[0]} is not installed", source=source) from None
    except subprocess.TimeoutExpired:
        raise SourceError(
            f"{argv[0]} did not finish within {DUMP_TIMEOUT:.0f} s", source=source
        ) from None
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["(no output)"]
        raise SourceError(f"{argv[0]} failed: {lines[-1]}", source=source)


@dataclass(frozen=True, slots=True)
class SqliteSource:
    """An SQLite database file, copied with the online backup API.

    >>> SqliteSource.parse("app=/var/lib/app.db").path
    '/var/lib/app.db'
    """

    name: str
    path: str
    kind: str = "sqlite"
    ext: str = "db"

    @classmethod
    def parse(cls, spec: str) -> SqliteSource:
        return cls(*_split(spec, "PATH"))

    def dump(self, out: Path) -> None:
        if not Path(self.path).is_file():
            raise SourceError("database file not found", source=self.path)
        try:
            src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            dest = sqlite3.connect(out)
            try:
                src.backup(dest)
            finally:
                dest.close()
                src.close()
        except sqlite3.Error as exc:
            raise SourceError(f"SQLite backup failed: {exc}", source=self.path) from None


@dataclass(frozen=True, slots=True)
class PostgresSource:
    """A PostgreSQL database, dumped with ``pg_dump --format=custom``."""

    name: str
    dsn: str = field(repr=False)
    kind: str = "postgres"
    ext: str = "dump"

    @classmethod
    def parse(cls, spec: str) -> PostgresSource:
        return cls(*_split(spec, "DSN"))

    def dump(self, out: Path) -> None:
        dsn, password = _without_password(self.dsn)
        _run(
            ["pg_dump", "--format=custom", "--no-password", f"--file={out}", f"--dbname={dsn}"],
            f"postgres {self.name}",
            {"PGPASSWORD": password} if password else None,
        )


@dataclass(frozen=True, slots=True)
class RedisSource:
    """A Redis server's dataset as an RDB file (``redis-cli --rdb``)."""

    name: str
    url: str = field(repr=False)
    kind: str = "redis"
    ext: str = "rdb"

    @classmethod
    def parse(cls, spec: str) -> RedisSource:
        return cls(*_split(spec, "URL"))

    def dump(self, out: Path) -> None:
        url, password = _without_password(self.url)
        _run(
            ["redis-cli", "-u", url, "--no-auth-warning", "--rdb", str(out)],
            f"redis {self.name}",
            {"REDISCLI_AUTH": password} if password else None,
        )
        if not out.is_file() or out.read_bytes()[:5] != b"REDIS":
            raise SourceError("redis-cli produced no RDB file", source=f"redis {self.name}")


@contextmanager
def dump_sources(sources: Sequence[Source]) -> Iterator[list[tuple[str, str]]]:
    """Dump every source into a temporary directory; yields (archive path, file path) pairs."""
    if not sources:
        yield []
        return
    tmp = Path(tempfile.mkdtemp(prefix="gyro-backup-"))
    try:
        extra = []
        for source in sources:
            out = tmp / f"{source.kind}-{source.name}.{source.ext}"
            source.dump(out)
            extra.append((f"@{source.kind}/{source.name}.{source.ext}", str(out)))
        yield extra
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
