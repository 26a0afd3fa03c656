"""The behaviour every lock backend must show, as reusable async checks.

A backend author runs every check against a real engine::

    @pytest.mark.parametrize("check", LOCK_CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check, make_backend):
        await check(make_backend)

``make_backend`` is an async callable returning a fresh, connected-on-use backend; the check
closes what it opens. Lock names are random, so checks can share an engine.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from gyroscope.lock import (
    Grant,
    LeaseLostError,
    Lock,
    LockBackend,
    LockNotHeldError,
    LockTimeout,
)

__all__ = ["LOCK_CHECKS", "MakeBackend"]

MakeBackend = Callable[[], Awaitable[LockBackend]]
TTL = 2.0
PATIENCE = 20.0  # generous bound for anything that "should happen soon" on a loaded machine


def _name() -> str:
    return f"conf-{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def _backend(make: MakeBackend) -> AsyncIterator[LockBackend]:
    backend = await make()
    try:
        yield backend
    finally:
        await backend.aclose()


async def check_exclusive_and_observable(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        a, c = Lock(name, b, ttl=TTL), Lock(name, b, ttl=TTL)
        assert not await a.locked()
        token = await a.acquire(blocking=False)
        assert token is not None and token >= 1 and a.token == token and a.held
        assert await c.acquire(blocking=False) is None
        assert await c.owner() == a.owner_id and await c.locked()
        info = await b.inspect(name)
        assert info is not None and info.token == token and info.owner == a.owner_id
        assert name in [i.name for i in await b.list_locks()]
        await a.release()
        assert await c.owner() is None and not a.held


async def check_tokens_increase(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name, tokens = _name(), list[int]()
        for _ in range(5):
            lock = Lock(name, b, ttl=TTL)
            token = await lock.acquire(timeout=PATIENCE)
            assert token is not None
            tokens.append(token)
            await lock.release()
        assert tokens == sorted(set(tokens)), tokens  # strictly increasing


async def check_release_not_held_raises(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        a, c = Lock(name, b, ttl=TTL), Lock(name, b, ttl=TTL)
        try:
            await c.release()
            raise AssertionError("release() of an unheld lock did not raise")
        except LockNotHeldError:
            pass
        await a.acquire()
        await a.release()
        try:
            await a.release()
            raise AssertionError("a second release() did not raise")
        except LockNotHeldError:
            pass


async def check_waiter_woken_on_release(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        a, c = Lock(name, b, ttl=TTL), Lock(name, b, ttl=TTL)
        first = await a.acquire()
        waiter = asyncio.create_task(c.acquire(timeout=PATIENCE))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        await a.release()
        second = await asyncio.wait_for(waiter, PATIENCE)
        assert second is not None and first is not None and second > first
        await c.release()


async def check_timeout(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        a = Lock(name, b, ttl=TTL)
        await a.acquire()
        assert await Lock(name, b, ttl=TTL).acquire(timeout=0.3) is None
        try:
            async with Lock(name, b, ttl=TTL, timeout=0.2):
                raise AssertionError("entered a lock held by someone else")
        except LockTimeout:
            pass
        await a.release()


async def check_expiry_without_renewal(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        lost: list[LeaseLostError] = []
        a = Lock(name, b, ttl=1.0, auto_renew=False, on_lease_lost=lambda _l, e: lost.append(e))
        first = await a.acquire()
        second_lock = Lock(name, b, ttl=TTL)
        second = await second_lock.acquire(timeout=PATIENCE)
        assert first is not None and second is not None and second > first
        assert not a.held and a.lease_lost.is_set() and lost
        for op in (a.release, a.extend):
            try:
                await op()
                raise AssertionError(f"{op.__name__}() after losing the lease did not raise")
            except LockNotHeldError:
                pass
        await second_lock.release()


async def check_renewal_keeps_lock(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        a = Lock(name, b, ttl=1.5)
        token = await a.acquire()
        assert await Lock(name, b, ttl=TTL).acquire(timeout=3.0) is None  # two ttls
        assert a.held and a.token == token and not a.lease_lost.is_set()
        assert await a.extend() > 0
        await a.release()


async def check_reentrant(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        a = Lock(name, b, ttl=TTL, reentrant=True)
        t1 = await a.acquire()
        t2 = await a.acquire()
        assert t1 == t2
        await a.release()
        assert a.held and await a.owner() == a.owner_id
        await a.release()
        assert await a.owner() is None
        plain = Lock(name, b, ttl=TTL)
        await plain.acquire()
        try:
            await plain.acquire(blocking=False)
            raise AssertionError("a non-reentrant lock was acquired twice")
        except Exception as exc:
            assert "reentrant" in str(exc)
        await plain.release()


async def check_idempotent_acquire(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name, owner = _name(), f"owner-{uuid.uuid4().hex[:6]}"
        first = await b.try_acquire(name, owner, TTL, fair=False)
        again = await b.try_acquire(name, owner, TTL, fair=False)
        # a retry after a lost reply gets the same grant
        assert isinstance(first, Grant) and isinstance(again, Grant), (first, again)
        assert first.token == again.token
        assert await b.release(name, owner, first.token)
        assert not await b.release(name, owner, first.token)


async def check_fifo_when_fair(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name, order = _name(), []
        holder = Lock(name, b, ttl=TTL, fair=True)
        await holder.acquire()

        async def wait_turn(i: int) -> None:
            lock = Lock(name, b, ttl=TTL, fair=True)
            await lock.acquire(timeout=PATIENCE)
            order.append(i)
            await asyncio.sleep(0.05)
            await lock.release()

        tasks = []
        for i in range(3):
            tasks.append(asyncio.create_task(wait_turn(i)))
            await _until_waiting(b, name, i + 1)  # each joins the queue before the next
        await holder.release()
        await asyncio.wait_for(asyncio.gather(*tasks), PATIENCE * 2)
        assert order == [0, 1, 2], order


async def _until_waiting(b: LockBackend, name: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while loop.time() < deadline:
        info = await b.inspect(name)
        if info is not None and info.waiters >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} waiters never queued on {name}")


async def check_break_is_noticed(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name = _name()
        a = Lock(name, b, ttl=TTL)
        token = await a.acquire()
        dropped = await b.force_release(name)
        assert dropped is not None and dropped.token == token
        try:
            await a.extend()
            raise AssertionError("extend() after an administrative break did not raise")
        except LeaseLostError:
            pass
        assert a.lease_lost.is_set()
        other = Lock(name, b, ttl=TTL)
        assert (await other.acquire(blocking=False) or 0) > (token or 0)
        await other.release()


async def check_mutual_exclusion_under_contention(make: MakeBackend) -> None:
    async with _backend(make) as b:
        name, inside, seen, tokens = _name(), [0], [], list[int | None]()

        async def worker() -> None:
            for _ in range(4):
                async with Lock(name, b, ttl=TTL) as lock:
                    inside[0] += 1
                    seen.append(inside[0])
                    tokens.append(lock.token)
                    await asyncio.sleep(0.01)
                    inside[0] -= 1

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(4))), PATIENCE * 3)
        assert max(seen) == 1 and len(tokens) == 16
        granted = [t for t in tokens if t is not None]
        assert granted == sorted(set(granted)) and len(granted) == 16


LOCK_CHECKS = [
    check_exclusive_and_observable,
    check_tokens_increase,
    check_release_not_held_raises,
    check_waiter_woken_on_release,
    check_timeout,
    check_expiry_without_renewal,
    check_renewal_keeps_lock,
    check_reentrant,
    check_idempotent_acquire,
    check_fifo_when_fair,
    check_break_is_noticed,
    check_mutual_exclusion_under_contention,
]
