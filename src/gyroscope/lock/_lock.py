"""The lock client: blocking, deadlines, lease renewal and loss detection, once for every backend.

Async is the source of truth; ``with lock:`` and ``SyncLock`` run these same coroutines on one
background event loop (``_portal.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from gyroscope.core import Clock, MonotonicClock
from gyroscope.lock._backend import Grant, LockBackend, open_backend
from gyroscope.lock._errors import (
    LeaseLostError,
    LockBackendError,
    LockDatabaseMissingError,
    LockError,
    LockNotHeldError,
    LockTimeout,
)
from gyroscope.lock._metrics import LockMetrics
from gyroscope.lock._policy import DEFAULT_POLICY, Attempts, Lease, RetryPolicy

__all__ = ["Lock", "new_owner_id"]

log = logging.getLogger(__name__)

LeaseLostCallback = Callable[["Lock", LeaseLostError], Any]


def new_owner_id() -> str:
    """A holder identity that says where it runs: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Lock:
    """A named mutual-exclusion lock with a lease and a fencing token.

    >>> import asyncio, tempfile
    >>> async def main() -> int:
    ...     url = f"sqlite:///{tempfile.mkdtemp()}/locks.db"
    ...     async with Lock("nightly-backup", url, ttl=5) as lock:
    ...         return lock.token      # pass it to every write the lock protects
    >>> asyncio.run(main()) >= 1
    True

    While held, the lease is renewed in the background every ttl/3. If renewal fails until the
    lease runs out, or the engine says someone else holds it now, the lock is *lost*: ``lease_lost``
    is set, ``on_lease_lost(lock, error)`` is called, and the next ``release()``/``extend()``
    raises ``LeaseLostError``. ``with``/``async with`` raise it on exit, so a block that ran
    without the lock never finishes quietly.
    """

    def __init__(
        self,
        name: str,
        backend: LockBackend | str,
        *,
        ttl: float = 10.0,
        owner: str | None = None,
        fair: bool = False,
        reentrant: bool = False,
        auto_renew: bool = True,
        timeout: float | None = None,
        on_lease_lost: LeaseLostCallback | None = None,
        metrics: LockMetrics | None = None,
        clock: Clock | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        if not name or "/" in name or len(name) > 200:
            raise LockError(f"invalid lock name {name!r}: 1-200 characters, no '/'")
        if ttl <= 0:
            raise LockError(f"lock {name!r}: ttl must be positive, got {ttl}")
        self.name = name
        self.ttl = float(ttl)
        self.owner_id = owner or new_owner_id()
        self.fair = fair
        self.reentrant = reentrant
        self.auto_renew = auto_renew
        self.timeout = timeout
        self.on_lease_lost = on_lease_lost
        self.metrics = metrics
        self.lease_lost = asyncio.Event()
        self._url = backend if isinstance(backend, str) else None
        self._backend = None if isinstance(backend, str) else backend
        self._clock: Clock = clock or MonotonicClock()
        self._policy = policy
        self._token: int | None = None
        self._lease: Lease | None = None
        self._depth = 0
        self._granted_at = 0.0
        self._lost: LeaseLostError | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._cleanup: asyncio.Task[None] | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def backend(self) -> LockBackend:
        if self._backend is None:
            assert self._url is not None
            self._backend = open_backend(self._url)
        return self._backend

    @property
    def token(self) -> int | None:
        """The fencing token of the current hold, or None when not held."""
        return self._token if self.held else None

    @property
    def held(self) -> bool:
        """Whether this holder holds the lock and its lease has not run out by its own clock."""
        if self._token is None or self._lease is None:
            return False
        if self._lease.expired():
            self._mark_lost("the lease expired before it could be renewed")
            return False
        return True

    def _backend_name(self) -> str:
        return self._backend.scheme if self._backend is not None else "?"

    # -- acquire -----------------------------------------------------------------------------

    async def acquire(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the lock API, like threading.Lock's
        blocking: bool = True,
    ) -> int | None:
        """Wait for the lock (up to ``timeout`` s; not at all with ``blocking=False``).

        Returns the fencing token, or None when the lock was not acquired in time.
        """
        if self._token is not None and self.held:
            if not self.reentrant:
                raise LockError(
                    f"lock {self.name!r} is already held by this Lock (reentrant=False)"
                )
            self._depth += 1
            return self._token
        self._lost = None  # a new hold starts over; the old loss was reported (event, callback)
        if self._cleanup is not None and not self._cleanup.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(1.0, self.ttl) * 2):
                    await asyncio.shield(self._cleanup)
        backend = self.backend
        started = self._clock.monotonic()
        attempts = Attempts(
            clock=self._clock,
            timeout=timeout,
            blocking=blocking,
            notifies=backend.notifies,
            ttl=self.ttl,
            policy=self._policy,
        )
        try:
            grant = await self._acquire_loop(backend, attempts)
        except BaseException:
            await self._abandon_quietly(backend)
            self._count_failure("error")
            raise
        if grant is None:
            await self._abandon_quietly(backend)
            self._count_failure("timeout")
            return None
        granted, sent_at = grant
        self._on_granted(granted, sent_at, waited=self._clock.monotonic() - started)
        return granted.token

    async def _acquire_loop(
        self, backend: LockBackend, attempts: Attempts
    ) -> tuple[Grant, float] | None:
        while True:
            sent_at = self._clock.monotonic()
            try:
                result = await self._bounded(
                    backend.try_acquire(self.name, self.owner_id, self.ttl, fair=self.fair)
                )
            except LockBackendError as exc:
                wait = attempts.after_error() if exc.retryable else None
                if wait is None:
                    raise
                log.debug("lock %s: backend error while acquiring, retrying", self.name)
                await asyncio.sleep(wait)
                continue
            if isinstance(result, Grant):
                return result, sent_at
            wait = attempts.after_busy(retry_after=result.retry_after)
            if wait is None:
                return None
            try:
                await self._bounded(backend.wait(self.name, self.owner_id, wait), extra=wait)
            except LockBackendError:
                await asyncio.sleep(wait)

    async def _bounded(self, coro: Any, extra: float = 0.0) -> Any:
        """Every engine call is bounded, so a blackholed connection cannot hang a holder."""
        limit = max(1.0, self.ttl) + extra
        try:
            async with asyncio.timeout(limit):
                return await coro
        except TimeoutError as exc:
            raise LockBackendError(
                f"no answer from the engine within {limit:.1f}s", lock_name=self.name
            ) from exc

    def _on_granted(self, grant: Grant, sent_at: float, *, waited: float) -> None:
        self._token = grant.token
        self._lease = Lease(clock=self._clock, sent_at=sent_at, ttl=grant.ttl)
        self._depth = 1
        self._granted_at = self._clock.monotonic()
        self._lost = None
        self.lease_lost.clear()
        if self.metrics is not None:
            self.metrics.acquired(self.name, self._backend_name(), wait=waited)
        # A timer, not a task, until the first renewal is due: short holds never pay for a task.
        first = self._lease.renew_delay() if self.auto_renew else self._lease.remaining()
        self._timer = asyncio.get_running_loop().call_later(first, self._start_keeper)
        log.debug("lock %s acquired by %s, token %d", self.name, self.owner_id, grant.token)

    async def _abandon_quietly(self, backend: LockBackend) -> None:
        with contextlib.suppress(LockBackendError, TimeoutError):
            async with asyncio.timeout(max(1.0, self.ttl)):
                await backend.abandon(self.name, self.owner_id)

    def _count_failure(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.failed(self.name, self._backend_name(), outcome=outcome)

    # -- renew -------------------------------------------------------------------------------

    def _start_keeper(self) -> None:
        self._timer = None
        if self._token is None:
            return
        keeper = self._renew_forever() if self.auto_renew else self._expire_at_end()
        self._renewer = asyncio.create_task(keeper, name=f"lock-lease:{self.name}")

    async def _expire_at_end(self) -> None:
        """Without renewal the lease still ends on time, and the holder is told when it does."""
        lease = self._lease
        if lease is None:
            return
        # sleep() may wake a hair early on some clocks, hence the loop
        for _ in range(100):
            if not self._still_holding(lease) or lease.expired():
                break
            await asyncio.sleep(lease.remaining())
        if self._still_holding(lease):
            self._mark_lost("the lease expired (auto_renew=False)")

    async def _renew_forever(self) -> None:
        lease = self._lease
        while lease is not None:
            await asyncio.sleep(lease.renew_delay())
            if not self._still_holding(lease):
                return
            if lease.expired():
                self._mark_lost("the lease expired before it could be renewed")
                return
            try:
                await self._extend_once(self.ttl)
            except LeaseLostError:
                return
            except LockBackendError as exc:
                log.warning("lock %s: lease renewal failed (%s); retrying", self.name, exc)
                lease.renew_failed()

    def _still_holding(self, lease: Lease) -> bool:
        return self._lease is lease and self._token is not None

    async def _extend_once(self, ttl: float) -> float:
        lease, token = self._lease, self._token
        assert lease is not None and token is not None
        sent_at = self._clock.monotonic()
        # Waiting past the lease's end is pointless: by then the lock is lost either way.
        try:
            async with asyncio.timeout(max(0.001, lease.remaining())):
                granted = await self.backend.extend(self.name, self.owner_id, token, ttl)
        except TimeoutError:
            self._mark_lost("the engine did not confirm renewal before the lease ended")
            raise self._pending_loss() from None
        if granted is None:
            self._mark_lost("the engine no longer has this holder's lease (expired or broken)")
            raise self._pending_loss()
        if self._lease is lease:
            lease.renewed(sent_at=sent_at, ttl=granted)
        return granted

    async def extend(self, ttl: float | None = None) -> float:
        """Renew the lease now (optionally with a new ttl); the ttl the engine granted."""
        if self._token is None:
            if self._lost is not None:
                raise self._pending_loss()
            raise LockNotHeldError("extend() of a lock that is not held", lock_name=self.name)
        if not self.held:
            raise self._pending_loss()
        if ttl is not None:
            self.ttl = float(ttl)
        return await self._extend_once(self.ttl)

    def _mark_lost(self, reason: str) -> None:
        if self._token is None:
            return
        token = self._token
        held = self._clock.monotonic() - self._granted_at
        self._clear_hold()
        self._lost = LeaseLostError(f"lease lost (token {token}): {reason}", lock_name=self.name)
        self._drop_on_engine(token)
        self.lease_lost.set()
        log.warning("lock %s: %s", self.name, self._lost)
        if self.metrics is not None:
            self.metrics.lost(self.name, self._backend_name(), held=held)
        if self.on_lease_lost is not None:
            try:
                self.on_lease_lost(self, self._lost)
            except Exception:
                log.exception("lock %s: on_lease_lost callback failed", self.name)

    def _drop_on_engine(self, token: int) -> None:
        """Best effort: delete what the engine may still hold for us (a ZooKeeper node outlives
        our lease while the session lives). Token-checked, so it never touches a newer holder."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._cleanup = loop.create_task(self._release_quietly(token))

    async def _release_quietly(self, token: int, attempts: int = 1) -> None:
        for attempt in range(attempts):
            try:
                async with asyncio.timeout(max(1.0, self.ttl)):
                    await self.backend.release(self.name, self.owner_id, token)
                return
            except (LockError, TimeoutError):
                await asyncio.sleep(min(1.0, 0.05 * 2**attempt))

    def _pending_loss(self) -> LeaseLostError:
        """The loss, kept for release() to report (extend() and renewal only look at it)."""
        return self._lost or LeaseLostError("lease lost", lock_name=self.name)

    def _take_loss(self) -> LeaseLostError:
        lost = self._lost or LeaseLostError("lease lost", lock_name=self.name)
        self._lost = None
        return lost

    def _raise_pending_loss(self) -> None:
        if self._lost is not None:
            raise self._take_loss()

    def _clear_hold(self) -> None:
        self._token = None
        self._lease = None
        self._depth = 0
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        renewer, self._renewer = self._renewer, None
        if renewer is not None and renewer is not asyncio.current_task():
            renewer.cancel()

    # -- release -----------------------------------------------------------------------------

    async def release(self) -> None:
        """Give the lock up. Raises ``LeaseLostError``/``LockNotHeldError`` if it was not held."""
        if self._token is None:
            self._raise_pending_loss()
            raise LockNotHeldError("release() of a lock that is not held", lock_name=self.name)
        if not self.held:
            raise self._take_loss()
        if self._depth > 1:
            self._depth -= 1
            return
        token, held = self._token, self._clock.monotonic() - self._granted_at
        self._clear_hold()
        try:
            released = await self._bounded(self.backend.release(self.name, self.owner_id, token))
        except LockBackendError:
            # Unknown outcome. Keep trying in the background (token-checked, so harmless), and
            # the next acquire() waits for that, so it never gets this hold's token back.
            self._cleanup = asyncio.create_task(self._release_quietly(token, attempts=10))
            raise
        if not released:
            self._mark_lost_after_release(token)
        if self.metrics is not None:
            self.metrics.released(self.name, self._backend_name(), held=held)

    def _mark_lost_after_release(self, token: int) -> None:
        if self.metrics is not None:
            self.metrics.lost(self.name, self._backend_name(), held=0.0)
        self.lease_lost.set()
        raise LeaseLostError(
            f"release(): the engine no longer had this holder's lease (token {token})",
            lock_name=self.name,
        )

    # -- observe -----------------------------------------------------------------------------

    async def owner(self) -> str | None:
        """Who holds the lock now according to the engine (any holder), or None."""
        try:
            info = await self._bounded(self.backend.inspect(self.name))
        except LockDatabaseMissingError:
            return None  # no database yet: nobody can hold the lock
        return info.owner if info is not None else None

    async def locked(self) -> bool:
        """Whether anyone holds the lock now, according to the engine."""
        return await self.owner() is not None

    async def aclose(self) -> None:
        """Stop renewing (without releasing) and close a backend this Lock opened from a URL."""
        self._clear_hold()
        if self._url is not None and self._backend is not None:
            backend, self._backend = self._backend, None
            await backend.aclose()

    # -- context managers --------------------------------------------------------------------

    async def __aenter__(self) -> Lock:
        token = await self.acquire(timeout=self.timeout)
        if token is None:
            raise LockTimeout(f"not acquired within {self.timeout}s", lock_name=self.name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.release()
        finally:
            if self._url is not None and self._token is None:
                await self.aclose()

    def __enter__(self) -> Lock:
        from gyroscope.lock._portal import portal

        portal().call(self.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from gyroscope.lock._portal import portal

        portal().call(self.__aexit__(exc_type, exc, tb))

    def __repr__(self) -> str:
        return f"<Lock {self.name!r} owner={self.owner_id!r} token={self._token}>"
