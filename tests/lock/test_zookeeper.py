"""ZooKeeper-specific: session expiry (the LOST state) ends the hold, and the holder is told;
a late or broken holder's release never deletes the next holder's node."""

from __future__ import annotations

import asyncio
import time

import pytest
from kazoo.client import KazooClient, KazooState

from gyroscope.lock import Grant, LeaseLostError, Lock, LockBackendError
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


async def test_release_from_an_expired_session_never_deletes_the_next_holder() -> None:
    """The fixed ``holder`` path's hazard: kazoo opens a new session after LOST, so a release
    that raced the LOST notice would run in the new session. The session-marker check in the
    release transaction makes the server refuse it."""
    require("zookeeper")
    a, b = ZooKeeperBackend(ZK_HOSTS), ZooKeeperBackend(ZK_HOSTS)
    name = f"stale-session-{time.monotonic_ns()}"
    try:
        first = await a.try_acquire(name, "owner-a", 2, fair=False)
        assert isinstance(first, Grant)
        stale = dict(a._holds)  # what a release racing the LOST notice would still see
        await _expire(a)
        second = await b.try_acquire(name, "owner-b", 2, fair=False)
        assert isinstance(second, Grant) and second.token > first.token
        for _ in range(200):  # a new session, in use (kazoo reconnects after LOST)
            try:
                await a.try_acquire(f"{name}-x", "owner-x", 2, fair=False)
                break
            except LockBackendError:
                await asyncio.sleep(0.05)
        a._holds.update(stale)
        assert not await a.release(name, "owner-a", first.token)
        info = await b.inspect(name)
        assert info is not None and info.owner == "owner-b" and info.token == second.token
        assert await b.release(name, "owner-b", second.token)
    finally:
        await a.aclose()
        await b.aclose()


async def test_release_after_an_administrative_break_never_deletes_the_next_holder() -> None:
    require("zookeeper")
    a, b = ZooKeeperBackend(ZK_HOSTS), ZooKeeperBackend(ZK_HOSTS)
    name = f"broken-{time.monotonic_ns()}"
    try:
        first = await a.try_acquire(name, "owner-a", 2, fair=False)
        assert isinstance(first, Grant)
        assert (await b.force_release(name)) is not None  # a still believes it holds
        second = await b.try_acquire(name, "owner-b", 2, fair=False)
        assert isinstance(second, Grant) and second.token > first.token
        assert not await a.release(name, "owner-a", first.token)  # the break epoch check
        info = await b.inspect(name)
        assert info is not None and info.owner == "owner-b"
        assert await b.release(name, "owner-b", second.token)  # b's cached epoch is refreshed
        assert await a.inspect(name) is None
        # and the lock is still an ordinary lock afterwards
        third = await a.try_acquire(name, "owner-a", 2, fair=False)
        assert isinstance(third, Grant) and third.token > second.token
        assert await a.release(name, "owner-a", third.token)
    finally:
        await a.aclose()
        await b.aclose()


async def _expire(backend: ZooKeeperBackend) -> None:
    assert backend.client_id is not None
    lost = asyncio.Event()
    loop = asyncio.get_running_loop()
    assert backend._client is not None
    backend._client.add_listener(
        lambda s: loop.call_soon_threadsafe(lost.set) if s == KazooState.LOST else None
    )
    intruder = KazooClient(hosts=ZK_HOSTS, client_id=backend.client_id, timeout=2)
    await asyncio.to_thread(intruder.start, 15)
    await asyncio.to_thread(intruder.stop)
    await asyncio.to_thread(intruder.close)
    await asyncio.wait_for(lost.wait(), 15)


async def test_release_retried_after_a_lost_reply_never_deletes_the_next_holder() -> None:
    """Our release was applied but its reply was lost; the lock passed to someone else; the
    retry must not delete their ``holder`` (the checks cannot tell it from ours: read first)."""
    require("zookeeper")
    a, b = ZooKeeperBackend(ZK_HOSTS), ZooKeeperBackend(ZK_HOSTS)
    name = f"lost-reply-{time.monotonic_ns()}"
    try:
        first = await a.try_acquire(name, "owner-a", 2, fair=False)
        assert isinstance(first, Grant)
        hold = a._holds[(name, "owner-a")]
        assert await a._delete_hold(name, hold)  # applied on the server ...
        hold.uncertain = True  # ... but, as far as the client knows, maybe not
        second = await b.try_acquire(name, "owner-b", 2, fair=False)
        assert isinstance(second, Grant)
        assert not await a.release(name, "owner-a", first.token)
        info = await b.inspect(name)
        assert info is not None and info.owner == "owner-b" and info.token == second.token
        assert await b.release(name, "owner-b", second.token)
    finally:
        await a.aclose()
        await b.aclose()
