"""Redis-specific behaviour: the unsafe-config warning and a server restart."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gyroscope.chaos import ManagedProcess
from gyroscope.lock import Lock, UnsafeBackendError, open_backend
from gyroscope.testing import free_port, wait_for_port

from .conftest import REDIS_URL, require


def own_redis(tmp_path: Path, *, persistent: bool) -> tuple[ManagedProcess, str]:
    if shutil.which("redis-server") is None:
        require("redis")  # same rule as every server test: fail in CI, skip locally
    port = free_port()
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
    )
    proc = ManagedProcess(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(tmp_path),
            "--save",
            "",
            "--logfile",
            str(tmp_path / "redis.log"),
            *persistence,
        ]
    )
    wait_for_port("127.0.0.1", port, timeout=20)
    return proc, f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def redis_persistent(tmp_path: Path) -> Iterator[tuple[ManagedProcess, str]]:
    proc, url = own_redis(tmp_path, persistent=True)
    yield proc, url
    proc.kill()


async def test_unsafe_config_warns_and_can_refuse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc, url = own_redis(tmp_path, persistent=False)
    try:
        backend = open_backend(url)
        with caplog.at_level(logging.WARNING, logger="gyroscope.lock.backends.redis"):
            lock = Lock("unsafe", backend, ttl=2)
            assert await lock.acquire() is not None
            await lock.release()
        assert "appendonly is off" in caplog.text
        health = await backend.health()
        assert health.status == "degraded" and "appendonly" in health.detail
        await backend.aclose()
        strict = open_backend(url, require_safe=True)
        with pytest.raises(UnsafeBackendError, match="unsafe for locks"):
            await Lock("unsafe", strict, ttl=2).acquire()
        await strict.aclose()
    finally:
        proc.kill()


async def test_safe_server_reports_ok() -> None:
    require("redis")
    backend = open_backend(REDIS_URL)
    assert (await backend.health()).status == "ok"
    await backend.aclose()


async def test_lock_and_fence_survive_server_restart(
    redis_persistent: tuple[ManagedProcess, str],
) -> None:
    proc, url = redis_persistent
    backend = open_backend(url)
    holder = Lock("restart", backend, ttl=2)
    first = await holder.acquire()
    proc.restart()
    wait_for_port("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0]), timeout=20)
    other = Lock("restart", url, ttl=2)
    assert await other.acquire(blocking=False) is None  # the fsynced lock came back
    await asyncio.sleep(2.5)  # longer than the ttl: renewal reconnected and kept it
    assert holder.held and holder.token == first
    await holder.release()
    second = await other.acquire(timeout=10)
    assert second is not None and first is not None and second > first  # fence kept its count
    await other.release()
    await other.aclose()
    await backend.aclose()
