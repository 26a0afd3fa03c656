"""``SyncLock``: the blocking face of ``Lock``. Every method is one line around the coroutine."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from gyroscope.lock._backend import LockBackend
from gyroscope.lock._errors import LeaseLostError, LockTimeout
from gyroscope.lock._lock import Lock
from gyroscope.lock._portal import portal

__all__ = ["SyncLock"]


class SyncLock:
    """A ``Lock`` for threads and scripts without an event loop.

    >>> import tempfile
    >>> lock = SyncLock("report", f"sqlite:///{tempfile.mkdtemp()}/l.db", ttl=5)
    >>> with lock:
    ...     lock.token is not None
    True
    >>> lock.close()

    ``lease_lost`` here is a ``threading.Event``. Use one backend per loop: a backend instance
    given to a ``SyncLock`` runs on the facade's background loop only.
    """

    def __init__(self, name: str, backend: LockBackend | str, **options: Any) -> None:
        self._user_callback = options.pop("on_lease_lost", None)
        self.lease_lost = threading.Event()
        self._portal = portal()
        self._lock = Lock(name, backend, on_lease_lost=self._lost, **options)

    def _lost(self, lock: Lock, error: LeaseLostError) -> None:
        self.lease_lost.set()
        if self._user_callback is not None:
            self._user_callback(lock, error)

    @property
    def name(self) -> str:
        return self._lock.name

    @property
    def token(self) -> int | None:
        return self._lock.token

    @property
    def held(self) -> bool:
        return self._portal.call(self._held())

    async def _held(self) -> bool:
        return self._lock.held

    @property
    def owner_id(self) -> str:
        return self._lock.owner_id

    def acquire(self, timeout: float | None = None, blocking: bool = True) -> int | None:
        self.lease_lost.clear()
        return self._portal.call(self._lock.acquire(timeout=timeout, blocking=blocking))

    def release(self) -> None:
        self._portal.call(self._lock.release())

    def extend(self, ttl: float | None = None) -> float:
        return self._portal.call(self._lock.extend(ttl))

    def owner(self) -> str | None:
        return self._portal.call(self._lock.owner())

    def locked(self) -> bool:
        return self._portal.call(self._lock.locked())

    def close(self) -> None:
        self._portal.call(self._lock.aclose())

    def __enter__(self) -> SyncLock:
        token = self.acquire(timeout=self._lock.timeout)
        if token is None:
            raise LockTimeout(f"not acquired within {self._lock.timeout}s", lock_name=self.name)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
