"""Read-write locks and counting semaphores, on engines that can hold a lock several times at once.

They reuse everything ``Lock`` does (waiting, leases, renewal, loss, fencing tokens, metrics): a
``Semaphore`` *is* a ``Lock`` whose backend is a view that asks the engine for a shared grant.

Modes, decided by the engine atomically:

* ``"w"`` (writer) — granted when nobody else holds the name in any mode.
* ``"r"`` (reader) — granted when no writer holds it and no writer is queued ahead (writers are
  not starved by a stream of readers).
* ``"s"`` with ``limit`` N — granted while fewer than N hold it (a counting semaphore).

Every grant still carries a fencing token that increases per name. With several holders at once a
token orders grants, it does not make them exclusive: fence what writers write.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from gyroscope.core import Health
from gyroscope.lock._backend import Busy, Grant, LockBackend, LockInfo, open_backend
from gyroscope.lock._errors import LockError
from gyroscope.lock._lock import Lock

__all__ = ["RWLock", "Semaphore", "SharedLockBackend"]


@runtime_checkable
class SharedLockBackend(Protocol):
    """The extra atomic operations an engine offers for read-write locks and semaphores."""

    async def try_acquire_shared(
        self, name: str, owner: str, ttl: float, *, mode: str, limit: int
    ) -> Grant | Busy: ...

    async def release_shared(self, name: str, owner: str, token: int) -> bool: ...

    async def extend_shared(
        self, name: str, owner: str, token: int, ttl: float
    ) -> float | None: ...

    async def abandon_shared(self, name: str, owner: str) -> None: ...

    async def wait_shared(self, name: str, owner: str, max_wait: float) -> None: ...

    async def holders_shared(self, name: str) -> list[LockInfo]: ...


class _SharedView:
    """A ``LockBackend`` that forwards to an engine's shared operations with one fixed mode."""

    def __init__(self, engine: Any, *, mode: str, limit: int, owned: bool) -> None:
        if not isinstance(engine, SharedLockBackend):
            raise LockError(
                f"the {getattr(engine, 'scheme', '?')} lock backend has no read-write locks or "
                "semaphores; use redis, etcd or zookeeper"
            )
        self.engine: Any = engine
        self.scheme: str = getattr(engine, "scheme", "?")
        self.notifies: bool = bool(getattr(engine, "notifies", False))
        self._mode, self._limit, self._owned = mode, limit, owned

    async def try_acquire(self, name: str, owner: str, ttl: float, *, fair: bool) -> Grant | Busy:
        result: Grant | Busy = await self.engine.try_acquire_shared(
            name, owner, ttl, mode=self._mode, limit=self._limit
        )
        return result

    async def release(self, name: str, owner: str, token: int) -> bool:
        return bool(await self.engine.release_shared(name, owner, token))

    async def extend(self, name: str, owner: str, token: int, ttl: float) -> float | None:
        granted: float | None = await self.engine.extend_shared(name, owner, token, ttl)
        return granted

    async def abandon(self, name: str, owner: str) -> None:
        await self.engine.abandon_shared(name, owner)

    async def wait(self, name: str, owner: str, max_wait: float) -> None:
        await self.engine.wait_shared(name, owner, max_wait)

    async def inspect(self, name: str) -> LockInfo | None:
        holders = await self.list_holders(name)
        return holders[0] if holders else None

    async def list_holders(self, name: str) -> list[LockInfo]:
        holders: list[LockInfo] = await self.engine.holders_shared(name)
        return holders

    async def list_locks(self) -> list[LockInfo]:
        return []

    async def force_release(self, name: str) -> LockInfo | None:
        raise LockError(f"lock {name!r}: breaking a read-write lock or semaphore is not supported")

    async def health(self) -> Health:
        health: Health = await self.engine.health()
        return health

    async def aclose(self) -> None:
        if self._owned:
            await self.engine.aclose()


def _view(backend: LockBackend | str, mode: str, limit: int = 1) -> _SharedView:
    if isinstance(backend, str):
        return _SharedView(open_backend(backend), mode=mode, limit=limit, owned=True)
    return _SharedView(backend, mode=mode, limit=limit, owned=False)


class _OwnedLock(Lock):
    """A Lock over a view; closing it closes an engine the view opened from a URL."""

    def __init__(self, name: str, view: _SharedView, **options: Any) -> None:
        self._view = view
        super().__init__(name, view, **options)

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            if self._view._owned:
                await self._view.aclose()

    async def aclose(self) -> None:
        await super().aclose()
        await self._view.aclose()


class Semaphore(_OwnedLock):
    """At most ``limit`` holders at once (each holder is one ``Semaphore`` object).

    >>> import asyncio
    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with Semaphore("gpu", "redis://127.0.0.1:6379/0", limit=4, ttl=30) as slot:
    ...         print("got one of 4 GPU slots, token", slot.token)
    """

    def __init__(
        self, name: str, backend: LockBackend | str, *, limit: int, **options: Any
    ) -> None:
        if limit < 1:
            raise LockError(f"semaphore {name!r}: limit must be >= 1, got {limit}")
        self.limit = limit
        super().__init__(name, _view(backend, "s", limit), **options)

    async def holders(self) -> list[LockInfo]:
        """Everyone holding a permit now."""
        return await self._view.list_holders(self.name)


class RWLock:
    """A read-write lock: ``read()`` and ``write()`` give ``Lock`` objects for one holder each.

    >>> async def main() -> None:  # doctest: +SKIP
    ...     index = RWLock("search-index", "etcd://127.0.0.1:2379", ttl=10)
    ...     async with index.read() as reader:    # many readers at once
    ...         ...
    ...     async with index.write() as writer:   # one writer, nobody reading
    ...         ...
    """

    def __init__(self, name: str, backend: LockBackend | str, **options: Any) -> None:
        self.name = name
        self._backend = backend
        self._options = options

    def read(self, **options: Any) -> Lock:
        return _OwnedLock(self.name, _view(self._backend, "r"), **{**self._options, **options})

    def write(self, **options: Any) -> Lock:
        return _OwnedLock(self.name, _view(self._backend, "w"), **{**self._options, **options})
