"""Leader election on top of ``Lock``: campaign, observe the leader, resign, lose on lease loss.

The leader is whoever holds the election's lock; its fencing token doubles as the *term*, which
strictly increases from one leader to the next, so followers and resources can reject a deposed
leader's late commands the same way fenced writes are rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from gyroscope.lock._backend import LockBackend
from gyroscope.lock._errors import LockNotHeldError
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
        **options: Any,
    ) -> None:
        self.name = name
        self.identity = identity or new_owner_id()
        self._poll = poll
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
        return await self._lock.acquire(timeout=timeout)

    async def resign(self) -> None:
        """Step down (a no-op when not leading); the next candidate in line takes over."""
        with contextlib.suppress(LockNotHeldError):
            await self._lock.release()

    async def leader(self) -> str | None:
        """The current leader's identity, as the engine sees it."""
        return await self._lock.owner()

    async def observe(self) -> AsyncIterator[str | None]:
        """Yield the leader's identity now and after every change (None while there is none)."""
        last: object = object()
        while True:
            current = await self.leader()
            if current != last:
                last = current
                yield current
            await asyncio.sleep(self._poll)

    async def aclose(self) -> None:
        await self.resign()
        await self._lock.aclose()
