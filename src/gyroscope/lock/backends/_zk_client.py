"""The kazoo plumbing under ``ZooKeeperBackend``: one client session per backend, requests
bridged to asyncio, connection state, and the per-session marker node (see ``zookeeper.py``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError, ZookeeperError
from kazoo.handlers.threading import KazooTimeoutError

from gyroscope.core import Health
from gyroscope.lock._errors import LockBackendError
from gyroscope.lock.backends._kazoo_bridge import LoopHandler, to_future

__all__ = ["SESSIONS", "ZooKeeperClient"]

log = logging.getLogger(__name__)
SESSIONS = "/gyro/sessions"
_DRIVER_ERRORS = (KazooException, ZookeeperError, KazooTimeoutError)


class ZooKeeperClient:
    """State and plumbing shared by the lock engine and its read-write/semaphore mixin."""

    hosts: str
    shown: str  # hosts for messages: no user:password
    session_timeout: float | None
    _connect_timeout: float
    _client: KazooClient | None
    _holds: dict[Any, Any]
    _shared_nodes: dict[tuple[str, str], tuple[str, int]]
    _marker: tuple[int, str] | None
    _closing: bool
    _starting: asyncio.Lock | None
    calls: int

    @property
    def client_id(self) -> tuple[int, bytes] | None:
        """The current session's (id, password), e.g. to expire it deliberately in a test."""
        return self._client.client_id if self._client is not None else None

    @property
    def state(self) -> str | None:
        """kazoo's connection state: CONNECTED, SUSPENDED or LOST (None before connecting)."""
        return str(self._client.state) if self._client is not None else None

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
                client = KazooClient(hosts=self.hosts, timeout=timeout, handler=LoopHandler())
                client.add_listener(self._on_state)
                try:
                    await asyncio.to_thread(client.start, self._connect_timeout)
                except _DRIVER_ERRORS as exc:
                    await asyncio.to_thread(client.close)
                    raise LockBackendError(f"zookeeper {self.shown}: {exc}") from exc
                self._client = client
        return self._client

    def _on_state(self, state: str) -> None:
        # Runs on kazoo's thread: only flag things, never block here.
        if self._closing:
            return
        if state == KazooState.LOST:
            log.warning(
                "zookeeper %s: session expired; every lock of this session is lost", self.shown
            )
            self._holds = {}
            self._shared_nodes = {}
        elif state == KazooState.SUSPENDED:
            log.warning(
                "zookeeper %s: connection suspended; locks are uncertain until it is back",
                self.shown,
            )

    def _ttl(self) -> float:
        assert self._client is not None
        negotiated = getattr(self._client, "_session_timeout", None)
        return float(negotiated) / 1000 if negotiated else float(self._client._timeout)

    def _session(self) -> int | None:
        cid = self._client.client_id if self._client is not None else None
        return int(cid[0]) if cid else None

    def _submit(self, method: str, *args: Any) -> asyncio.Future[Any]:
        """Send a request now (in session order) and return a future for its reply."""
        return asyncio.ensure_future(self._call(method, *args))

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        client = await self._zk()
        return await self._send(method, lambda: getattr(client, f"{method}_async")(*args, **kwargs))

    async def _send(self, what: str, start: Callable[[], Any]) -> Any:
        self.calls += 1
        try:
            fut = to_future(start())
        except _DRIVER_ERRORS as exc:
            raise LockBackendError(f"zookeeper {self.shown}: {what}: {exc!r}") from exc
        try:
            return await fut
        except (NoNodeError, NodeExistsError):
            raise
        except _DRIVER_ERRORS as exc:
            raise LockBackendError(f"zookeeper {self.shown}: {what}: {exc!r}") from exc

    async def _session_marker(self) -> str:
        """This session's marker node, made once per session (see the module docstring)."""
        session = self._session()
        if self._marker is not None and self._marker[0] == session:
            return self._marker[1]
        path = f"{SESSIONS}/{uuid.uuid4().hex}"
        await self._call("create", path, b"", None, True, False, True)
        if self._session() != session:  # the session changed under us: its marker is moot
            raise LockBackendError(f"zookeeper {self.shown}: session changed; retrying")
        self._marker = (session or 0, path)
        return path

    async def _require_connected(self, name: str) -> None:
        client = await self._zk()
        if client.state != KazooState.CONNECTED:
            raise LockBackendError(f"zookeeper {self.shown}: connection suspended", lock_name=name)

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
            detail=f"{self.shown}, session timeout {self._ttl():.1f}s",
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        self._closing = True
        self._holds = {}
        if client is not None:
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(client.close)
