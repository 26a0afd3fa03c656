"""etcd lock engine (the Raft-based option), through etcd's JSON gRPC gateway over httpx.

Why the gateway: the ``etcd3`` client no longer imports with current protobuf, and the gateway
(``/v3/kv/txn``, ``/v3/lease/*``, ``/v3/watch``) ships with every etcd 3.4+ server.

How it works (the recipe of etcd's own ``concurrency.Mutex``):

* Each backend keeps one *session lease* per ttl (whole seconds; etcd enforces a minimum, ~2 s
  with default timings) and renews it when a holder extends or a waiter retries.
* Acquiring puts ``gyro/lock/<name>/<lease>-<owner>`` bound to the lease, in one transaction that
  also reads the oldest key under the name. Whoever's key is oldest holds the lock; the others
  wait in create order (FIFO by construction, so ``fair`` changes nothing here).
* The key's ``create_revision`` is the fencing token: etcd revisions only grow, cluster-wide.
* Waiters watch the prefix from the revision they saw; a release or an expired lease deletes a key
  and wakes them. No polling beyond the bounded fallback.

Safety: a grant is committed through Raft, so it survives the loss of a minority of members and a
leader change (etcd extends leases across elections, never shortens them). Mutual exclusion still
rests on leases: a holder paused past its ttl loses the lock; fencing tokens protect the resource.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import httpx

from gyroscope.core import Health
from gyroscope.lock._backend import Busy, Grant, LockInfo
from gyroscope.lock._errors import LockBackendError
from gyroscope.lock._policy import shared_admits
from gyroscope.lock._url import redact_url, scrub

__all__ = ["EtcdBackend"]

log = logging.getLogger(__name__)
ROOT = "gyro/lock/"
SHARED = "gyro/shared/"


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _unb64(value: str) -> str:
    return base64.b64decode(value).decode()


def _prefix_end(prefix: str) -> str:
    raw = prefix.encode()
    return _b64(raw[:-1] + bytes([raw[-1] + 1]))


def _first_request(prefix: str) -> dict[str, Any]:
    return {
        "request_range": {
            "key": _b64(prefix),
            "range_end": _prefix_end(prefix),
            "sort_order": "ASCEND",
            "sort_target": "CREATE",
            "limit": "1",
        }
    }


def _mode_of(kv: dict[str, Any]) -> str:
    """A queued key's mode: mutex keys hold the bare owner, shared keys a small JSON object."""
    text = _unb64(kv.get("value", ""))
    if text.startswith("{"):
        return str(json.loads(text).get("mode", "w"))
    return "w"


def _owner_of(kv: dict[str, Any]) -> str:
    text = _unb64(kv.get("value", ""))
    return str(json.loads(text).get("owner")) if text.startswith("{") else text


class _LeaseGone(Exception):
    """The session lease expired on the server; grant a new one."""


@dataclass(slots=True)
class _Session:
    lease: int
    ttl: int
    valid_until: float  # our conservative view: last keepalive *sent* + ttl

    def remaining(self) -> float:
        return self.valid_until - time.monotonic()


@dataclass(slots=True)
class _Entry:
    key: str
    lease: int
    revision: int
    seen: int = 0  # store revision when we last looked; the watch starts after it


