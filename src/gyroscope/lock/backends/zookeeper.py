"""ZooKeeper lock engine: ephemeral sequential znodes through kazoo, ``czxid`` as the fence.

Recipe: each contender creates ``/gyro/locks/<name>/<guid>-lock-<seq>`` (ephemeral, sequential);
the lowest sequence holds the lock, everyone else watches only its predecessor (no herd) and is
woken when that node goes. The node's ``czxid`` (the transaction id that created it) is the
fencing token: zxids only grow, so tokens increase across holders.

The hazards, and what we do about them:

* **SUSPENDED** (connection lost, session maybe alive). We cannot know whether the server has
  expired the session, so we do *not* trust the lock: ``extend`` raises (retryable) and the Lock
  above counts down its own lease — the negotiated session timeout from the last confirmed
  round trip, which the server cannot beat, since it only expires a session a full timeout after
  it last heard from us. If kazoo reconnects in time, renewal succeeds and nothing was lost.
* **LOST** (session expired). The server has deleted our ephemeral nodes, and another client may
  already hold the lock. We forget every node of the old session; ``extend``/``release`` then
  report the lease lost (kazoo's own recipe once returned True from ``release()`` here).
* **Create retried after a connection loss** may leave a duplicate node that nobody watches. The
  node name starts with a guid derived from the owner, so a retry first looks for a node it
  already made (props to Netflix Curator for this "protected" node trick).

The lock's ttl is ZooKeeper's session timeout (negotiated within the server's min/max, which are
2 and 20 ticks by default): one client session per backend, set from the first lock's ttl (at
least 2 s) unless ``session_timeout`` is given. Grants report the negotiated timeout as their ttl.

Unlike the other engines, the lease is renewed by kazoo's session heartbeats, not only by the Lock:
a holder whose Lock stopped renewing keeps its node until the Lock's own lease count runs out, at
which point the Lock deletes the node (token-checked) and reports the lease lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError, ZookeeperError
from kazoo.handlers.threading import KazooTimeoutError

from gyroscope.core import Health
from gyroscope.lock._backend import Busy, Grant, LockInfo
from gyroscope.lock._errors import LockBackendError
from gyroscope.lock.backends._zk_shared import ZooKeeperShared

__all__ = ["ZooKeeperBackend"]

log = logging.getLogger(__name__)
ROOT = "/gyro/locks"
_DRIVER_ERRORS = (KazooException, ZookeeperError, KazooTimeoutError)


@dataclass(slots=True)
class _Node:
    path: str
    czxid: int
    predecessor: str | None = None


def _seq(child: str) -> int:
    return int(child.rsplit("-", 1)[1])


def _settle(fut: asyncio.Future[Any], result: Any) -> None:
    if fut.done():
        return
    try:
        fut.set_result(result.get_nowait())
    except Exception as exc:
        fut.set_exception(exc)


class ZooKeeperBackend(ZooKeeperShared):
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
        self.session_timeout = session_timeout
        self._connect_timeout = connect_timeout
        self._client: KazooClient | None = None
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._shared_nodes: dict[tuple[str, str], tuple[str, int]] = {}
        self._create_failed: set[tuple[str, str]] = set()
        self._closing = False
        self._starting: asyncio.Lock | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ZooKeeperBackend:
        hosts = url.removeprefix("zookeeper://").strip("/")
        if not hosts:
            raise LockBackendError(f"{url!r}: expected zookeeper://host:port[,host:port...]")
        return cls(hosts, **options)

    @property
    def client_id(self) -> tuple[int, bytes] | None:
        """The current session's (id, password), e.g. to expire it deliberately in a test."""
        return self._client.client_id if self._client is not None else None

    # -- plumbing ----------------------------------------------------------------------------

    async def _zk(self, ttl: float | None = None) -> KazooClient:
        if self._client is not None:
            return self._client
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._client is None:
                # Sessions under 2 s die to ordinary scheduling hiccups on a busy host.
                timeout = self.session_timeout or max(ttl or 10.0, 2.0)
                client = KazooClient(hosts=self.hosts, timeout=timeout)
                client.add_listener(self._on_state)
                try:
                    await asyncio.to_thread(client.start, self._connect_timeout)
                except _DRIVER_ERRORS as exc:
                    await asyncio.to_thread(client.close)
                    raise LockBackendError(f"zookeeper {self.hosts}: {exc}") from exc
                self._client = client
        return self._client

    def _on_state(self, state: str) -> None:
        # Runs on kazoo's thread: only flag things, never block here.
        if self._closing:
            return
        if state == KazooState.LOST:
            log.warning(
                "zookeeper %s: session expired; every lock of this session is lost", self.hosts
            )
            self._nodes = {}
            self._shared_nodes = {}
        elif state == KazooState.SUSPENDED:
            log.warning(
                "zookeeper %s: connection suspended; locks are uncertain until it is back",
                self.hosts,
            )

    def _ttl(self) -> float:
        assert self._client is not None
        negotiated = getattr(self._client, "_session_timeout", None)
        return float(negotiated) / 1000 if negotiated else float(self._client._timeout)

    def _submit(self, method: str, *args: Any) -> asyncio.Future[Any]:
        """Send a request now (in session order) and return a future for its reply."""
        return asyncio.ensure_future(self._call(method, *args))

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        client = await self._zk()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        try:
            result = getattr(client, f"{method}_async")(*args, **kwargs)
        except _DRIVER_ERRORS as exc:
            raise LockBackendError(f"zookeeper {self.hosts}: {method}: {exc!r}") from exc
        result.rawlink(lambda r: loop.call_soon_threadsafe(_settle, fut, r))
        try:
            return await fut
        except (NoNodeError, NodeExistsError):
            raise
        except _DRIVER_ERRORS as exc:
            raise LockBackendError(f"zookeeper {self.hosts}: {method}: {exc!r}") from exc

    async def _children(self, name: str) -> list[str]:
        try:
            children: list[str] = await self._call("get_children", f"{ROOT}/{name}")
        except NoNodeError:
            return []
        return sorted((c for c in children if "-lock-" in c), key=_seq)

    # -- protocol ----------------------------------------------------------------------------

    async def try_acquire(self, name: str, owner: str, ttl: float, *, fair: bool) -> Grant | Busy:
        await self._zk(ttl)
        node, children = await self._my_node(name, owner)
        mine = node.path.rsplit("/", 1)[1]
        if mine not in children:
            children = await self._children(name)  # the parent was new: kazoo made it first
        if mine not in children:  # our session expired between the two calls
            self._nodes.pop((name, owner), None)
            raise LockBackendError(
                f"zookeeper {self.hosts}: our lock node vanished; retrying", lock_name=name
            )
        index = children.index(mine)
        if index == 0:
            return Grant(token=node.czxid, ttl=self._ttl())
        node.predecessor = f"{ROOT}/{name}/{children[index - 1]}"
        holder = await self._owner_of(f"{ROOT}/{name}/{children[0]}")
        return Busy(holder=holder, retry_after=None)

    async def _my_node(self, name: str, owner: str) -> tuple[_Node, list[str]]:
        """Our queue node and the queue, in one round trip when we create it.

        ZooKeeper runs one session's requests in order, so a ``get_children`` sent right behind
        our ``create`` already sees our node: the two are pipelined, not awaited one by one.
        """
        node = self._nodes.get((name, owner))
        if node is not None:
            return node, await self._children(name)
        guid = hashlib.sha256(owner.encode()).hexdigest()[:20]
        if (name, owner) in self._create_failed:  # a node from a retried create, if any
            for child in await self._children(name):
                if child.startswith(guid):
                    stat = await self._call("exists", f"{ROOT}/{name}/{child}")
                    if stat is not None:
                        node = _Node(path=f"{ROOT}/{name}/{child}", czxid=stat.czxid)
                        self._nodes[(name, owner)] = node
                        self._create_failed.discard((name, owner))
                        return node, await self._children(name)
        path = f"{ROOT}/{name}/{guid}-lock-"
        create = self._submit("create", path, owner.encode(), None, True, True, True, True)
        listing = self._submit("get_children", f"{ROOT}/{name}")
        try:
            created_path, stat = await create
        except LockBackendError:
            self._create_failed.add((name, owner))
            listing.cancel()
            raise
        self._create_failed.discard((name, owner))
        node = _Node(path=created_path, czxid=stat.czxid)
        self._nodes[(name, owner)] = node
        try:
            children = await listing
        except (NoNodeError, LockBackendError):
            children = []
        return node, sorted((c for c in children if "-lock-" in c), key=_seq)

    async def _owner_of(self, path: str) -> str | None:
        try:
            data, _ = await self._call("get", path)
        except NoNodeError:
            return None
        return bytes(data).decode()

    async def release(self, name: str, owner: str, token: int) -> bool:
        node = self._nodes.get((name, owner))
        if node is None or node.czxid != token:
            return False
        # Sequential paths are never reused, so if this path exists it is still our node.
        # On a connection error the node is kept, so a retry can still delete it.
        try:
            await self._call("delete", node.path)
        except NoNodeError:
            self._nodes.pop((name, owner), None)
            return False
        self._nodes.pop((name, owner), None)
        return True

    async def extend(self, name: str, owner: str, token: int, ttl: float) -> float | None:
        node = self._nodes.get((name, owner))
        if node is None or node.czxid != token:
            return None
        await self._require_connected(name)
        stat = await self._call("exists", node.path)  # a round trip also proves the session
        if stat is None or stat.czxid != token:
            self._nodes.pop((name, owner), None)
            return None
        return self._ttl()

    async def _require_connected(self, name: str) -> None:
        client = await self._zk()
        if client.state != KazooState.CONNECTED:
            raise LockBackendError(f"zookeeper {self.hosts}: connection suspended", lock_name=name)

    async def abandon(self, name: str, owner: str) -> None:
        node = self._nodes.pop((name, owner), None)
        if node is not None:
            with contextlib.suppress(NoNodeError):
                await self._call("delete", node.path)

    async def wait(self, name: str, owner: str, max_wait: float) -> None:
        node = self._nodes.get((name, owner))
        if node is None or node.predecessor is None:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        gone = asyncio.Event()
        client = await self._zk()
        try:
            stat = await asyncio.to_thread(
                client.exists, node.predecessor, lambda _e: loop.call_soon_threadsafe(gone.set)
            )
        except _DRIVER_ERRORS as exc:
            raise LockBackendError(f"zookeeper {self.hosts}: watch: {exc!r}") from exc
        if stat is None:
            return
        try:
            async with asyncio.timeout(max_wait):
                await gone.wait()
        except TimeoutError:
            pass

    async def inspect(self, name: str) -> LockInfo | None:
        children = await self._children(name)
        for child in children:
            path = f"{ROOT}/{name}/{child}"
            try:
                data, stat = await self._call("get", path)
            except NoNodeError:
                continue
            return LockInfo(
                name=name,
                owner=bytes(data).decode(),
                token=stat.czxid,
                ttl_remaining=None,
                waiters=len(children) - 1,
                extra={"path": path},
            )
        return None

    async def list_locks(self) -> list[LockInfo]:
        try:
            names: list[str] = await self._call("get_children", ROOT)
        except NoNodeError:
            return []
        infos = [await self.inspect(n) for n in sorted(names)]
        return [i for i in infos if i is not None]

    async def force_release(self, name: str) -> LockInfo | None:
        info = await self.inspect(name)
        if info is not None:
            try:
                await self._call("delete", str(info.extra["path"]))
            except NoNodeError:
                return None
            log.warning(
                "lock %s broken by administrator (owner %s, token %d)", name, info.owner, info.token
            )
        return info

    async def health(self) -> Health:
        try:
            client = await self._zk()
        except LockBackendError as exc:
            return Health(name="lock:zookeeper", status="down", detail=str(exc))
        if client.state != KazooState.CONNECTED:
            return Health(name="lock:zookeeper", status="degraded", detail=f"state {client.state}")
        return Health(
            name="lock:zookeeper",
            status="ok",
            detail=f"{self.hosts}, session timeout {self._ttl():.1f}s",
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        self._closing = True
        self._nodes = {}
        if client is not None:
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(client.close)
