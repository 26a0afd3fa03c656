"""Leader election on top of ``Lock``: campaign, observe the leader, resign, lose on lease loss.

The leader is whoever holds the election's lock; its fencing token doubles as the *term*, which
strictly increases from one leader to the next, so followers and resources can reject a deposed
leader's late commands the same way fenced writes are rejected.

``observe()`` is woken by the engine, not by polling: engines that can notify offer
``wait_change(name, seen, max_wait)`` — Redis pub/sub (a release publishes, and a new leader
``announce``s itself, since Redis cannot watch a SET), etcd watches on the election's prefix,
ZooKeeper watches on the holder node. Each call re-reads the leader *after* arming its
notification, so no change slips between the read and the wait. ``fallback`` bounds every wait
anyway: a safety net for a lost notification (a dropped pub/sub connection, a missed watch), not
the mechanism. Engines without notifications (SQLite) are polled every ``poll`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from gyroscope.lock._backend import LockBackend
from gyroscope.lock._errors import LockBackendError, LockNotHeldError
from gyroscope.lock._lock import Lock, new_owner_id

__all__ = ["Election"]


class Election:
    """One candidate in a named election.

    >>> async def scheduler(backend) -> None:  # doctest: +SKIP
    ...     election = Election("scheduler", backend, ttl=10, identity="node-a:8080")
    ...     term = await election.campaign()          # blocks until we lead
    ...     while election.is_leader:
    ...         await run_due_jobs(fencing_token=term)
    ...     # leadership lost (lease expired, session lost) or resigned: stop leading at once

    ``identity`` must be unique per candidate (the default is ``host:pid:random``).
    ``observe()`` waits on the engine's notifications; ``fallback`` (s) bounds each such wait as a
    safety net, and ``poll`` (s) paces it on engines that cannot notify (SQLite).
    ``lost`` is set when leadership ends without ``resign()``.
    """

    def __init__(
        self,
        name: str,
        backend: LockBackend | str,
        *,
        ttl: float = 10.0,
        identity: str | None = None,
        poll: float = 0.5,
        fallback: float = 10.0,
        **options: Any,
    ) -> None:
        self.name = name
        self.identity = identity or new_owner_id()
        self._poll = poll
        self._fallback = fallback
        self._lock = Lock(name, backend, ttl=ttl, owner=self.identity, fair=True, **options)
        self.lost = self._lock.lease_lost

    @property
    def is_leader(self) -> bool:
        return self._lock.held

    @property
    def term(self) -> int | None:
        """The current term (the lock's fencing token) while we lead."""
        return self._lock.token

    async def campaign(self, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Wait to become leader; the term, or None if ``timeout`` passed first."""
        term = await self._lock.acquire(timeout=timeout)
        announce = getattr(self._lock.backend, "announce", None)
        if term is not None and announce is not None:
            with contextlib.suppress(LockBackendError, TimeoutError):  # observers have fallback
                async with asyncio.timeout(max(1.0, self._lock.ttl)):
                    await announce(self.name)
        return term

    async def resign(self) -> None:
        """Step down (a no-op when not leading); the next candidate in line takes over."""
        with contextlib.suppress(LockNotHeldError):
            await self._lock.release()

    async def leader(self) -> str | None:
        """The current leader's identity, as the engine sees it."""
        return await self._lock.owner()

    async def observe(self) -> AsyncIterator[str | None]:
        """Yield the leader's identity now and after every change (None while there is none).

        Woken by the engine's notifications (see the module docstring); never a tight loop.
        """
        last: object = object()
        wait_change = getattr(self._lock.backend, "wait_change", None)
        while True:
            current = await self.leader()
            if current != last:
                last = current
                yield current
            if wait_change is None:
                await asyncio.sleep(self._poll)
                continue
            try:
                async with asyncio.timeout(self._fallback + max(1.0, self._lock.ttl)):
                    await wait_change(self.name, current, self._fallback)
            except (LockBackendError, TimeoutError):
                await asyncio.sleep(self._poll)  # engine unreachable: retry at the polling pace

    async def aclose(self) -> None:
        await self.resign()
        await self._lock.aclose()
