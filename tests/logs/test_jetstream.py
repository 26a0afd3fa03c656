"""Replicated mode on a real 3-node NATS JetStream cluster (scripts/services.sh).

Kill the stream leader during ingest: no acknowledged record is lost. Corrupt one replica's file:
our check finds it, and the repair restores it from the other replicas.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gyroscope.logs import LogStore
from gyroscope.logs._jetstream import JetStreamReplicator
from gyroscope.logs._replica import NatsNode, check_replica
from gyroscope.testing import require_server, wait_for_port

from .conftest import entries

URLS = os.environ.get(
    "GYRO_TEST_NATS_URLS", "nats://127.0.0.1:14222,nats://127.0.0.1:14223,nats://127.0.0.1:14224"
).split(",")
NATS_DIR = Path(os.environ.get("GYRO_TEST_NATS_DIR", "/tmp/gyroscope-services/nats"))


def nodes() -> dict[str, NatsNode]:
    found = [NatsNode.from_conf(NATS_DIR / f"n{i}" / "nats.conf") for i in (1, 2, 3)]
    return {n.name: n for n in found}


@pytest.fixture
async def setup(
    tmp_path: Path,
) -> AsyncIterator[tuple[LogStore, JetStreamReplicator, dict[str, NatsNode]]]:
    for url in URLS:
        host, port = url.removeprefix("nats://").split(":")
        require_server("nats", host, int(port))
    store = LogStore(tmp_path / "logs").open()
    rep = JetStreamReplicator(
        URLS,
        stream=f"T{uuid.uuid4().hex[:10].upper()}",
        subject=f"t.{uuid.uuid4().hex[:8]}",
        timeout=60.0,  # a leader election under load can take a while; retries stay bounded
    )
    await rep.connect()
    yield store, rep, nodes()
    try:
        for _ in range(10):  # the cluster may still be settling after a kill; bounded retries
            try:
                await rep._js.delete_stream(rep.stream)
                break
            except Exception:
                await asyncio.sleep(1)
    finally:
        await rep.close()
        store.close()


async def ingest(
    store: LogStore, rep: JetStreamReplicator, batches: int, acked: list[int], size: int = 10
) -> None:
    for _ in range(batches):
        batch = entries(size, start=store.next_seq)
        result = store.append(batch)
        await rep.publish(result.first, batch)  # acknowledged = local fsync + JetStream quorum
        acked.extend(range(result.first, result.first + result.count))


async def until(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


def restart(node: NatsNode) -> None:
    # setsid -f: the server gets a session of its own and no Popen of ours is left to reap
    subprocess.run(
        [
            "setsid",
            "-f",
            "nats-server",
            "-c",
            str(node.conf),
            "-l",
            str(node.conf.with_name("nats.log")),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    wait_for_port(node.host, node.port, timeout=30)


async def test_every_replica_matches_then_corruption_is_found_and_repaired(setup) -> None:  # type: ignore[no-untyped-def]
    store, rep, cluster = setup
    acked: list[int] = []
    await ingest(store, rep, 20, acked)

    async def all_ok() -> bool:
        return all(
            check_replica(n, rep.stream, store.merkle, len(acked)).ok for n in cluster.values()
        )

    await until(all_ok)  # followers write what they acknowledged within moments
    leader = await rep.leader()
    victim = next(n for n in cluster.values() if n.name != leader)
    block = sorted((victim.stream_dir(rep.stream) / "msgs").glob("*.blk"))[0]
    data = bytearray(block.read_bytes())
    data[len(data) // 2] ^= 0x20  # one flipped bit in the middle of the replica's file
    block.write_bytes(bytes(data))
    report = check_replica(victim, rep.stream, store.merkle, len(acked))
    assert not report.ok
    assert report.corrupt and "offset" in report.corrupt[0]
    for other in cluster.values():
        if other is not victim:
            assert check_replica(other, rep.stream, store.merkle, len(acked)).ok
    await rep.repair({victim.name})

    async def repaired() -> bool:
        return check_replica(victim, rep.stream, store.merkle, len(acked)).ok

    await until(repaired, timeout=90)


async def test_killing_the_stream_leader_loses_no_acknowledged_record(setup) -> None:  # type: ignore[no-untyped-def]
    store, rep, cluster = setup
    acked: list[int] = []
    await ingest(store, rep, 5, acked)
    leader = cluster[await rep.leader()]
    pid = leader.pid()
    assert pid is not None
    task = asyncio.create_task(ingest(store, rep, 40, acked, size=5))
    await until(lambda: _ready(len(acked) >= 60), timeout=60)
    os.kill(pid, signal.SIGKILL)
    try:
        await asyncio.wait_for(task, 120)  # publishes retry (same Msg-Id) until a new leader acks
    finally:
        await asyncio.to_thread(restart, leader)
    survivors = [n for n in cluster.values() if n is not leader]

    async def all_there() -> bool:
        return all(check_replica(n, rep.stream, store.merkle, len(acked)).ok for n in survivors)

    await until(all_there, timeout=60)
    assert acked == list(range(len(acked)))
    counts: list[int] = []

    async def counted() -> bool:  # the restarted node may force a new election: ask until answered
        try:
            counts.append((await rep._js.stream_info(rep.stream)).state.messages)
        except Exception:
            return False
        return True

    await until(counted, timeout=90)
    assert counts[-1] == len(acked)  # retries were de-duplicated, nothing stored twice


async def _ready(value: bool) -> bool:
    return value


async def test_log_server_in_replicated_mode_checks_and_repairs(tmp_path: Path) -> None:
    import httpx

    from gyroscope.logs import LogsConfig, LogServer

    for url in URLS:
        host, port = url.removeprefix("nats://").split(":")
        require_server("nats", host, int(port))
    cluster = nodes()
    stream = f"S{uuid.uuid4().hex[:10].upper()}"
    cfg = LogsConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "checkpoint_seconds": 0,
            "scrub_seconds": 0,
            "replication": {
                "servers": URLS,
                "stream": stream,
                "subject": f"s.{stream.lower()}",
                "node_configs": [str(n.conf) for n in cluster.values()],
                "check_seconds": 0,
            },
        }
    )
    server = LogServer(cfg, tmp_path / "logs")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.http.url, timeout=60) as client:
            body = "\n".join(
                f'{{"labels": {{"job": "rep"}}, "line": "line {i}"}}' for i in range(30)
            )
            assert (await client.post("/api/logs/push", content=body)).status_code == 200
            replicator = server.replication.replicator  # type: ignore[union-attr]

            async def checked_ok() -> bool:
                return (await client.post("/api/logs/replicas/check")).status_code == 200

            await until(checked_ok)
            leader = await replicator.leader()
            victim = next(n for n in cluster.values() if n.name != leader)
            block = sorted((victim.stream_dir(stream) / "msgs").glob("*.blk"))[0]
            data = bytearray(block.read_bytes())
            data[-20] ^= 0x01  # inside the last record's payload
            block.write_bytes(bytes(data))
            resp = await client.post("/api/logs/replicas/check")
            assert resp.status_code == 409
            report = {n["node"]: n for n in resp.json()["nodes"]}
            assert report[victim.name]["corrupt"] and resp.json()["repaired"] is True
            await until(checked_ok, timeout=90)
            stats = (await client.get("/api/logs/stats")).json()
            assert stats["replicas"]["repairs"] >= 1
            await replicator._js.delete_stream(stream)
    finally:
        await server.stop(1.0)
