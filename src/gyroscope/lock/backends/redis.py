"""Redis lock engine: ``SET NX PX``-style leases, Lua for every check-and-act, a fence counter.

Safety model (read before relying on it):

* Each check-and-act (acquire, token-checked release, token-checked extend) is one Lua script, so
  it is atomic on the server. The fencing token comes from ``INCR`` on ``gyro:fence:{name}``
  inside the acquire script, so tokens strictly increase per name as long as the server keeps its
  data.
* A single Redis is a single point of truth. If it crashes and restarts *without* ``appendonly
  yes`` + ``appendfsync always``, it may come back without the lock key (a second holder gets in)
  and with an older fence counter (tokens repeat, so fencing cannot reject the old holder). We
  check ``CONFIG GET`` on first use and warn (log + ``health()`` degraded); pass
  ``require_safe=True`` to refuse to run instead. Replicas do not help: replication is
  asynchronous, so a failover can lose a granted lock the same way.
* Expiry is measured by the server's clock; a holder counts its lease from the moment it *sent*
  the request, so it believes it lost the lock before the server lets anyone else in (barring a
  server clock jump).

Waiters subscribe to ``gyro:lockev:{name}``; release publishes there. A holder that dies does not
publish, so a waiter also sleeps no later than the holder's remaining ``PTTL``, which the busy
answer carries. Fair mode keeps a FIFO queue (a ticket ZSET plus a per-waiter expiry hash); a
waiter that stops retrying drops out after one ttl.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from gyroscope.core import Health
from gyroscope.lock._backend import Busy, Grant, LockInfo
from gyroscope.lock._errors import LockBackendError, UnsafeBackendError

__all__ = ["RedisBackend"]

log = logging.getLogger(__name__)

_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
local holder = nil
if cur then
  local sep = string.find(cur, ':', 1, true)
  holder = string.sub(cur, sep + 1)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(string.sub(cur, 1, sep - 1))}
  end
end
if ARGV[3] == '1' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl = tonumber(ARGV[2])
  local mine = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '-1')
  if mine < 0 then
    redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), ARGV[1])
  end
  -- Refresh our place only when half of it is used up: most busy retries then write nothing,
  -- and with appendfsync always a write costs an fsync.
  if mine < now + ttl / 2 then
    redis.call('HSET', KEYS[4], ARGV[1], now + ttl)
    for _, k in ipairs({KEYS[3], KEYS[4], KEYS[5]}) do redis.call('PEXPIRE', k, 4 * ttl) end
  end
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  while head and tonumber(redis.call('HGET', KEYS[4], head) or '0') <= now do
    redis.call('ZREM', KEYS[3], head)
    redis.call('HDEL', KEYS[4], head)
    head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  end
  if cur then return {0, redis.call('PTTL', KEYS[1]), holder} end
  if head ~= ARGV[1] then return {0, -1, false} end
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
elseif cur then
  return {0, redis.call('PTTL', KEYS[1]), holder}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return {1, token}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  -- Wake only the first live waiter of the fair queue (no herd); everyone if there is none.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local next = '*'
  for _, owner in ipairs(redis.call('ZRANGE', KEYS[2], 0, 15)) do
    if tonumber(redis.call('HGET', KEYS[3], owner) or '0') > now then
      next = owner
      break
    end
  end
  redis.call('PUBLISH', ARGV[2], next)
  return 1
end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_ABANDON = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
"""


def _keys(name: str) -> list[str]:
    tag = "{" + name + "}"  # one hash slot per lock name, for Redis Cluster
    return [
        f"gyro:lock:{tag}",
        f"gyro:fence:{tag}",
        f"gyro:lockq:{tag}",
        f"gyro:lockqx:{tag}",
        f"gyro:lockt:{tag}",
    ]


def _release_keys(name: str) -> list[str]:
    keys = _keys(name)
    return [keys[0], keys[2], keys[3]]


ANNOUNCE = "!"  # not an owner id (those are host:pid:random), so it wakes no waiter


def _channel(name: str) -> str:
    return f"gyro:lockev:{{{name}}}"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


# -- read-write locks and semaphores (see gyroscope.lock._shared) ------------------------------
#
# Holders live in a ZSET scored by their expiry (server time, ms), with their token and mode in
# hashes. A writer that is refused leaves a short-lived "writer waiting" mark so readers stop
# piling in ahead of it. Grants are not FIFO on Redis.

