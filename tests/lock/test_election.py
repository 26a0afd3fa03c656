"""Leader election on every backend: one leader, terms increase, resign hands over, loss is told."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gyroscope.lock import Election


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
