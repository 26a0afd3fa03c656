"""Sources beyond plain files, each captured consistently into a temporary file first.

- SQLite: the online backup API (a consistent copy even while writers are active);
- PostgreSQL: ``pg_dump -Fc`` (one consistent MVCC snapshot; restore with ``pg_restore``);
- Redis: ``redis-cli --rdb`` (the server forks and streams a point-in-time RDB, as for a replica).

The dump lands in the snapshot at ``@<kind>/<name>.<ext>``; deduplication makes repeated dumps of a
slowly changing database cheap. Credentials come from the usual places (``PGPASSWORD``, ``.pgpass``,
the Redis URL) and are never logged; a password written in a DSN or URL is moved into the dump
tool's environment (``PGPASSWORD``, ``REDISCLI_AUTH``), never onto its command line.
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

__all__ = [
    "PostgresSource",
    "RedisSource",
    "Source",
    "SqliteSource",
    "dump_sources",
    "pg_without_password",
]

DUMP_TIMEOUT = 3600.0


class Source(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def ext(self) -> str: ...

    def dump(self, out: Path) -> None: ...


def _split(spec: str, what: str, *, secret: bool = False) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name or not value or "/" in name:
        if secret:  # a DSN or URL may hold a password: never echo it
            raise SourceError(f"expected NAME={what} (e.g. main={what})", source=f"NAME={what}")
        raise SourceError(f"expected NAME={what}, got {spec!r}", source=spec)
    return name, value


def _without_password(url: str) -> tuple[str, str | None]:
    """Split a password out of a URL (``user:pass@`` or ``?password=``), so it travels in the
    environment, not in ``ps`` output. A ``?password=`` wins over ``user:pass@`` (as in libpq).

    >>> _without_password("postgresql://app:s3cret@127.0.0.1:5432/main")
    ('postgresql://app@127.0.0.1:5432/main', 's3cret')
    >>> _without_password("redis://127.0.0.1/0?password=s3cret&timeout=5")
    ('redis://127.0.0.1/0?timeout=5', 's3cret')
    """
    parts = urlsplit(url)
    password = None if parts.password is None else unquote(parts.password)
    if password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username}@{host}" if parts.username else host
        parts = parts._replace(netloc=netloc)
    kept = []
    for item in parts.query.split("&") if parts.query else ():
        key, _, value = item.partition("=")
        if unquote(key) == "password":
            password = unquote(value)
        else:
            kept.append(item)
    return urlunsplit(parts._replace(query="&".join(kept))), password


def _parse_conninfo(dsn: str) -> list[tuple[str, str]] | None:
    """libpq's ``key=value`` connection string as pairs (values may be 'quoted', with backslash
    escapes); None if it is not one."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(dsn)
    while True:
        while i < n and dsn[i].isspace():
            i += 1
        if i == n:
            return pairs
        start = i
        while i < n and not dsn[i].isspace() and dsn[i] != "=":
            i += 1
        key = dsn[start:i]
        while i < n and dsn[i].isspace():
            i += 1
        if not key or i == n or dsn[i] != "=":
            return None
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        value, i = _conninfo_value(dsn, i)
        if value is None:
            return None
        pairs.append((key, value))


def _conninfo_value(dsn: str, i: int) -> tuple[str | None, int]:
    quoted = i < len(dsn) and dsn[i] == "'"
    i += quoted
    out = []
    while i < len(dsn):
        char = dsn[i]
        if char == "\\" and i + 1 < len(dsn):
            out.append(dsn[i + 1])
            i += 2
            continue
        if (quoted and char == "'") or (not quoted and char.isspace()):
            return "".join(out), i + 1
        out.append(char)
        i += 1
    return (None if quoted else "".join(out)), i


def _quote_conninfo(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pg_without_password(dsn: str) -> tuple[str, str | None]:
    """Split the password out of any libpq DSN form: a URI (``user:pass@``, ``?password=``) or a
    ``key=value`` string (``password=...``, quoted or not). A plain database name has none.

    >>> pg_without_password("host=127.0.0.1 password='s3 cret' dbname=main")
    ("host='127.0.0.1' dbname='main'", 's3 cret')
    """
    if dsn.startswith(("postgresql://", "postgres://")):
        return _without_password(dsn)
    if "=" not in dsn:
        return dsn, None
    pairs = _parse_conninfo(dsn)
    if pairs is None:
        if "password" in dsn:
            raise SourceError(
                "cannot read the key=value DSN to move its password out of the command line "
                "(check its quoting, or use $PGPASSWORD or ~/.pgpass)",
                source="postgres DSN",
            )
        return dsn, None
    passwords = [v for k, v in pairs if k == "password"]
    if not passwords:
        return dsn, None
    kept = " ".join(f"{k}={_quote_conninfo(v)}" for k, v in pairs if k != "password")
    return kept, passwords[-1]


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
    """A PostgreSQL database, dumped with ``pg_dump --format=custom``.

    A password in the DSN (any form) is kept apart and given to pg_dump as ``PGPASSWORD``, never
    on its command line.

    >>> src = PostgresSource.parse("main=postgresql://app:s3cret@127.0.0.1/main")
    >>> src.dsn, src.command("/tmp/out.dump")[1]
    ('postgresql://app@127.0.0.1/main', {'PGPASSWORD': 's3cret'})
    """

    name: str
    dsn: str = field(repr=False)
    kind: str = "postgres"
    ext: str = "dump"
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        dsn, password = pg_without_password(self.dsn)
        object.__setattr__(self, "dsn", dsn)
        if password is not None:
            object.__setattr__(self, "password", password)

    @classmethod
    def parse(cls, spec: str) -> PostgresSource:
        return cls(*_split(spec, "DSN", secret=True))

    def command(self, out: Path | str) -> tuple[list[str], dict[str, str]]:
        """pg_dump's argv (no password in it) and the environment it adds."""
        argv = ["pg_dump", "--format=custom", "--no-password", f"--file={out}"]
        env = {"PGPASSWORD": self.password} if self.password is not None else {}
        return [*argv, f"--dbname={self.dsn}"], env

    def dump(self, out: Path) -> None:
        argv, env = self.command(out)
        _run(argv, f"postgres {self.name}", env)


@dataclass(frozen=True, slots=True)
class RedisSource:
    """A Redis server's dataset as an RDB file (``redis-cli --rdb``).

    A password in the URL (``:pass@`` or ``?password=``) is given to redis-cli as
    ``REDISCLI_AUTH``, never on its command line.
    """

    name: str
    url: str = field(repr=False)
    kind: str = "redis"
    ext: str = "rdb"
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        url, password = _without_password(self.url)
        object.__setattr__(self, "url", url)
        if password is not None:
            object.__setattr__(self, "password", password)

    @classmethod
    def parse(cls, spec: str) -> RedisSource:
        return cls(*_split(spec, "URL", secret=True))

    def command(self, out: Path | str) -> tuple[list[str], dict[str, str]]:
        """redis-cli's argv (no password in it) and the environment it adds."""
        argv = ["redis-cli", "-u", self.url, "--no-auth-warning", "--rdb", str(out)]
        return argv, ({"REDISCLI_AUTH": self.password} if self.password is not None else {})

    def dump(self, out: Path) -> None:
        argv, env = self.command(out)
        _run(argv, f"redis {self.name}", env)
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
