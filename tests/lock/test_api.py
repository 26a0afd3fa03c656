"""The client API beyond the conformance suite: exports, sync facade, metrics, fencing helper."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from prometheus_client import generate_latest

import gyroscope.lock as lock_api
from gyroscope.errors import ConfigError, LockError
from gyroscope.lock import (
    FencedResource,
    LeaseLostError,
    Lock,
    LockBackendError,
    LockMetrics,
    LockTimeout,
    StaleTokenError,
    SyncLock,
    open_backend,
)


def test_public_names_are_exported_and_errors_subclass_lock_error() -> None:
    for name in lock_api.__all__:
        assert hasattr(lock_api, name), name
    for error in (LockBackendError, LockTimeout, LeaseLostError, StaleTokenError):
        assert issubclass(error, LockError)


def test_bad_backend_urls_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="unknown lock backend"):
        open_backend("mongodb://x")
    with pytest.raises(LockError, match="invalid lock name"):
        Lock("a/b", "sqlite:///tmp/x.db")
    with pytest.raises(LockError, match="ttl must be positive"):
        Lock("a", "sqlite:///tmp/x.db", ttl=0)


def test_sync_facade_from_threads(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/locks.db"
    inside, peak, tokens = [0], [0], []
    guard = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            with SyncLock("sync", url, ttl=5) as held:
                with guard:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                    tokens.append(held.token)
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert peak[0] == 1 and len(tokens) == 15 and len(set(tokens)) == 15
    with Lock("plain-with", url, ttl=5) as plain:  # `with` works on Lock itself, too
        assert plain.token is not None


def test_sync_facade_reports_loss(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/locks.db"
    holder = SyncLock("lost", url, ttl=0.5, auto_renew=False)
    holder.acquire()
    other = SyncLock("lost", url, ttl=5)
    assert other.acquire(timeout=20) is not None
    assert holder.lease_lost.wait(10) and not holder.held
    with pytest.raises(LeaseLostError):
        holder.release()
    other.release()
    holder.close()
    other.close()


async def test_metrics_count_acquisitions_waits_holds_and_losses(tmp_path: Path) -> None:
    metrics = LockMetrics()
    backend = open_backend(f"sqlite://{tmp_path}/locks.db")
    a = Lock("m", backend, ttl=0.5, auto_renew=False, metrics=metrics)
    b = Lock("m", backend, ttl=5, metrics=metrics)
    await a.acquire()
    assert await b.acquire(blocking=False) is None
    await b.acquire(timeout=20)  # a's lease runs out
    await asyncio.wait_for(a.lease_lost.wait(), 10)
    await b.release()
    text = generate_latest(metrics.registry).decode()
    assert 'gyro_lock_acquisitions_total{backend="sqlite",lock="m",outcome="acquired"} 2.0' in text
    assert 'outcome="timeout"} 1.0' in text
    assert 'gyro_lock_lost_leases_total{backend="sqlite",lock="m"} 1.0' in text
    assert 'gyro_lock_hold_seconds_count{backend="sqlite",lock="m"} 2.0' in text
    assert 'gyro_lock_wait_seconds_count{backend="sqlite",lock="m"} 2.0' in text
    await backend.aclose()


def test_fenced_resource_across_connections(tmp_path: Path) -> None:
    one = FencedResource(tmp_path / "store.db", name="orders")
    two = FencedResource(tmp_path / "store.db", name="orders")
    one.write("k", "a", token=5)
    with pytest.raises(StaleTokenError) as info:
        two.write("k", "b", token=4)
    assert info.value.highest == 5 and two.read("k") == "a"
    two.write("k", "c", token=5)  # the same holder may write again
    assert one.read("k") == "c" and one.highest_token() == 5
    one.close()
    two.close()
