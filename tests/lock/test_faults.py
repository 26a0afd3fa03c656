"""Process faults against every backend: kill -9 of the holder, SIGSTOP past the lease."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gyroscope.lock import FencedResource, Lock, StaleTokenError

from .helpers import result, spawn, wait_file

TTL = 2.0  # etcd and ZooKeeper grant at least 2 s; the bound below is TTL + 1 s on every engine


async def test_kill9_holder_frees_lock_within_ttl(url: str, tmp_path: Path) -> None:
    name = f"kill-{time.monotonic_ns()}"
    proc = spawn("hold", url, name, TTL, tmp_path / "w")
    try:
        first = int(wait_file(tmp_path / "w" / "ready", proc=proc))
        lock = Lock(name, url, ttl=TTL)
        assert await lock.acquire(blocking=False) is None
        killed_at = time.monotonic()
        proc.kill()
        token = await lock.acquire(timeout=30)
        elapsed = time.monotonic() - killed_at
        assert token is not None and token > first
        assert elapsed <= TTL + 1.0, f"lock free only {elapsed:.2f}s after kill -9 (ttl {TTL})"
        await lock.release()
        await lock.aclose()
    finally:
        proc.kill()


async def test_sigstop_past_lease_second_holder_and_stale_write_rejected(
    url: str, tmp_path: Path
) -> None:
    out = tmp_path / "w"
    name = f"pause-{time.monotonic_ns()}"
    proc = spawn("hold", url, name, TTL, out)
    try:
        first = int(wait_file(out / "ready", proc=proc))
        handle = proc.pause()
        second = Lock(name, url, ttl=10)
        token = await second.acquire(timeout=30)  # only possible once the paused lease expired
        assert token is not None and token > first
        store = FencedResource(out / "store.db", name="shared")
        store.write("owner", "second", token=token)
        (out / "go").write_text("")
        handle.resume()
        seen = result(out, proc)
        assert seen["write"] == "rejected" and seen["highest"] == token
        assert seen["held"] is False and seen["lease_lost_event"] is True
        assert seen["release"] == "LeaseLostError"
        assert store.read("owner") == "second"
        with pytest.raises(StaleTokenError):
            store.write("owner", "paused", token=first)
        await second.release()
        await second.aclose()
    finally:
        proc.kill()
