"""Read-write locks and semaphores on ZooKeeper (mixed into ``ZooKeeperBackend``).

The classic recipe: ``/gyro/shared/<name>/<guid>-<mode>-<seq>`` ephemeral sequential nodes; a node
holds when ``shared_admits`` says so for the modes queued ahead of it. Waiters watch the
children list (any holder leaving may admit them); the fence is the node's ``czxid``. The same
SUSPENDED/LOST rules as the mutex apply (see ``zookeeper.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

from kazoo.exceptions import NoNodeError

from gyroscope.lock._backend import Busy, Grant, LockInfo
from gyroscope.lock._errors import LockBackendError
from gyroscope.lock._policy import shared_admits

__all__ = ["ZooKeeperShared"]

SHARED = "/gyro/shared"


def _seq(child: str) -> int:
    return int(child.rsplit("-", 1)[1])


def _mode(child: str) -> str:
    return child.rsplit("-", 2)[1]


class ZooKeeperShared:
    _shared_nodes: dict[tuple[str, str], tuple[str, int]]

    async def _shared_children(self: Any, name: str) -> list[str]:
        try:
            children: list[str] = await self._call("get_children", f"{SHARED}/{name}")
        except NoNodeError:
            return []
        return sorted((c for c in children if c.count("-") >= 2), key=_seq)

    async def try_acquire_shared(
        self: Any, name: str, owner: str, ttl: float, *, mode: str, limit: int
    ) -> Grant | Busy:
        await self._zk(ttl)
        path, czxid = await self._shared_node(name, owner, mode)
        children = await self._shared_children(name)
        mine = path.rsplit("/", 1)[1]
        if mine not in children:
            self._shared_nodes.pop((name, owner), None)
            raise LockBackendError("zookeeper: our node vanished; retrying", lock_name=name)
        ahead = [_mode(c) for c in children[: children.index(mine)]]
        if shared_admits(mode, limit, ahead):
            return Grant(token=czxid, ttl=self._ttl())
        return Busy(retry_after=None)

    async def _shared_node(self: Any, name: str, owner: str, mode: str) -> tuple[str, int]:
        known: tuple[str, int] | None = self._shared_nodes.get((name, owner))
        if known is not None:
            return known
        guid = hashlib.sha256(owner.encode()).hexdigest()[:20]
        for child in await self._shared_children(name):  # protected create, as for the mutex
            if child.startswith(guid):
                stat = await self._call("exists", f"{SHARED}/{name}/{child}")
                if stat is not None:
                    known = (f"{SHARED}/{name}/{child}", stat.czxid)
        if known is None:
            path, stat = await self._call(
                "create",
                f"{SHARED}/{name}/{guid}-{mode}-",
                owner.encode(),
                None,
                True,
                True,
                True,
                True,
            )
            known = (path, stat.czxid)
        self._shared_nodes[(name, owner)] = known
        return known

    async def release_shared(self: Any, name: str, owner: str, token: int) -> bool:
        known = self._shared_nodes.get((name, owner))
        if known is None or known[1] != token:
            return False
        try:  # sequential paths are never reused: if it exists, it is our node
            await self._call("delete", known[0])
        except NoNodeError:
            self._shared_nodes.pop((name, owner), None)
            return False
        self._shared_nodes.pop((name, owner), None)
        return True

    async def extend_shared(
        self: Any, name: str, owner: str, token: int, ttl: float
    ) -> float | None:
        known = self._shared_nodes.get((name, owner))
        if known is None or known[1] != token:
            return None
        await self._require_connected(name)
        stat = await self._call("exists", known[0])
        if stat is None or stat.czxid != token:
            self._shared_nodes.pop((name, owner), None)
            return None
        ttl_now: float = self._ttl()
        return ttl_now

    async def abandon_shared(self: Any, name: str, owner: str) -> None:
        known = self._shared_nodes.pop((name, owner), None)
        if known is not None:
            with contextlib.suppress(NoNodeError):
                await self._call("delete", known[0])

    async def wait_shared(self: Any, name: str, owner: str, max_wait: float) -> None:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        client = await self._zk()
        try:
            await asyncio.to_thread(
                client.get_children,
                f"{SHARED}/{name}",
                lambda _e: loop.call_soon_threadsafe(changed.set),
            )
        except NoNodeError:
            return
        except Exception as exc:
            raise LockBackendError(f"zookeeper: watch: {exc!r}", lock_name=name) from exc
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await changed.wait()

    async def holders_shared(self: Any, name: str) -> list[LockInfo]:
        children = await self._shared_children(name)
        held = []
        for i, child in enumerate(children):
            if not shared_admits(_mode(child), 1 << 30, [_mode(c) for c in children[:i]]):
                continue
            try:
                data, stat = await self._call("get", f"{SHARED}/{name}/{child}")
            except NoNodeError:
                continue
            held.append(
                LockInfo(
                    name=name,
                    owner=bytes(data).decode(),
                    token=stat.czxid,
                    extra={"mode": _mode(child)},
                )
            )
        return held