class EtcdBackend:
    """Locks on an etcd cluster.

    >>> EtcdBackend.from_url("etcd://127.0.0.1:2379,127.0.0.1:22379").endpoints
    ['http://127.0.0.1:2379', 'http://127.0.0.1:22379']
    """

    scheme = "etcd"
    notifies = True

    def __init__(self, endpoints: list[str], *, op_timeout: float = 5.0) -> None:
        self.endpoints = [e if "://" in e else f"http://{e}" for e in endpoints]
        self._shown = [redact_url(e) for e in self.endpoints]  # for messages: no user:password
        self._current = 0
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(op_timeout, connect=2.0))
        self._sessions: dict[int, _Session] = {}
        self._entries: dict[tuple[str, str, str], _Entry] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> EtcdBackend:
        hosts = [h for h in url.removeprefix("etcd://").strip("/").split(",") if h]
        if not hosts:
            raise LockBackendError(f"{redact_url(url)!r}: expected etcd://host:port[,host:port...]")
        return cls(hosts, **options)

    # -- plumbing ----------------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to one member; on a connection failure try the next (a dead member or leader)."""
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            base, shown = self.endpoints[self._current], self._shown[self._current]
            try:
                resp = await self._client.post(f"{base}{path}", json=body)
            except httpx.TransportError as exc:
                last = exc
                self._current = (self._current + 1) % len(self.endpoints)
                continue
            data: dict[str, Any] = resp.json() if resp.content else {}
            if resp.status_code != 200:
                message = str(data.get("error") or data.get("message") or resp.text)
                if "lease not found" in message:
                    raise _LeaseGone(message)
                raise LockBackendError(f"etcd {shown}{path}: {scrub(message, base)}")
            return data
        raise LockBackendError(
            f"etcd {', '.join(self._shown)}: unreachable ({self._scrub(str(last))})"
        ) from last

    def _scrub(self, text: str) -> str:
        for endpoint in self.endpoints:
            text = scrub(text, endpoint)
        return text

    async def _session(self, ttl: float) -> _Session:
        seconds = max(1, math.ceil(ttl))
        session = self._sessions.get(seconds)
        if session is not None and session.remaining() > seconds * 2 / 3:
            return session
        if session is not None and await self._keepalive(session):
            return session
        sent = time.monotonic()
        data = await self._post("/v3/lease/grant", {"TTL": seconds})
        granted = int(data["TTL"])
        session = _Session(lease=int(data["ID"]), ttl=granted, valid_until=sent + granted)
        self._sessions[seconds] = session
        return session

    async def _keepalive(self, session: _Session) -> bool:
        sent = time.monotonic()
        data = await self._post("/v3/lease/keepalive", {"ID": str(session.lease)})
        ttl = int(data.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            self._drop_session(session)
            return False
        session.valid_until = sent + ttl
        return True

    def _drop_session(self, session: _Session) -> None:
        self._sessions = {k: s for k, s in self._sessions.items() if s is not session}
        self._entries = {k: e for k, e in self._entries.items() if e.lease != session.lease}

    @staticmethod
    def _key(root: str, name: str, owner: str, lease: int) -> str:
        digest = hashlib.sha256(owner.encode()).hexdigest()[:16]
        return f"{root}{name}/{lease:x}-{digest}"

    # -- protocol ----------------------------------------------------------------------------

    async def try_acquire(self, name: str, owner: str, ttl: float, *, fair: bool) -> Grant | Busy:
        return await self._acquire(ROOT, name, owner, ttl, value=owner, mode="w", limit=1)

    async def _acquire(
        self, root: str, name: str, owner: str, ttl: float, *, value: str, mode: str, limit: int
    ) -> Grant | Busy:
        for _ in range(2):
            try:
                return await self._enqueue(root, name, owner, ttl, value, mode, limit)
            except _LeaseGone:
                self._sessions.pop(max(1, math.ceil(ttl)), None)
                self._entries.pop((root, name, owner), None)
        raise LockBackendError(f"etcd: session lease keeps expiring for lock {name!r}")

    async def _enqueue(
        self, root: str, name: str, owner: str, ttl: float, value: str, mode: str, limit: int
    ) -> Grant | Busy:
        """Put our key if absent and read the queue, in one transaction; then decide."""
        session = await self._session(ttl)
        entry = self._entries.get((root, name, owner))
        key = entry.key if entry is not None else self._key(root, name, owner, session.lease)
        prefix = f"{root}{name}/"
        queue = _first_request(prefix)
        if root != ROOT:  # shared modes need everyone ahead of us, not just the first
            del queue["request_range"]["limit"]
        put = {"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(session.lease)}}
        mine = {"request_range": {"key": _b64(key)}}
        if root == ROOT:
            # Mutex fast path: when nobody is queued, our put alone is the grant (a range compare
            # holds for an empty range). Otherwise put (idempotent) and read our place.
            compare = [
                {
                    "key": _b64(prefix),
                    "range_end": _prefix_end(prefix),
                    "target": "CREATE",
                    "result": "LESS",
                    "create_revision": "1",
                }
            ]
            success, failure = [put], [put, mine, queue]
        else:
            compare = [{"key": _b64(key), "target": "CREATE", "create_revision": "0"}]
            success, failure = [put, queue], [mine, queue]
        data = await self._post(
            "/v3/kv/txn", {"compare": compare, "success": success, "failure": failure}
        )
        revision = int(data["header"]["revision"])
        responses = data.get("responses", [])[-2:]  # [our key or put, the queue]
        if data.get("succeeded"):
            created = revision
            if root == ROOT:
                self._entries[(root, name, owner)] = _Entry(
                    key=key, lease=session.lease, revision=created, seen=revision
                )
                return Grant(token=created, ttl=max(0.0, session.remaining()))
        else:
            kvs = responses[0]["response_range"].get("kvs", [])
            if not kvs:
                raise _LeaseGone("our key vanished")
            created = int(kvs[0]["create_revision"])
        self._entries[(root, name, owner)] = _Entry(
            key=key, lease=session.lease, revision=created, seen=revision
        )
        ahead = [
            kv
            for kv in responses[1]["response_range"].get("kvs", [])
            if int(kv["create_revision"]) < created
        ]
        if shared_admits(mode, limit, [_mode_of(kv) for kv in ahead]):
            return Grant(token=created, ttl=max(0.0, session.remaining()))
        holder = _owner_of(ahead[0]) if ahead else None
        return Busy(holder=holder, retry_after=None)

    async def release(self, name: str, owner: str, token: int) -> bool:
        return await self._release(ROOT, name, owner, token)

    async def _release(self, root: str, name: str, owner: str, token: int) -> bool:
        entry = self._entries.get((root, name, owner))
        if entry is None or entry.revision != token:
            return False
        deleted = await self._delete_if(entry.key, token)  # on error, keep the entry for a retry
        self._entries.pop((root, name, owner), None)
        return deleted

    async def _delete_if(self, key: str, revision: int) -> bool:
        data = await self._post(
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": _b64(key), "target": "CREATE", "create_revision": str(revision)}
                ],
                "success": [{"request_delete_range": {"key": _b64(key)}}],
            },
        )
        return bool(data.get("succeeded"))

    async def extend(self, name: str, owner: str, token: int, ttl: float) -> float | None:
        return await self._extend(ROOT, name, owner, token)

    async def _extend(self, root: str, name: str, owner: str, token: int) -> float | None:
        entry = self._entries.get((root, name, owner))
        if entry is None or entry.revision != token:
            return None
        session = next((s for s in self._sessions.values() if s.lease == entry.lease), None)
        try:
            if session is None or not await self._keepalive(session):
                return None
        except _LeaseGone:
            return None
        compare = [{"key": _b64(entry.key), "target": "CREATE", "create_revision": str(token)}]
        data = await self._post("/v3/kv/txn", {"compare": compare, "success": []})
        if not data.get("succeeded"):
            self._entries.pop((root, name, owner), None)
            return None
        return max(0.0, session.remaining())

    async def abandon(self, name: str, owner: str) -> None:
        await self._abandon(ROOT, name, owner)

    async def _abandon(self, root: str, name: str, owner: str) -> None:
        entry = self._entries.pop((root, name, owner), None)
        if entry is not None:
            with contextlib.suppress(_LeaseGone):
                await self._post("/v3/kv/deleterange", {"key": _b64(entry.key)})

    async def wait(self, name: str, owner: str, max_wait: float) -> None:
        await self._wait(ROOT, name, owner, max_wait)

    async def _wait(self, root: str, name: str, owner: str, max_wait: float) -> None:
        entry = self._entries.get((root, name, owner))
        prefix = f"{root}{name}/"
        request = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _prefix_end(prefix),
                "filters": ["NOPUT"],
                "start_revision": str((entry.seen if entry else 0) + 1),
            }
        }
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await self._watch_one(request)

    async def wait_change(self, name: str, seen: str | None, max_wait: float) -> None:
        """Return when the holder of ``name`` is not ``seen``, or when any key under the name
        changes (a watch from the revision of our read, so nothing slips past), or after
        ``max_wait``."""
        prefix = f"{ROOT}{name}/"
        data = await self._post(
            "/v3/kv/range",
            {
                "key": _b64(prefix),
                "range_end": _prefix_end(prefix),
                "sort_order": "ASCEND",
                "sort_target": "CREATE",
                "limit": "1",
            },
        )
        kvs = data.get("kvs", [])
        if (_unb64(kvs[0].get("value", "")) if kvs else None) != seen:
            return
        revision = int(data.get("header", {}).get("revision", 0))
        request = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _prefix_end(prefix),
                "start_revision": str(revision + 1),
            }
        }
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await self._watch_one(request)

    # -- read-write locks and semaphores (gyroscope.lock._shared) -----------------------------

    async def try_acquire_shared(
        self, name: str, owner: str, ttl: float, *, mode: str, limit: int
    ) -> Grant | Busy:
        value = json.dumps({"owner": owner, "mode": mode, "limit": limit})
        return await self._acquire(SHARED, name, owner, ttl, value=value, mode=mode, limit=limit)

    async def release_shared(self, name: str, owner: str, token: int) -> bool:
        return await self._release(SHARED, name, owner, token)

    async def extend_shared(self, name: str, owner: str, token: int, ttl: float) -> float | None:
        return await self._extend(SHARED, name, owner, token)

    async def abandon_shared(self, name: str, owner: str) -> None:
        await self._abandon(SHARED, name, owner)

    async def wait_shared(self, name: str, owner: str, max_wait: float) -> None:
        await self._wait(SHARED, name, owner, max_wait)

    async def holders_shared(self, name: str) -> list[LockInfo]:
        kvs = await self._holders(f"{SHARED}{name}/")
        held = []
        for i, kv in enumerate(kvs):
            meta = json.loads(_unb64(kv.get("value", "")) or "{}")
            if shared_admits(
                meta.get("mode", "w"), int(meta.get("limit", 1)), [_mode_of(k) for k in kvs[:i]]
            ):
                held.append(
                    LockInfo(
                        name=name,
                        owner=str(meta.get("owner")),
                        token=int(kv["create_revision"]),
                        extra={"mode": meta.get("mode")},
                    )
                )
        return held

    async def _watch_one(self, request: dict[str, Any]) -> None:
        base, shown = self.endpoints[self._current], self._shown[self._current]
        try:
            async with self._client.stream(
                "POST", f"{base}/v3/watch", json=request, timeout=httpx.Timeout(None, connect=2.0)
            ) as resp:
                async for line in resp.aiter_lines():
                    if line.strip() and json.loads(line).get("result", {}).get("events"):
                        return
        except httpx.HTTPError as exc:
            self._current = (self._current + 1) % len(self.endpoints)
            raise LockBackendError(f"etcd {shown}: watch: {scrub(str(exc), base)}") from exc

    async def _holders(self, prefix: str) -> list[dict[str, Any]]:
        data = await self._post(
            "/v3/kv/range",
            {
                "key": _b64(prefix),
                "range_end": _prefix_end(prefix),
                "sort_order": "ASCEND",
                "sort_target": "CREATE",
            },
        )
        kvs: list[dict[str, Any]] = data.get("kvs", [])
        return kvs

    async def _info(self, name: str, kvs: list[dict[str, Any]]) -> LockInfo:
        first = kvs[0]
        lease = first.get("lease")
        ttl = None
        if lease:
            data = await self._post("/v3/lease/timetolive", {"ID": lease})
            ttl = float(data.get("TTL", 0))
        return LockInfo(
            name=name,
            owner=_unb64(first.get("value", "")),
            token=int(first["create_revision"]),
            ttl_remaining=ttl,
            waiters=len(kvs) - 1,
            extra={"key": _unb64(first["key"])},
        )

    async def inspect(self, name: str) -> LockInfo | None:
        kvs = await self._holders(f"{ROOT}{name}/")
        return await self._info(name, kvs) if kvs else None

    async def list_locks(self) -> list[LockInfo]:
        by_name: dict[str, list[dict[str, Any]]] = {}
        for kv in await self._holders(ROOT):
            name = _unb64(kv["key"])[len(ROOT) :].rsplit("/", 1)[0]
            by_name.setdefault(name, []).append(kv)
        return [await self._info(n, kvs) for n, kvs in sorted(by_name.items())]

    async def force_release(self, name: str) -> LockInfo | None:
        info = await self.inspect(name)
        if info is not None:
            await self._delete_if(str(info.extra["key"]), info.token)
            log.warning(
                "lock %s broken by administrator (owner %s, token %d)", name, info.owner, info.token
            )
        return info

    async def health(self) -> Health:
        try:
            data = await self._post("/v3/maintenance/status", {})
        except LockBackendError as exc:
            return Health(name="lock:etcd", status="down", detail=str(exc))
        if not data.get("leader"):
            return Health(name="lock:etcd", status="down", detail="no leader")
        return Health(
            name="lock:etcd",
            status="ok",
            detail=f"etcd {data.get('version')} leader {data.get('leader')}",
        )

    async def aclose(self) -> None:
        for session in list(self._sessions.values()):
            with contextlib.suppress(LockBackendError, _LeaseGone):
                await self._post("/v3/lease/revoke", {"ID": str(session.lease)})
        self._sessions.clear()
        self._entries.clear()
        await self._client.aclose()
