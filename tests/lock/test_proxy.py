"""Connections cut, slowed and blackholed between a holder and its engine (gyroscope.chaos proxy)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from gyroscope.chaos import FaultProxy
from gyroscope.lock import Lock, LockNotHeldError

from .conftest import ETCD_ENDPOINTS, REDIS_URL, ZK_HOSTS, require

KINDS = ["redis", "etcd", "zookeeper"]


def _upstream(kind: str) -> str:
    if kind == "redis":
        return urlsplit(REDIS_URL).netloc
    return (ETCD_ENDPOINTS if kind == "etcd" else ZK_HOSTS).split(",")[0]


def _url(kind: str, address: str) -> str:
    return {
        "redis": f"redis://{address}/0",
        "etcd": f"etcd://{address}",
        "zookeeper": f"zookeeper://{address}",
    }[kind]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    require(request.param)
    return str(request.param)


@pytest.fixture
async def proxy(kind: str) -> AsyncIterator[FaultProxy]:
    fault_proxy = FaultProxy(upstream=_upstream(kind), listen="127.0.0.1:0")
    await fault_proxy.start()
    yield fault_proxy
    await fault_proxy.stop(grace=0.1)


async def test_cut_connections_do_not_lose_the_lock(kind: str, proxy: FaultProxy) -> None:
    holder = Lock(f"cut-{time.monotonic_ns()}", _url(kind, f"127.0.0.1:{proxy.port}"), ttl=2)
    await holder.acquire(timeout=20)
    for _ in range(3):
        proxy.cut()
        await asyncio.sleep(0.6)
    assert holder.held and not holder.lease_lost.is_set()
    await holder.release()
    await holder.aclose()


async def test_slow_link_still_works(kind: str, proxy: FaultProxy) -> None:
    proxy.update_faults(latency_ms=100)
    name, via = f"slow-{time.monotonic_ns()}", _url(kind, f"127.0.0.1:{proxy.port}")
    # ttl 3 s: ZooKeeper's client needs a few ping intervals of slack on a 100 ms link
    a, b = Lock(name, via, ttl=3), Lock(name, via, ttl=3)
    first = await a.acquire(timeout=20)
    waiter = asyncio.create_task(b.acquire(timeout=30))
    await asyncio.sleep(3.5)  # renewals through the slow link keep the lease
    assert a.held and not waiter.done()
    await a.release()
    second = await waiter
    assert second is not None and first is not None and second > first
    await b.release()
    await a.aclose()
    await b.aclose()


async def test_blackholed_holder_learns_it_lost_the_lock(kind: str, proxy: FaultProxy) -> None:
    name = f"hole-{time.monotonic_ns()}"
    holder = Lock(name, _url(kind, f"127.0.0.1:{proxy.port}"), ttl=2)
    first = await holder.acquire(timeout=20)
    proxy.update_faults(blackhole=True)
    await asyncio.wait_for(holder.lease_lost.wait(), 15)  # told, not left believing it holds it
    assert not holder.held
    other = Lock(name, _url(kind, _upstream(kind)), ttl=2)
    second = await other.acquire(timeout=20)
    assert second is not None and first is not None and second > first
    proxy.clear_faults()
    with pytest.raises(LockNotHeldError):
        await holder.release()
    await other.release()
    await other.aclose()
    await holder.aclose()
