"""Leader election on every backend: one leader, terms increase, resign hands over, loss is told."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gyroscope.lock import Election, open_backend

from .conftest import backend_url, require
from .helpers import eventually


async def test_campaign_observe_resign(make_backend: Any) -> None:
    backend = await make_backend()
    name = f"elect-{time.monotonic_ns()}"
    a = Election(name, backend, ttl=2, identity="node-a")
    b = Election(name, backend, ttl=2, identity="node-b", poll=0.05)
    try:
        term_a = await a.campaign(timeout=20)
        assert term_a is not None and a.is_leader and await b.leader() == "node-a"
        assert await b.campaign(timeout=0.3) is None  # only one leader
        seen: list[str | None] = []

        async def watch() -> None:
            async for leader in b.observe():
                seen.append(leader)
                if leader == "node-b":
                    return

        watcher = asyncio.create_task(watch())
        follower = asyncio.create_task(b.campaign(timeout=20))
        await asyncio.sleep(0.3)
        await a.resign()
        term_b = await asyncio.wait_for(follower, 20)
        await asyncio.wait_for(watcher, 20)
        assert term_b is not None and term_b > term_a and b.is_leader and not a.is_leader
        assert seen[0] == "node-a" and seen[-1] == "node-b"
        assert not a.lost.is_set()  # resigning is not losing
    finally:
        await a.aclose()
        await b.aclose()
        await backend.aclose()


async def test_leadership_lost_when_lease_is_not_renewed(make_backend: Any) -> None:
    backend = await make_backend()
    name = f"elect-lost-{time.monotonic_ns()}"
    a = Election(name, backend, ttl=1, identity="node-a", auto_renew=False)
    b = Election(name, backend, ttl=2, identity="node-b")
    try:
        first = await a.campaign(timeout=20)
        second = await b.campaign(timeout=20)
        assert first is not None and second is not None and second > first
        assert a.lost.is_set() and not a.is_leader
    finally:
        await a.aclose()
        await b.aclose()
        await backend.aclose()


class CountingBackend:
    """Delegates to a real backend and counts the engine calls made through it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if not callable(value):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[attr] += 1
            return value(*args, **kwargs)

        return counted


async def test_observer_is_notified_of_a_new_leader(make_backend: Any, backend_kind: str) -> None:
    """After a resign the observer sees the next leader long before its 60 s safety-net poll:
    only the engine's notification (or, on SQLite, the 0.5 s poll) can wake it in time."""
    backend = await make_backend()
    name = f"elect-notify-{time.monotonic_ns()}"
    a = Election(name, backend, ttl=3, identity="node-a", fallback=60)
    b = Election(name, backend, ttl=3, identity="node-b", fallback=60)
    watcher = Election(name, backend, ttl=3, identity="watcher", fallback=60)
    seen: list[str | None] = []
    first_seen = asyncio.Event()

    async def watch() -> None:
        async for leader in watcher.observe():
            seen.append(leader)
            first_seen.set()
            if leader == "node-b":
                return

    try:
        assert await a.campaign(timeout=20) is not None
        task = asyncio.create_task(watch())
        await asyncio.wait_for(first_seen.wait(), 20)
        assert seen == ["node-a"]
        follower = asyncio.create_task(b.campaign(timeout=30))
        await a.resign()
        assert await asyncio.wait_for(follower, 30) is not None
        await asyncio.wait_for(task, 15)  # far below the 60 s fallback
        assert seen[-1] == "node-b", (backend_kind, seen)
    finally:
        await a.aclose()
        await b.aclose()
        await watcher.aclose()
        await backend.aclose()


@pytest.mark.parametrize("backend_kind", ["redis", "etcd", "zookeeper"])  # SQLite polls by design
async def test_idle_observer_waits_on_the_engine_instead_of_polling(
    backend_kind: str, tmp_path: Path
) -> None:
    require(backend_kind)
    inner = open_backend(backend_url(backend_kind, tmp_path))
    counting = CountingBackend(inner)
    name = f"elect-idle-{time.monotonic_ns()}"
    leader = Election(name, inner, ttl=3, identity="node-a")
    watcher = Election(name, counting, ttl=3, identity="watcher", poll=0.01, fallback=60)
    seen: list[str | None] = []

    async def watch() -> None:
        async for current in watcher.observe():
            seen.append(current)

    task = asyncio.create_task(watch())
    try:
        assert await leader.campaign(timeout=20) is not None
        await eventually(lambda: _is(seen[-1:] == ["node-a"]), timeout=20)
        before = sum(counting.calls.values())
        zk_before = getattr(inner, "calls", 0)
        await asyncio.sleep(2.0)  # idle: the leader renews, nothing changes
        during = sum(counting.calls.values()) - before
        # a polling observer at poll=0.01 would have made ~200 calls; a waiting one makes
        # none, or one more read if a renewal touched what it watches
        assert during <= 4, (backend_kind, counting.calls)
        if backend_kind == "zookeeper":  # server requests, too: leader renewals (~1/s) only
            assert getattr(inner, "calls", 0) - zk_before <= 10
        assert seen == [None, "node-a"] or seen == ["node-a"], seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await leader.aclose()
        await watcher.aclose()
        await inner.aclose()


async def _is(value: bool) -> bool:
    return value
