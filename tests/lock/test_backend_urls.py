"""Backend URLs: checked at the boundary (one ConfigError line), never echoed with credentials;
read-only commands on a missing SQLite file create nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gyroscope.errors import ConfigError
from gyroscope.lock import Lock, LockDatabaseMissingError, LockError, open_backend
from gyroscope.lock._url import redact_url, scrub
from gyroscope.testing import free_port

from .conftest import REDIS_URL, require


def gyro(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, "lock", *args], env=env, capture_output=True, text=True, timeout=90, check=False
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:PASS1@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("redis://user:PASS1@127.0.0.1:6379/0?password=PASS2", "redis://***@127.0.0.1:6379/0"),
        ("etcd://u:PASS1@h1:2379,h2:2379", "etcd://***@h1:2379,h2:2379"),
        ("zookeeper://u:p@ss@h1:2181/chroot", "zookeeper://***@h1:2181/chroot"),
        ("http://u:PASS1@127.0.0.1:2379", "http://***@127.0.0.1:2379"),
        ("u:PASS1@127.0.0.1:2181", "***@127.0.0.1:2181"),
        ("sqlite:///var/lib/locks.db", "sqlite:///var/lib/locks.db"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_scrub_replaces_credentials_in_driver_text() -> None:
    url = "redis://alice:PASS1@127.0.0.1:6379/0?password=PASS2"
    text = scrub("failed for alice:PASS1@127.0.0.1 with PASS2", url)
    assert "PASS1" not in text and "PASS2" not in text and "alice" not in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:notaport", "port 'notaport' is not a number"),
        ("redis://127.0.0.1:0", "port 0 is out of range 1-65535"),
        ("redis://127.0.0.1:6379/notadb", "database 'notadb' is not a number"),
        ("redis://", "no host"),
        ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
        ("zookeeper://127.0.0.1:99999", "port 99999 is out of range 1-65535"),
        ("zookeeper://127.0.0.1:2181,:2182", "invalid host ''"),
        ("etcd://127.0.0.1:2379,127.0.0.1:x", "port 'x' is not a number"),
        ("etcd://127.0.0.1:2379/,bad host:1", "invalid host 'bad host'"),
        ("nothing-here", "expected scheme://"),
        ("mysql://u:SECRET@h/x", "unknown lock backend 'mysql://***@h/x'"),
    ],
)
def test_bad_urls_are_one_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_backend(url)
    assert message in str(info.value)
    assert "SECRET" not in str(info.value)


def test_cli_bad_url_is_one_line(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    for url in ("redis://127.0.0.1:notaport", "zookeeper://127.0.0.1:99999"):
        out = gyro(gyro_cmd, clean_env, "--backend", url, "status", "x")
        assert out.returncode == 2, out.stderr
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("gyro: error: backend: ")


def test_cli_errors_never_show_credentials(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    dead = free_port()
    for url in (
        f"etcd://u:ETCDPASS@127.0.0.1:{dead}",
        f"etcd://http://u:ETCDPASS@127.0.0.1:{dead},127.0.0.1:{dead}",
        f"redis://:REDISPASS@127.0.0.1:{dead}/0",
    ):
        out = gyro(gyro_cmd, clean_env, "--backend", url, "status", "x")
        assert out.returncode != 0 and out.stderr.startswith("gyro: error: ")
        assert "PASS" not in out.stderr + out.stdout, out.stderr
        assert "***@127.0.0.1" in out.stderr or "redis 127.0.0.1" in out.stderr


async def test_zookeeper_errors_never_show_credentials() -> None:
    backend = open_backend(f"zookeeper://u:ZKPASS@127.0.0.1:{free_port()}", connect_timeout=1.0)
    try:
        with pytest.raises(LockError) as info:
            await backend.inspect("x")
    finally:
        await backend.aclose()
    assert "ZKPASS" not in str(info.value) and "***@127.0.0.1" in str(info.value)


async def test_real_redis_refusing_a_password_does_not_echo_it() -> None:
    require("redis")
    url = REDIS_URL.replace("redis://", "redis://nobody:REDISPASS@", 1)
    backend = open_backend(url)
    try:
        with pytest.raises(LockError) as info:
            await backend.inspect("x")  # no such ACL user on the test server: AUTH fails
    finally:
        await backend.aclose()
    assert "REDISPASS" not in str(info.value)


# -- SQLite: looking creates nothing --------------------------------------------------------------


def test_status_and_list_of_missing_sqlite_file_create_nothing(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "nonexist" / "dir" / "x.db"
    url = f"sqlite://{db}"
    for args in (("status", "x"), ("list",), ("break", "x", "--yes")):
        out = gyro(gyro_cmd, clean_env, "--backend", url, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.count("\n") == 1 and "no lock database here" in out.stderr
        assert str(db) in out.stderr
    assert not (tmp_path / "nonexist").exists()
    out = gyro(gyro_cmd, clean_env, "--backend", url, "run", "x", "--", "true")
    assert out.returncode == 0, out.stderr
    assert db.exists()  # acquiring creates it
    out = gyro(gyro_cmd, clean_env, "--backend", url, "status", "x")
    assert out.returncode == 1 and out.stdout.strip() == "x: free"


async def test_library_owner_of_missing_sqlite_file_is_none(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "locks.db"
    backend = open_backend(f"sqlite://{db}")
    try:
        with pytest.raises(LockDatabaseMissingError):
            await backend.inspect("x")
        assert (await backend.health()).status == "ok"
        lock = Lock("x", backend, ttl=5)
        assert await lock.owner() is None
        assert not db.parent.exists()
        async with lock:
            assert await lock.owner() == lock.owner_id
        assert db.exists()
    finally:
        await backend.aclose()
