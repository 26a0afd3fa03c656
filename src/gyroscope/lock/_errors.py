"""Errors of ``gyroscope.lock``; all subclass ``gyroscope.errors.LockError``::

LockError
 ├── LockBackendError      the engine failed or is unreachable (retryable); driver errors map here
 │    └── UnsafeBackendError  the engine's configuration cannot keep a lock through a crash
 ├── LockDatabaseMissingError  a read-only look at a lock database file that does not exist
 ├── LockTimeout           acquire(timeout=...) gave up waiting
 ├── LockNotHeldError      release()/extend() of a lock this holder does not hold (any more)
 │    └── LeaseLostError   the lease expired or was taken while we believed we held it
 └── StaleTokenError       a fenced write carried a token older than one already seen
"""

from __future__ import annotations

from gyroscope.errors import LockError

__all__ = [
    "LeaseLostError",
    "LockBackendError",
    "LockDatabaseMissingError",
    "LockError",
    "LockNotHeldError",
    "LockTimeout",
    "StaleTokenError",
    "UnsafeBackendError",
]


class _NamedLockError(LockError):
    def __init__(self, message: str, *, lock_name: str | None = None) -> None:
        self.lock_name = lock_name
        super().__init__(f"lock {lock_name!r}: {message}" if lock_name else message)


class LockBackendError(_NamedLockError):
    """The lock engine failed, timed out or is unreachable; the same call may work later."""

    retryable = True


class LockDatabaseMissingError(LockError):
    """``status``/``list`` of a SQLite lock file that does not exist: a wrong path, most likely.

    Only acquiring creates the database; nobody can hold a lock in a file that is not there.
    """

    exit_code = 2


class UnsafeBackendError(LockBackendError):
    """The engine is configured so that a crash can lose a granted lock (raised only on request)."""

    retryable = False


class LockTimeout(_NamedLockError):
    """``acquire(timeout=...)`` waited the whole timeout without getting the lock."""

    retryable = True


class LockNotHeldError(_NamedLockError):
    """``release()`` or ``extend()`` of a lock this holder does not hold."""


class LeaseLostError(LockNotHeldError):
    """The holder's lease ended (expired, broken, session lost) while it believed it held the lock."""


class StaleTokenError(_NamedLockError):
    """A fenced write carried a token lower than the highest the resource has already accepted."""

    def __init__(self, *, resource: str, token: int, highest: int) -> None:
        self.resource = resource
        self.token = token
        self.highest = highest
        super().__init__(
            f"{resource}: write with fencing token {token} rejected; token {highest} was already "
            "seen (the writer lost its lock)"
        )
