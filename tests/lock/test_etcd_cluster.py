"""etcd as a 3-member Raft cluster: kill -9 the leader while processes contend for a lock.

The test runs its own cluster (fresh ports, data in tmp_path) so it can kill members freely.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gyroscope.chaos import ManagedProcess
from gyroscope.lock import Lock, LockBackend, open_backend
from gyroscope.testing import free_port, require_server, wait_for_port
from gyroscope.testing.lock_conformance import (
    check_break_is_noticed,
    check_exclusive_and_observable,
    check_mutual_exclusion_under_contention,
    check_waiter_woken_on_release,
)
from gyroscope.testing.lock_history import check_history, load_history

from .conftest import ETCD_CLUSTER, require
from .helpers import spawn


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[tuple[ManagedProcess, int]]]:
    if shutil.which("etcd") is None:
        require("etcd")
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
    members = []
    for i, (client, peer) in enumerate(ports):
        argv = [
            "etcd",
            "--name",
            f"m{i}",
            "--data-dir",
            str(tmp_path / f"m{i}"),
            "--listen-client-urls",
            f"http://127.0.0.1:{client}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            initial,
            "--initial-cluster-token",
            f"t{ports[0][0]}",
            "--heartbeat-interval",
            "100",
            "--election-timeout",
            "1000",
        ]
        quiet = subprocess.DEVNULL
        members.append((ManagedProcess(argv, stdout=quiet, stderr=quiet), client))
    try:
        for _, client in members:
            wait_for_port("127.0.0.1", client, timeout=30)
        _leader(members, timeout=30)
        yield members
    finally:
        for proc, _ in members:
            proc.kill()


def _leader(members: list[tuple[ManagedProcess, int]], timeout: float) -> int:
    """Index of the current leader (asks each live member)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, (proc, port) in enumerate(members):
            if not proc.running:
                continue
            try:
                status = httpx.post(
                    f"http://127.0.0.1:{port}/v3/maintenance/status", json={}, timeout=2
                ).json()
            except (httpx.HTTPError, ValueError):
                continue
            if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                return i
        time.sleep(0.1)
    raise AssertionError("the cluster has no leader")


def test_leader_killed_during_acquisitions(
    cluster: list[tuple[ManagedProcess, int]], tmp_path: Path
) -> None:
    url = "etcd://" + ",".join(f"127.0.0.1:{port}" for _, port in cluster)
    workers = [spawn("churn", url, "leader-kill", 2.0, tmp_path / "run", "40") for _ in range(3)]
    try:
        deadline = time.monotonic() + 30
        history = tmp_path / "run" / "history.jsonl"
        while sum(e.op == "acquire_ok" for e in _events(history)) < 10:
            assert time.monotonic() < deadline, "no progress before the fault"
            time.sleep(0.05)
        leader = _leader(cluster, timeout=10)
        killed_at = time.monotonic()
        cluster[leader][0].kill()
        for proc in workers:
            assert proc.wait(timeout=110) == 0
    finally:
        for proc in workers:
            proc.kill()
    events = load_history(history)
    assert check_history(events) == []  # no double grant, tokens increase, fencing held
    after = [e.time for e in events if e.op == "acquire_ok" and e.time > killed_at]
    assert after, "no acquisition after the leader was killed"
    assert after[0] - killed_at < 10, (
        f"first acquisition {after[0] - killed_at:.1f}s after the kill"
    )
    assert _leader(cluster, timeout=10) != leader


def _events(path: Path) -> list:  # type: ignore[type-arg]
    return load_history(path) if path.exists() else []


@pytest.mark.parametrize(
    "check",
    [
        check_exclusive_and_observable,
        check_waiter_woken_on_release,
        check_mutual_exclusion_under_contention,
        check_break_is_noticed,
    ],
    ids=lambda c: c.__name__.removeprefix("check_"),
)
async def test_conformance_on_the_services_cluster(check: Any) -> None:
    """The long-lived 3-member cluster from scripts/services.sh, all members as endpoints."""
    host, _, port = ETCD_CLUSTER.split(",")[0].rpartition(":")
    require_server("etcd cluster", host, int(port))

    async def make() -> LockBackend:
        return open_backend(f"etcd://{ETCD_CLUSTER}")

    await check(make)


async def test_single_member_restart_keeps_lock_and_fence(tmp_path: Path) -> None:
    """kill -9 and restart of a one-member etcd: the grant and the revision counter survive."""
    if shutil.which("etcd") is None:
        require("etcd")
    client, peer = free_port(), free_port()
    argv = [
        "etcd",
        "--name",
        "solo",
        "--data-dir",
        str(tmp_path / "solo"),
        "--listen-client-urls",
        f"http://127.0.0.1:{client}",
        "--advertise-client-urls",
        f"http://127.0.0.1:{client}",
        "--listen-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-cluster",
        f"solo=http://127.0.0.1:{peer}",
    ]
    quiet = subprocess.DEVNULL
    with ManagedProcess(argv, stdout=quiet, stderr=quiet) as server:
        wait_for_port("127.0.0.1", client, timeout=30)
        url = f"etcd://127.0.0.1:{client}"
        holder = Lock("restart", url, ttl=5)
        first = await holder.acquire(timeout=20)
        server.kill()
        server.restart()
        wait_for_port("127.0.0.1", client, timeout=30)
        other = Lock("restart", url, ttl=5)
        if holder.held:  # etcd restores leases on restart, so the grant normally survives
            assert await other.acquire(blocking=False) is None
            await holder.release()
        else:
            assert holder.lease_lost.is_set()
        second = await other.acquire(timeout=30)
        assert first is not None and second is not None and second > first
        await other.release()
        await other.aclose()
        await holder.aclose()