_SHARED_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for _, o in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[1], o)
  redis.call('HDEL', KEYS[2], o)
  redis.call('HDEL', KEYS[3], o)
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  return {1, tonumber(redis.call('HGET', KEYS[2], ARGV[1]))}
end
local n = redis.call('ZCARD', KEYS[1])
local ok
if ARGV[3] == 'w' then
  ok = n == 0
  local waiting = redis.call('GET', KEYS[5])
  if waiting and waiting ~= ARGV[1] then ok = false end
  if not ok and not waiting then redis.call('SET', KEYS[5], ARGV[1], 'PX', ttl) end
  if not ok and waiting == ARGV[1] then redis.call('PEXPIRE', KEYS[5], ttl) end
elseif ARGV[3] == 'r' then
  ok = redis.call('EXISTS', KEYS[5]) == 0
  for _, m in ipairs(redis.call('HVALS', KEYS[3])) do if m == 'w' then ok = false end end
else
  ok = n < tonumber(ARGV[4])
end
if not ok then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then return {0, tonumber(first[2]) - now} end
  return {0, -1}
end
if ARGV[3] == 'w' then redis.call('DEL', KEYS[5]) end
local token = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], token)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return {1, token}
"""

_SHARED_RELEASE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local alive = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0') > now
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[3], '*')
if alive then return 1 end
return 0
"""

_SHARED_EXTEND = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0') <= now then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""


def _shared_keys(name: str) -> list[str]:
    tag = "{" + name + "}"
    return [
        f"gyro:sh:{tag}",
        f"gyro:shtok:{tag}",
        f"gyro:shmode:{tag}",
        f"gyro:shfence:{tag}",
        f"gyro:shww:{tag}",
    ]


def _shared_channel(name: str) -> str:
    return f"gyro:shev:{{{name}}}"


class _RedisShared:
    """Mixed into RedisBackend: the SharedLockBackend operations."""

    async def try_acquire_shared(
        self: Any, name: str, owner: str, ttl: float, *, mode: str, limit: int
    ) -> Grant | Busy:
        script = self._scripts["shared_acquire"]
        got = await self._call(script, _shared_keys(name), [owner, _ms(ttl), mode, limit])
        if int(got[0]) == 1:
            return Grant(token=int(got[1]), ttl=ttl)
        wait = int(got[1])
        return Busy(retry_after=wait / 1000 if wait >= 0 else None)

    async def release_shared(self: Any, name: str, owner: str, token: int) -> bool:
        script = self._scripts["shared_release"]
        args = [owner, str(token), _shared_channel(name)]
        return bool(await self._call(script, _shared_keys(name), args))

    async def extend_shared(
        self: Any, name: str, owner: str, token: int, ttl: float
    ) -> float | None:
        script = self._scripts["shared_extend"]
        done = await self._call(script, _shared_keys(name), [owner, str(token), _ms(ttl)])
        return ttl if done else None

    async def abandon_shared(self: Any, name: str, owner: str) -> None:
        key = _shared_keys(name)[4]
        try:
            if await self._client.get(key) == owner:
                await self._client.delete(key)
        except RedisError as exc:
            raise LockBackendError(f"redis {self._where()}: {exc}") from exc

    async def wait_shared(self: Any, name: str, owner: str, max_wait: float) -> None:
        await self._wait_channel(_shared_channel(name), owner, max_wait)

    async def holders_shared(self: Any, name: str) -> list[LockInfo]:
        keys = _shared_keys(name)
        try:
            now_s, now_us = await self._client.time()
            holders = await self._client.zrange(keys[0], 0, -1, withscores=True)
            tokens = await self._client.hgetall(keys[1])
            modes = await self._client.hgetall(keys[2])
        except RedisError as exc:
            raise LockBackendError(f"redis {self._where()}: {exc}") from exc
        now = now_s + now_us / 1e6
        return [
            LockInfo(
                name=name,
                owner=o,
                token=int(tokens.get(o, 0)),
                ttl_remaining=round(score / 1000 - now, 3),
                extra={"mode": modes.get(o)},
            )
            for o, score in holders
            if score / 1000 > now
        ]


