"""ZooKeeper lock engine through kazoo: one ``create`` to take a free lock, one ``multi`` to free it.

Layout under ``/gyro/locks/<name>``:

* ``holder`` — an ephemeral znode whose owner holds the lock. Its ``czxid`` (the transaction that
  created it) is the fencing token: zxids are global and only grow, so every new holder's token is
  larger than every earlier one's.
* ``<guid>-lock-<seq>`` — ephemeral sequential queue nodes, only for ``fair=True`` waiters.
* the lock node's own data *version* is the "break epoch": ``gyro lock break`` bumps it in the
  same transaction that deletes ``holder``.

Uncontended acquire is a single ``create`` of ``holder`` (the raw create + delete pair plus
nothing). Contended non-fair waiters read the holder and watch it for deletion (a release wakes
them all, which is cheap for the handful of waiters a lock has; use ``fair=True`` for a strict
queue). Fair contenders enqueue; the queue head watches ``holder`` and takes it when it goes,
everyone else watches only its predecessor (no herd), so grants follow arrival order.

Why releasing a fixed path is safe — the release is one ``multi``:
``check(session marker) + check(lock node, epoch) + delete(holder)`` (+ the queue node):

* Only our session can have created our ``holder``, and operations of an *expired* session
  fail, so while our session lives nobody else's ``holder`` can appear in its place — except
  after an administrative break (below) or after *our session expired and kazoo opened a new
  one*: a late release would then run in the new session and delete the next holder's node.
  The **session marker** closes that hole: each session owns an ephemeral
  ``/gyro/sessions/<uuid>`` created once per session, and every release checks that the marker
  of the session that took the lock still exists. An expired session's marker is gone, so the
  ``multi`` fails and deletes nothing.
* An administrator may delete a live holder's node (``break``), after which someone else may
  create ``holder`` again while the broken holder still believes it holds. ``break`` bumps the
  lock node's version in the same transaction, and the release checks the version it knows, so
  a broken holder's release fails instead of deleting the new holder. (The epoch is cached;
  when the check fails we re-read the lock node and ``holder`` and retry only if ``holder`` is
  still ours — same ``czxid``, our session — which a break would have changed.)

* A release whose *reply* was lost may have been applied already, and the next holder's
  ``holder`` passes both checks. So a retried release first reads ``holder`` and goes on only if
  its ``czxid`` is still our token (our session's requests are applied in order, so the read
  sees the earlier attempt; anything else that could replace the node changes a checked value).

What that guarantees: a release deletes ``holder`` only if it is the node this hold created.
What it does not: a holder that is *paused* past its session keeps running; fencing tokens are
what make its late writes harmless (see ``FencedResource``).

The other hazards, and what we do about them:

* **SUSPENDED** (connection lost, session maybe alive). We cannot know whether the server has
  expired the session, so we do *not* trust the lock: ``extend`` raises (retryable) and the Lock
  above counts down its own lease — the negotiated session timeout from the last confirmed
  round trip, which the server cannot beat, since it only expires a session a full timeout after
  it last heard from us. If kazoo reconnects in time, renewal succeeds and nothing was lost.
* **LOST** (session expired). The server has deleted our ephemeral nodes, and another client may
  already hold the lock. We forget every hold of the old session; ``extend``/``release`` then
  report the lease lost (kazoo's own recipe once returned True from ``release()`` here).
* **Create retried after a connection loss** may have made a node whose reply we never saw.
  ``holder`` carries the owner id, so a retry that finds ``holder`` made by this owner in this
  session adopts it; queue nodes start with a guid of the owner (Curator's "protected" nodes).

The lock's ttl is ZooKeeper's session timeout (negotiated within the server's min/max, which are
2 and 20 ticks by default): one client session per backend, set from the first lock's ttl (at
least 2 s) unless ``session_timeout`` is given. Grants report the negotiated timeout as their ttl.

Unlike the other engines, the lease is renewed by kazoo's session heartbeats, not only by the Lock:
a holder whose Lock stopped renewing keeps its node until the Lock's own lease count runs out, at
which point the Lock deletes the node (checked as above) and reports the lease lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from gyroscope.lock._backend import Busy, Grant, LockInfo
from gyroscope.lock._errors import LockBackendError
from gyroscope.lock._url import redact_url
from gyroscope.lock.backends._zk_client import SESSIONS, ZooKeeperClient
from gyroscope.lock.backends._zk_shared import ZooKeeperShared

__all__ = ["ZooKeeperBackend"]

log = logging.getLogger(__name__)
ROOT = "/gyro/locks"
HOLDER = "holder"


@dataclass(slots=True)
class _Hold:
    """What this backend knows about one owner's claim on one lock."""

    czxid: int | None = None  # set once ``holder`` is ours: the fencing token
    marker: str | None = None  # the session marker checked on release
    queue: str | None = None  # our fair-queue node, if we queued
    watch: str | None = None  # what ``wait`` watches: the predecessor or ``holder``
    uncertain: bool = False  # a release was sent and its reply lost


