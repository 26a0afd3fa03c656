"""Distributed locks with leases and fencing tokens on SQLite, Redis, etcd and ZooKeeper.

>>> import asyncio, tempfile
>>> from gyroscope.lock import Lock
>>> async def main() -> None:
...     async with Lock("nightly-backup", f"sqlite:///{tempfile.mkdtemp()}/l.db", ttl=10) as lock:
...         print("token", lock.token)
>>> asyncio.run(main())
token 1

See ``Lock`` for the lease and loss semantics, ``FencedResource`` for fencing, and the module
docstrings in ``gyroscope.lock.backends`` for what each engine guarantees.
"""

from gyroscope.lock._backend import BACKENDS, Busy, Grant, LockBackend, LockInfo, open_backend
from gyroscope.lock._election import Election
from gyroscope.lock._errors import (
    LeaseLostError,
    LockBackendError,
    LockDatabaseMissingError,
    LockError,
    LockNotHeldError,
    LockTimeout,
    StaleTokenError,
    UnsafeBackendError,
)
from gyroscope.lock._fenced import FencedResource
from gyroscope.lock._lock import Lock, new_owner_id
from gyroscope.lock._metrics import LockMetrics
from gyroscope.lock._policy import Attempts, Lease, RetryPolicy
from gyroscope.lock._shared import RWLock, Semaphore, SharedLockBackend
from gyroscope.lock._sync import SyncLock

__all__ = [
    "BACKENDS",
    "Attempts",
    "Busy",
    "Election",
    "FencedResource",
    "Grant",
    "Lease",
    "LeaseLostError",
    "Lock",
    "LockBackend",
    "LockBackendError",
    "LockDatabaseMissingError",
    "LockError",
    "LockInfo",
    "LockMetrics",
    "LockNotHeldError",
    "LockTimeout",
    "RWLock",
    "RetryPolicy",
    "Semaphore",
    "SharedLockBackend",
    "StaleTokenError",
    "SyncLock",
    "UnsafeBackendError",
    "new_owner_id",
    "open_backend",
]