class RedisBackend(_RedisShared):
    """Locks on one Redis server.

    >>> RedisBackend.from_url("redis://127.0.0.1:16379/0").scheme
    'redis'
    """

    scheme = "redis"
    notifies = True

    def __init__(self, url: str, *, op_timeout: float = 5.0, require_safe: bool = False) -> None:
        self.url = url
        self.require_safe = require_safe
        # No driver-level retries: re-sending a release whose reply was lost would report the
        # lock as lost. Acquire is idempotent per owner, so the layer above retries that.
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=op_timeout,
            socket_connect_timeout=op_timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._extend = self._client.register_script(_EXTEND)
        self._abandon = self._client.register_script(_ABANDON)
        self._scripts = {
            "shared_acquire": self._client.register_script(_SHARED_ACQUIRE),
            "shared_release": self._client.register_script(_SHARED_RELEASE),
            "shared_extend": self._client.register_script(_SHARED_EXTEND),
        }
        self._checked = False
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()
        self._waiters: dict[str, dict[asyncio.Event, str]] = {}
        self._observers: dict[str, set[asyncio.Event]] = {}  # Election.observe(): any message
        # A wake-up addressed to an owner that was between two attempts (not waiting yet) is kept
        # here, so its next wait() returns at once instead of sleeping through its turn.
        self._pending: set[tuple[str, str]] = set()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        return cls(url, **options)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if not self._checked:
            await self._check_config()
        try:
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise LockBackendError(f"redis {self._where()}: {exc}") from exc

    def _where(self) -> str:
        kw = self._client.connection_pool.connection_kwargs
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}"

    # -- safety check ------------------------------------------------------------------------

    async def _unsafe_reason(self) -> str | None:
        try:
            conf = await self._client.config_get("append*")
        except RedisError as exc:
            return f"cannot read the persistence config ({exc}); assuming it is unsafe"
        if conf.get("appendonly") != "yes":
            return "appendonly is off: a restart loses every lock and resets the fence counter"
        if conf.get("appendfsync") != "always":
            return (
                f"appendfsync is {conf.get('appendfsync')!r}, not 'always': a crash can lose "
                "recent grants and fence increments"
            )
        return None

    async def _check_config(self) -> None:
        reason = await self._unsafe_reason()
        self._checked = True
        if reason is None:
            return
        if self.require_safe:
            self._checked = False
            raise UnsafeBackendError(f"redis {self._where()} is unsafe for locks: {reason}")
        log.warning("redis %s is unsafe for locks: %s", self._where(), reason)

    # -- protocol ----------------------------------------------------------------------------

    async def try_acquire(self, name: str, owner: str, ttl: float, *, fair: bool) -> Grant | Busy:
        got = await self._call(self._acquire, _keys(name), [owner, _ms(ttl), "1" if fair else "0"])
        if int(got[0]) == 1:
            return Grant(token=int(got[1]), ttl=ttl)
        pttl = int(got[1])
        return Busy(holder=got[2] or None, retry_after=pttl / 1000 if pttl >= 0 else None)

    async def release(self, name: str, owner: str, token: int) -> bool:
        done = await self._call(
            self._release, _release_keys(name), [f"{token}:{owner}", _channel(name)]
        )
        return bool(done)

    async def extend(self, name: str, owner: str, token: int, ttl: float) -> float | None:
        done = await self._call(self._extend, _keys(name)[:1], [f"{token}:{owner}", _ms(ttl)])
        return ttl if done else None

    async def abandon(self, name: str, owner: str) -> None:
        await self._call(self._abandon, _keys(name)[2:4], [owner])

    async def wait(self, name: str, owner: str, max_wait: float) -> None:
        await self._wait_channel(_channel(name), owner, max_wait)

    async def _wait_channel(self, channel: str, owner: str, max_wait: float) -> None:
        if (channel, owner) in self._pending:
            self._pending.discard((channel, owner))
            return
        if channel not in self._subscribed:
            await self._subscribe(channel)
            return  # the caller re-checks now that no release can slip past unnoticed
        event = asyncio.Event()
        self._waiters.setdefault(channel, {})[event] = owner
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max_wait):
                    await event.wait()
        finally:
            self._waiters[channel].pop(event, None)

    async def _subscribe(self, channel: str) -> None:
        try:
            if self._pubsub is None:
                self._pubsub = self._client.pubsub()
            await self._pubsub.subscribe(channel)
        except RedisError as exc:
            await self._drop_pubsub()
            raise LockBackendError(f"redis {self._where()}: subscribe: {exc}") from exc
        self._subscribed.add(channel)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(self._pubsub), name="gyro-lock-redis-sub")

    async def _read(self, pubsub: PubSub) -> None:
        try:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self._wake(message["channel"], message["data"])
        except (RedisError, OSError) as exc:
            log.debug("redis %s: notification channel closed (%s)", self._where(), exc)
        finally:
            self._subscribed.clear()
            if self._pubsub is pubsub:
                self._pubsub = None
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            for events in [*self._waiters.values(), *self._observers.values()]:
                for event in events:
                    event.set()  # waiters re-check and re-subscribe

    def _wake(self, channel: str, wake: str) -> None:
        """``wake`` is an owner (the fair queue's next in line), ``*`` for every waiter, or
        ``!`` (``announce``: a new holder, which wakes only observers)."""
        for observer in self._observers.get(channel, ()):
            observer.set()
        if wake == ANNOUNCE:
            return
        woken = False
        for event, owner in self._waiters.get(channel, {}).items():
            if wake in ("*", owner):
                event.set()
                woken = True
        if not woken and wake != "*" and len(self._pending) < 10_000:
            self._pending.add((channel, wake))

    async def wait_change(self, name: str, seen: str | None, max_wait: float) -> None:
        """Return when the holder of ``name`` is not ``seen`` (or may have changed: a release or
        an ``announce`` was published), or after ``max_wait``. A holder that dies publishes
        nothing, so the wait also ends when its key's PTTL runs out."""
        channel = _channel(name)
        if channel not in self._subscribed:
            await self._subscribe(channel)
        event = asyncio.Event()
        self._observers.setdefault(channel, set()).add(event)
        try:
            info = await self.inspect(name)  # after subscribing: no change slips past
            if (info.owner if info is not None else None) != seen:
                return
            if info is not None and info.ttl_remaining is not None:
                max_wait = min(max_wait, info.ttl_remaining + 0.05)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max_wait):
                    await event.wait()
        finally:
            self._observers[channel].discard(event)

    async def announce(self, name: str) -> None:
        """Tell observers a new holder took ``name`` (Redis has no watch on SET by default)."""
        try:
            await self._client.publish(_channel(name), ANNOUNCE)
        except RedisError as exc:
            raise LockBackendError(f"redis {self._where()}: publish: {exc}") from exc

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed.clear()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def inspect(self, name: str) -> LockInfo | None:
        key = _keys(name)[0]
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                pipe.zcard(_keys(name)[2])
                value, pttl, waiters = await pipe.execute()
        except RedisError as exc:
            raise LockBackendError(f"redis {self._where()}: {exc}") from exc
        if value is None:
            return None
        token, _, owner = value.partition(":")
        ttl = pttl / 1000 if pttl >= 0 else None
        return LockInfo(
            name=name, owner=owner, token=int(token), ttl_remaining=ttl, waiters=waiters
        )

    async def list_locks(self) -> list[LockInfo]:
        names: list[str] = []
        try:
            async for key in self._client.scan_iter(match="gyro:lock:{*}", count=500):
                names.append(key[len("gyro:lock:{") : -1])
        except RedisError as exc:
            raise LockBackendError(f"redis {self._where()}: {exc}") from exc
        infos = [await self.inspect(n) for n in sorted(names)]
        return [i for i in infos if i is not None]

    async def force_release(self, name: str) -> LockInfo | None:
        info = await self.inspect(name)
        if info is not None:
            await self._call(
                self._release, _release_keys(name), [f"{info.token}:{info.owner}", _channel(name)]
            )
            log.warning(
                "lock %s broken by administrator (owner %s, token %d)", name, info.owner, info.token
            )
        return info

    async def health(self) -> Health:
        try:
            await self._client.ping()
        except RedisError as exc:
            return Health(name="lock:redis", status="down", detail=f"{self._where()}: {exc}")
        reason = await self._unsafe_reason()
        if reason is not None:
            return Health(name="lock:redis", status="degraded", detail=reason)
        return Health(name="lock:redis", status="ok", detail=f"{self._where()} appendfsync always")

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._reader
        await self._drop_pubsub()
        await self._client.aclose()