def _seq(child: str) -> int:
    return int(child.rsplit("-", 1)[1])


def _guid(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:20]


def _queue_of(children: list[str]) -> list[str]:
    return sorted((c for c in children if "-lock-" in c), key=_seq)


class ZooKeeperBackend(ZooKeeperShared, ZooKeeperClient):
    """Locks on a ZooKeeper ensemble.

    >>> ZooKeeperBackend.from_url("zookeeper://127.0.0.1:2181,127.0.0.1:2182").hosts
    '127.0.0.1:2181,127.0.0.1:2182'
    """

    scheme = "zookeeper"
    notifies = True

    def __init__(
        self, hosts: str, *, session_timeout: float | None = None, connect_timeout: float = 15.0
    ) -> None:
        self.hosts = hosts
        self.shown = redact_url(hosts)
        self.session_timeout = session_timeout
        self._connect_timeout = connect_timeout
        self._client: KazooClient | None = None
        self._holds: dict[tuple[str, str], _Hold] = {}
        self._shared_nodes: dict[tuple[str, str], tuple[str, int]] = {}
        self._create_failed: set[tuple[str, str]] = set()
        self._epochs: dict[str, int] = {}
        self._marker: tuple[int, str] | None = None  # (session id, marker path)
        self._closing = False
        self._starting: asyncio.Lock | None = None
        self.calls = 0  # requests sent to the server (tests count them)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ZooKeeperBackend:
        hosts = url.removeprefix("zookeeper://").strip("/")
        if not hosts:
            raise LockBackendError(
                f"{redact_url(url)!r}: expected zookeeper://host:port[,host:port...]"
            )
        return cls(hosts, **options)

    async def _children(self, name: str) -> list[str]:
        try:
            children: list[str] = await self._call("get_children", f"{ROOT}/{name}")
        except NoNodeError:
            return []
        return _queue_of(children)

    # -- acquire -----------------------------------------------------------------------------

    async def try_acquire(self, name: str, owner: str, ttl: float, *, fair: bool) -> Grant | Busy:
        await self._zk(ttl)
        key = (name, owner)
        hold = self._holds.get(key)
        if hold is not None and hold.czxid is not None:  # a retry after a lost reply
            stat = await self._call("exists", f"{ROOT}/{name}/{HOLDER}")
            if stat is not None and stat.czxid == hold.czxid:
                return Grant(token=hold.czxid, ttl=self._ttl())
            await self._forget(key)
            hold = None
        marker = await self._session_marker()
        if hold is None:
            hold = _Hold(marker=marker)
            self._holds[key] = hold
        hold.marker = marker
        if fair:
            busy = await self._queue_turn(name, owner, hold)
            if busy is not None:
                return busy
        return await self._take_holder(name, owner, hold)

    async def _take_holder(self, name: str, owner: str, hold: _Hold) -> Grant | Busy:
        key = (name, owner)
        holder = f"{ROOT}/{name}/{HOLDER}"
        try:
            _, stat = await self._call(
                "create", holder, owner.encode(), None, True, False, True, True
            )
        except NodeExistsError:
            return await self._busy(name, owner, hold)
        except LockBackendError:
            self._create_failed.add(key)  # the node may exist: a retry adopts it
            raise
        hold.czxid = stat.czxid
        self._create_failed.discard(key)
        return Grant(token=stat.czxid, ttl=self._ttl())

    async def _busy(self, name: str, owner: str, hold: _Hold) -> Grant | Busy:
        holder = f"{ROOT}/{name}/{HOLDER}"
        try:
            data, stat = await self._call("get", holder)
        except NoNodeError:
            return Busy(retry_after=0.0)  # released meanwhile: try again at once
        current = bytes(data).decode()
        if current == owner and stat.ephemeralOwner == self._session():
            hold.czxid = stat.czxid  # our own create, whose reply was lost
            self._create_failed.discard((name, owner))
            return Grant(token=stat.czxid, ttl=self._ttl())
        hold.watch = holder
        return Busy(holder=current, retry_after=None)

    async def _queue_turn(self, name: str, owner: str, hold: _Hold) -> Busy | None:
        """Join (or look at) the fair queue; None when we are its head."""
        if hold.queue is None:
            hold.queue = await self._protected_queue_node(name, owner)
            if hold.queue is None:
                path = f"{ROOT}/{name}/{_guid(owner)}-lock-"
                create = self._submit("create", path, owner.encode(), None, True, True, True)
                listing = self._submit("get_children", f"{ROOT}/{name}")  # pipelined
                try:
                    hold.queue = await create
                except LockBackendError:
                    self._create_failed.add((name, owner))
                    listing.cancel()
                    raise
                try:
                    children = _queue_of(await listing)
                except (NoNodeError, LockBackendError):
                    children = await self._children(name)
            else:
                children = await self._children(name)
        else:
            children = await self._children(name)
        mine = hold.queue.rsplit("/", 1)[1]
        if mine not in children:  # our session expired between the calls
            self._holds.pop((name, owner), None)
            raise LockBackendError(f"zookeeper {self.shown}: our queue node vanished; retrying")
        index = children.index(mine)
        if index == 0:
            hold.watch = None
            return None
        hold.watch = f"{ROOT}/{name}/{children[index - 1]}"
        return Busy(retry_after=None)

    async def _protected_queue_node(self, name: str, owner: str) -> str | None:
        if (name, owner) not in self._create_failed:
            return None
        for child in await self._children(name):
            if child.startswith(_guid(owner)):
                self._create_failed.discard((name, owner))
                return f"{ROOT}/{name}/{child}"
        return None

    async def wait(self, name: str, owner: str, max_wait: float) -> None:
        hold = self._holds.get((name, owner))
        path = hold.watch if hold is not None and hold.watch else f"{ROOT}/{name}/{HOLDER}"
        await self._watch_gone(path, max_wait)

    async def _watch_gone(self, path: str, max_wait: float) -> None:
        """Return when ``path`` is deleted (or changes), or after ``max_wait``."""
        loop = asyncio.get_running_loop()
        gone = asyncio.Event()
        client = await self._zk()
        stat = await self._send(
            "watch",
            lambda: client.exists_async(path, lambda _e: loop.call_soon_threadsafe(gone.set)),
        )
        if stat is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await gone.wait()

    async def wait_change(self, name: str, seen: str | None, max_wait: float) -> None:
        """Return when the holder of ``name`` is not ``seen``, or when ``holder`` is created,
        deleted or changed (one watch, set by the same read that checks it), or after
        ``max_wait``."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        client = await self._zk()
        path = f"{ROOT}/{name}/{HOLDER}"
        stat = await self._send(
            "watch",
            lambda: client.exists_async(path, lambda _e: loop.call_soon_threadsafe(changed.set)),
        )
        current = None
        if stat is not None:
            try:
                data, _ = await self._call("get", path)
                current = bytes(data).decode()
            except NoNodeError:
                return  # gone already: a change
        if current != seen:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await changed.wait()

    # -- release -----------------------------------------------------------------------------

    async def release(self, name: str, owner: str, token: int) -> bool:
        hold = self._holds.get((name, owner))
        if hold is None or hold.czxid != token:
            return False
        # After an unknown outcome (the reply was lost), our delete may have been applied and
        # someone else may hold a new ``holder`` now, which the checks cannot tell from ours:
        # read first. (One session's requests run in order, so that read sees our earlier one.)
        ours = not hold.uncertain or await self._still_ours(name, hold)
        for _ in range(3 if ours else 0):
            hold.uncertain = True
            deleted = await self._delete_hold(name, hold)
            hold.uncertain = False
            if deleted:
                self._holds.pop((name, owner), None)
                return True
            if not await self._still_ours(name, hold):
                break
        await self._forget((name, owner))
        return False

    async def _delete_hold(self, name: str, hold: _Hold) -> bool:
        """The checked delete (module docstring); False when a check failed."""
        client = await self._zk()
        txn = client.transaction()
        txn.check(hold.marker or f"{SESSIONS}/none", 0)
        txn.check(f"{ROOT}/{name}", self._epochs.get(name, 0))
        txn.delete(f"{ROOT}/{name}/{HOLDER}")
        if hold.queue is not None:
            txn.delete(hold.queue)
        results = await self._send("multi", txn.commit_async)
        return not any(isinstance(r, Exception) for r in results)

    async def _still_ours(self, name: str, hold: _Hold) -> bool:
        """After a failed check: is ``holder`` still this hold's node? Refreshes epoch/marker."""
        pstat, hstat, qstat = await asyncio.gather(
            self._call("exists", f"{ROOT}/{name}"),
            self._call("exists", f"{ROOT}/{name}/{HOLDER}"),
            self._call("exists", hold.queue) if hold.queue else asyncio.sleep(0),
        )
        if hstat is None or pstat is None or hstat.czxid != hold.czxid:
            return False
        if hstat.ephemeralOwner != self._session():
            return False
        self._epochs[name] = pstat.version
        if qstat is None:
            hold.queue = None  # our queue node is gone (it never is without ``holder``)
        hold.marker = await self._session_marker()
        return True

    async def _forget(self, key: tuple[str, str]) -> None:
        """Drop a hold that is no longer ours, leaving the fair queue if we were in it."""
        hold = self._holds.pop(key, None)
        if hold is not None and hold.queue is not None:
            with contextlib.suppress(NoNodeError):  # sequential: the path is only ever ours
                await self._call("delete", hold.queue)

    async def extend(self, name: str, owner: str, token: int, ttl: float) -> float | None:
        hold = self._holds.get((name, owner))
        if hold is None or hold.czxid != token:
            return None
        await self._require_connected(name)
        stat = await self._call("exists", f"{ROOT}/{name}/{HOLDER}")  # also proves the session
        if stat is None or stat.czxid != token:
            await self._forget((name, owner))
            return None
        return self._ttl()

    async def abandon(self, name: str, owner: str) -> None:
        key = (name, owner)
        hold = self._holds.get(key)
        if hold is not None and key in self._create_failed:  # a holder create we never heard of
            with contextlib.suppress(NoNodeError):
                data, stat = await self._call("get", f"{ROOT}/{name}/{HOLDER}")
                if bytes(data).decode() == owner and stat.ephemeralOwner == self._session():
                    hold.czxid = stat.czxid
                    await self.release(name, owner, stat.czxid)
        self._create_failed.discard(key)
        await self._forget(key)

    # -- observe and administer ----------------------------------------------------------------

    async def inspect(self, name: str) -> LockInfo | None:
        holder = self._submit("get", f"{ROOT}/{name}/{HOLDER}")
        listing = self._submit("get_children", f"{ROOT}/{name}")
        try:
            data, stat = await holder
        except NoNodeError:
            listing.cancel()
            return None
        try:
            queue = _queue_of(await listing)
        except NoNodeError:
            queue = []
        owner = bytes(data).decode()
        waiting = [c for c in queue if not c.startswith(_guid(owner))]
        return LockInfo(
            name=name,
            owner=owner,
            token=stat.czxid,
            ttl_remaining=None,
            waiters=len(waiting),
            extra={"path": f"{ROOT}/{name}/{HOLDER}"},
        )

    async def list_locks(self) -> list[LockInfo]:
        try:
            names: list[str] = await self._call("get_children", ROOT)
        except NoNodeError:
            return []
        infos = [await self.inspect(n) for n in sorted(names)]
        return [i for i in infos if i is not None]

    async def force_release(self, name: str) -> LockInfo | None:
        """Delete the holder and bump the break epoch in one transaction (module docstring)."""
        info = await self.inspect(name)
        if info is None:
            return None
        client = await self._zk()
        txn = client.transaction()
        txn.delete(f"{ROOT}/{name}/{HOLDER}")
        txn.set_data(f"{ROOT}/{name}", b"broken")
        for child in await self._children(name):  # the broken holder's place in the queue
            if child.startswith(_guid(info.owner)):
                txn.delete(f"{ROOT}/{name}/{child}")
        results = await self._send("multi", txn.commit_async)
        if any(isinstance(r, Exception) for r in results):
            return None  # released or taken over meanwhile; nothing was broken
        log.warning(
            "lock %s broken by administrator (owner %s, token %d)", name, info.owner, info.token
        )
        return info
