"""Conformance checks for read-write locks and counting semaphores (engines with shared grants).

Used like ``lock_conformance``: ``await check(make_backend)`` for each check in ``SHARED_CHECKS``.
"""

from __future__ import annotations

import asyncio
import uuid

from gyroscope.lock import RWLock, Semaphore
from gyroscope.testing.lock_conformance import PATIENCE, MakeBackend, _backend

__all__ = ["SHARED_CHECKS"]

TTL = 2.0


def _name() -> str:
    return f"shared-{uuid.uuid4().hex[:10]}"


async def check_semaphore_admits_limit(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        slots = [Semaphore(name, b, limit=3, ttl=TTL) for _ in range(4)]
        tokens = [await s.acquire(blocking=False) for s in slots[:3]]
        assert all(t is not None for t in tokens)
        assert len(set(tokens)) == 3
        assert await slots[3].acquire(blocking=False) is None
        assert len(await slots[0].holders()) == 3
        waiter = asyncio.create_task(slots[3].acquire(timeout=PATIENCE))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        await slots[1].release()
        fourth = await asyncio.wait_for(waiter, PATIENCE)
        assert fourth is not None and fourth > max(t for t in tokens if t is not None)
        for s in (slots[0], slots[2], slots[3]):
            await s.release()


async def check_semaphore_never_exceeds_limit(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name, inside, peak = _name(), [0], [0]

        async def worker() -> None:
            for _ in range(3):
                async with Semaphore(name, b, limit=2, ttl=TTL):
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                    await asyncio.sleep(0.02)
                    inside[0] -= 1

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(5))), PATIENCE * 3)
        assert peak[0] == 2


async def check_readers_share_writers_exclude(make: MakeBackend) -> None:
    async with _backend(make) as b:
        rw = RWLock(_name(), b, ttl=TTL)
        r1, r2, w = rw.read(), rw.read(), rw.write()
        assert await r1.acquire(blocking=False) is not None
        assert await r2.acquire(blocking=False) is not None
        assert await w.acquire(blocking=False) is None
        writer = asyncio.create_task(w.acquire(timeout=PATIENCE))
        await asyncio.sleep(0.3)
        late_reader = rw.read()
        assert await late_reader.acquire(blocking=False) is None  # a writer waits: no new readers
        await r1.release()
        assert not writer.done()
        await r2.release()
        assert await asyncio.wait_for(writer, PATIENCE) is not None
        assert await rw.read().acquire(blocking=False) is None
        await w.release()
        assert await late_reader.acquire(timeout=PATIENCE) is not None
        await late_reader.release()


async def check_shared_lease_expires(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        first = Semaphore(name, b, limit=1, ttl=1.0, auto_renew=False)
        assert await first.acquire() is not None
        second = Semaphore(name, b, limit=1, ttl=TTL)
        assert await second.acquire(timeout=PATIENCE) is not None
        assert first.lease_lost.is_set()
        await second.release()


SHARED_CHECKS = [
    check_semaphore_admits_limit,
    check_semaphore_never_exceeds_limit,
    check_readers_share_writers_exclude,
    check_shared_lease_expires,
]
