"""ZooKeeper-specific: session expiry (the LOST state) ends the hold, and the holder is told."""

from __future__ import annotations

import asyncio
import time

import pytest
from kazoo.client import KazooClient

from gyroscope.lock import LeaseLostError, Lock
from gyroscope.lock.backends.zookeeper import ZooKeeperBackend

from .conftest import ZK_HOSTS, require


async def test_session_expiry_loses_the_lock_and_the_holder_knows() -> None:
    require("zookeeper")
    backend = ZooKeeperBackend(ZK_HOSTS)
    name = f"expire-{time.monotonic_ns()}"
    holder = Lock(name, backend, ttl=2)
    first = await holder.acquire(timeout=20)
    assert backend.client_id is not None
    # The classic trick: a second client that joins the same session and closes it makes the
    # server expire the session, exactly as a long partition would.
    intruder = KazooClient(hosts=ZK_HOSTS, client_id=backend.client_id, timeout=2)
    await asyncio.to_thread(intruder.start, 15)
    await asyncio.to_thread(intruder.stop)
    await asyncio.to_thread(intruder.close)
    await asyncio.wait_for(holder.lease_lost.wait(), 15)
    other = Lock(name, f"zookeeper://{ZK_HOSTS}", ttl=2)
    second = await other.acquire(timeout=20)
    assert second is not None and first is not None and second > first
    with pytest.raises(LeaseLostError):
        await holder.release()
    # the backend recovers with a new session and can lock again
    assert await Lock(f"{name}-after", backend, ttl=2).acquire(timeout=20) is not None
    await other.release()
    await other.aclose()
    await backend.aclose()
