"""A ZooKeeper server restart while a lock is held and waiters wait (our own server, not the
shared one): the holder learns SUSPENDED, then either keeps the lock with the same still-valid
token (its session survived) or learns it lost it (the session expired, or the server stayed down
past the holder's lease) — and the recorded history shows no double grant, the waiters get the
lock in turn, and it works afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gyroscope.chaos import ManagedProcess
from gyroscope.lock import FencedResource, LeaseLostError, Lock, LockBackendError
from gyroscope.lock.backends.zookeeper import ZooKeeperBackend
from gyroscope.testing import free_port, wait_for_port
from gyroscope.testing.lock_history import Recorder, check_history, load_history

from .conftest import require
from .helpers import eventually

ZK_JAR = Path("/usr/share/java/zookeeper.jar")
TTL = 4.0


def start_zookeeper(root: Path) -> tuple[ManagedProcess, int]:
    """A standalone ZooKeeper like scripts/services.sh's, on its own port and data dir."""
    if shutil.which("java") is None or not ZK_JAR.exists():
        require("zookeeper")  # fail in CI, skip locally, like every server test
    port = free_port()
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "zoo.cfg").write_text(
        f"tickTime=500\ndataDir={root / 'data'}\nclientPort={port}\n"
        "clientPortAddress=127.0.0.1\nminSessionTimeout=1000\nmaxSessionTimeout=30000\n"
        "admin.enableServer=false\n"
    )
    proc = ManagedProcess(
        [
            "java",
            "-Xmx128m",
            "-Xms16m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.root.logger=WARN,CONSOLE",
            f"-Dzookeeper.log.dir={root}",
            "-cp",
            f"/etc/zookeeper/conf:{ZK_JAR}",
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(root / "zoo.cfg"),
        ]
    )
    wait_for_port("127.0.0.1", port, timeout=90)
    return proc, port


@pytest.fixture
def own_zookeeper(tmp_path: Path) -> Iterator[tuple[ManagedProcess, int]]:
    proc, port = start_zookeeper(tmp_path / "zk")
    try:
        yield proc, port
    finally:
        proc.kill()


async def _renew_and_record(lock: Lock, rec: Recorder, renewed: list[float]) -> None:
    """The holder renews by hand so the history knows exactly how far its lease reached."""
    while lock.held:
        sent = time.monotonic()
        try:
            granted = await lock.extend()
        except LeaseLostError:
            return
        except LockBackendError:  # SUSPENDED: renewal impossible, the lease counts down
            await asyncio.sleep(0.1)
            continue
        rec.record("renew_invoke", at=sent)
        rec.record("renew_ok", ttl=granted)
        renewed.append(time.monotonic())
        await asyncio.sleep(TTL / 4)


async def _waiter(hosts: str, name: str, i: int, history: Path, store: FencedResource) -> int:
    backend = ZooKeeperBackend(hosts)
    rec = Recorder(history, process=f"waiter-{i}")
    lock = Lock(name, backend, ttl=TTL, fair=True)  # queued: visible, and FIFO across it
    try:
        rec.record("acquire_invoke", ttl=TTL)
        token = await lock.acquire(timeout=90)
        assert token is not None, f"waiter {i} never got the lock after the restart"
        rec.record("acquire_ok", token=token)
        store.write("owner", f"waiter-{i}", token=token)
        rec.record("write_ok", token=token)
        rec.record("release_invoke")
        await lock.release()
        rec.record("release_ok")
        return token
    finally:
        await lock.aclose()
        await backend.aclose()


@pytest.mark.parametrize("down_past_lease", [False, True], ids=["quick", "down-past-lease"])
async def test_server_restart_while_held_and_waited_for(
    own_zookeeper: tuple[ManagedProcess, int], tmp_path: Path, down_past_lease: bool
) -> None:
    proc, port = own_zookeeper
    hosts = f"127.0.0.1:{port}"
    name, history = "restart", tmp_path / "history.jsonl"
    store = FencedResource(tmp_path / "store.db", name="shared")
    backend = ZooKeeperBackend(hosts)
    rec = Recorder(history, process="holder")
    holder = Lock(name, backend, ttl=TTL, auto_renew=False)
    rec.record("acquire_invoke", ttl=TTL)
    first = await holder.acquire(timeout=30)
    assert first is not None
    rec.record("acquire_ok", token=first)
    renewed: list[float] = []
    renewer = asyncio.create_task(_renew_and_record(holder, rec, renewed))
    waiters = [asyncio.create_task(_waiter(hosts, name, i, history, store)) for i in range(2)]
    try:
        await eventually(lambda: _waiting(backend, name), timeout=30)  # the waiters are blocked

        proc.kill()
        await eventually(lambda: _is(backend.state == "SUSPENDED"), timeout=30)
        if down_past_lease:  # the holder's own count runs out while nobody can answer
            await eventually(lambda: _is(holder.lease_lost.is_set()), timeout=TTL + 10)
            assert not holder.held
        proc.restart()
        restarted = time.monotonic()
        wait_for_port("127.0.0.1", port, timeout=90)
        # Either the session survived (a renewal is confirmed again) or it expired (lost).
        await eventually(
            lambda: _is(holder.lease_lost.is_set() or (bool(renewed) and renewed[-1] > restarted)),
            60,
        )

        print(f"zookeeper restart: holder {'kept' if holder.held else 'lost'} the lock")
        if holder.held:
            assert holder.token == first
            assert holder.owner_id == await holder.owner()
            store.write("owner", "holder", token=first)  # the same token is still the newest
            rec.record("write_ok", token=first)
            rec.record("release_invoke")
            await holder.release()
            rec.record("release_ok")
        else:
            rec.record("lost")
            with pytest.raises(LeaseLostError):
                await holder.release()
        tokens = await asyncio.wait_for(asyncio.gather(*waiters), 120)
        assert all(t > first for t in tokens) and len(set(tokens)) == 2
    finally:
        renewer.cancel()
        for task in waiters:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(renewer, *waiters)
        await holder.aclose()
        await backend.aclose()

    assert check_history(load_history(history)) == []
    after = ZooKeeperBackend(hosts)  # usable after the restart, the fence still counting up
    try:
        again = Lock(name, after, ttl=TTL)
        token = await again.acquire(timeout=30)
        assert token is not None and token > max(tokens)
        await again.release()
    finally:
        await after.aclose()


async def _is(value: bool) -> bool:
    return value


async def _waiting(backend: ZooKeeperBackend, name: str) -> bool:
    info = await backend.inspect(name)
    return info is not None and info.waiters == 2
