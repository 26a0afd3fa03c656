"""Database sources against real servers: Redis (services.sh) and a PostgreSQL cluster made here."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gyroscope.backup import Repository, SourceError, backup, restore
from gyroscope.backup._sources import PostgresSource, RedisSource, SqliteSource, dump_sources
from gyroscope.testing import free_port, require_server, wait_for_port

REDIS_URL = os.environ.get("GYRO_TEST_REDIS_URL", "redis://127.0.0.1:16379/0")


def test_redis_rdb_round_trip(repo: Repository, tmp_path: Path) -> None:
    require_server("redis", "127.0.0.1", 16379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    key = f"gyro-backup-test-{os.getpid()}"
    client.set(key, "value in the snapshot")
    try:
        with dump_sources([RedisSource("cache", REDIS_URL)]) as extra:
            snap = backup(repo, [], extra=extra).snapshot
    finally:
        client.delete(key)
        client.close()
    out = tmp_path / "out"
    assert restore(repo, snap, out).errors == []
    rdb = (out / "@redis" / "cache.rdb").read_bytes()
    assert rdb.startswith(b"REDIS") and key.encode() in rdb and b"value in the snapshot" in rdb


def test_unreachable_database_is_one_clear_error(repo: Repository) -> None:
    port = free_port()
    with (
        pytest.raises(SourceError, match=r"redis-cli failed|no RDB"),
        dump_sources([RedisSource("gone", f"redis://127.0.0.1:{port}/0")]),
    ):
        pass
    with (
        pytest.raises(SourceError, match="not found"),
        dump_sources([SqliteSource("x", "/no/such.db")]),
    ):
        pass
    with pytest.raises(SourceError, match="expected NAME=PATH"):
        SqliteSource.parse("no-equals-sign")


def _as_postgres_user(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    # PostgreSQL refuses to run as root; tests that run as root start it as nobody.
    prefix = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + argv, check=True, capture_output=True, timeout=120, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    bindir = Path(os.environ.get("GYRO_TEST_PG_BINDIR", "/usr/local/bin"))
    if not (bindir / "initdb").exists():
        message = f"PostgreSQL server binaries not found in {bindir} (set GYRO_TEST_PG_BINDIR)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix="gyro-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        os.chown(base, 65534, 65534)
    data, port = base / "data", free_port()
    _as_postgres_user(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
    )
    opts = f"-p {port} -k {base} -h 127.0.0.1 -c fsync=off"
    _as_postgres_user(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-o",
            opts,
            "-w",
            "start",
        ]
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _as_postgres_user(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        )
        shutil.rmtree(base, ignore_errors=True)


def _psql(dsn: str, sql: str) -> str:
    out = subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-d", dsn, "-c", sql], check=True, capture_output=True
    )
    return out.stdout.decode().strip()


def test_postgres_pg_dump_round_trip(repo: Repository, tmp_path: Path, postgres: str) -> None:
    _psql(postgres, "create table models (id int primary key, name text)")
    _psql(postgres, "insert into models select g, 'model-' || g from generate_series(1, 500) g")
    with dump_sources([PostgresSource("main", postgres)]) as extra:
        snap = backup(repo, [], extra=extra).snapshot
    _psql(postgres, "drop table models")  # the disaster
    out = tmp_path / "out"
    assert restore(repo, snap, out).errors == []
    dump_file = out / "@postgres" / "main.dump"
    subprocess.run(
        ["pg_restore", "--no-owner", "-d", postgres, str(dump_file)],
        check=True,
        capture_output=True,
    )
    assert _psql(postgres, "select count(*), max(name) from models") == "500|model-99"


def test_postgres_bad_dsn_is_one_clear_error(postgres: str) -> None:
    bad = postgres.rsplit("/", 1)[0] + "/no_such_database"
    with (
        pytest.raises(SourceError, match=r"pg_dump failed: .*no_such_database"),
        dump_sources([PostgresSource("x", bad)]),
    ):
        pass
