"""The contract every lock engine implements, and the registry that loads engines by URL.

A backend offers a few *atomic* operations on one named lock. Everything else — blocking, retries,
deadlines, lease renewal, re-entrancy, metrics — lives once, above all backends, in ``_lock.py``.

Backends are named by URL scheme and loaded on first use from ``"module:Class"`` strings, so a
missing optional driver (``redis``, ``kazoo``) only breaks the backend that needs it::

    sqlite:///var/lib/app/locks.db     processes on one host (the embedded default)
    redis://127.0.0.1:6379/0           one Redis (see the safety notes in backends/redis.py)
    etcd://10.0.0.1:2379,10.0.0.2:2379 an etcd cluster through its JSON gateway
    zookeeper://10.0.0.1:2181          a ZooKeeper ensemble through kazoo
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gyroscope.core import Health
from gyroscope.errors import ConfigError
from gyroscope.lock._url import check_backend_url, redact_url, scrub

__all__ = [
    "BACKENDS",
    "Busy",
    "Grant",
    "LockBackend",
    "LockInfo",
    "open_backend",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """A granted lease: the fencing token and how long the engine will keep it without renewal."""

    token: int
    ttl: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Busy:
    """The lock is held by someone else; ``retry_after`` is when it expires if nobody renews it."""

    holder: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LockInfo:
    """What an engine knows about one lock name (for ``status``/``list``)."""

    name: str
    owner: str
    token: int
    ttl_remaining: float | None = None
    waiters: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "token": self.token,
            "ttl_remaining": self.ttl_remaining,
            "waiters": self.waiters,
            **self.extra,
        }


@runtime_checkable
class LockBackend(Protocol):
    """Atomic operations on named locks. ``owner`` identifies one holder (unique per Lock).

    ``try_acquire`` is idempotent for the owner that already holds the lock (it renews and returns
    the same token), so a retry after a lost reply is safe. With ``fair=True`` the caller joins a
    FIFO queue and is granted only when first in line; ``abandon`` leaves the queue.
    """

    scheme: str
    #: True when ``wait`` returns early on a release notification (pub/sub, watch).
    notifies: bool

    async def try_acquire(self, name: str, owner: str, ttl: float, *, fair: bool) -> Grant | Busy:
        """Take the lock if free (or already ours); never blocks on other holders."""
        ...

    async def release(self, name: str, owner: str, token: int) -> bool:
        """Release if ``owner`` still holds ``token``; False when it does not (nothing changed)."""
        ...

    async def extend(self, name: str, owner: str, token: int, ttl: float) -> float | None:
        """Renew the lease; the granted ttl, or None when ``owner`` no longer holds ``token``."""
        ...

    async def abandon(self, name: str, owner: str) -> None:
        """Leave the wait queue (fair mode, etcd, ZooKeeper) after giving up."""
        ...

    async def wait(self, name: str, owner: str, max_wait: float) -> None:
        """Return when the lock may have been released, or after ``max_wait`` seconds."""
        ...

    async def inspect(self, name: str) -> LockInfo | None:
        """The current holder of ``name``, or None when free."""
        ...

    async def list_locks(self) -> list[LockInfo]:
        """Every currently held lock."""
        ...

    async def force_release(self, name: str) -> LockInfo | None:
        """Administrative break: drop the current holder regardless of owner; what was dropped."""
        ...

    async def health(self) -> Health:
        """Reachability and safety of the engine's configuration."""
        ...

    async def aclose(self) -> None:
        """Close connections; the backend cannot be used afterwards."""
        ...


BACKENDS: dict[str, str] = {
    "sqlite": "gyroscope.lock.backends.sqlite:SqliteBackend",
    "redis": "gyroscope.lock.backends.redis:RedisBackend",
    "etcd": "gyroscope.lock.backends.etcd:EtcdBackend",
    "zookeeper": "gyroscope.lock.backends.zookeeper:ZooKeeperBackend",
}


def open_backend(url: str, **options: Any) -> LockBackend:
    """Build (without I/O) the backend named by ``url``'s scheme.

    >>> open_backend("sqlite:///tmp/locks.db").scheme
    'sqlite'
    """
    scheme = check_backend_url(url)
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise ConfigError(
            f"unknown lock backend {redact_url(url)!r}; expected one of {known}", key="backend"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {scheme} lock backend needs an optional driver ({exc.name}); "
            f"install it with: pip install 'gyroscope[{scheme}]'",
            key="backend",
        ) from exc
    try:
        backend: LockBackend = getattr(module, attr).from_url(url, **options)
    except ValueError as exc:  # the driver's own URL parsing (e.g. redis ?socket_timeout=abc)
        raise ConfigError(f"{redact_url(url)}: {scrub(str(exc), url)}", key="backend") from None
    return backend
