"""Locks: uncontended acquire+release against each engine's raw two-operation pair, and Redis
handoffs between 8 contending processes against redis-py's ``Lock``.

The benchmark starts its own servers on free loopback ports with data in a temp dir (Redis with
``appendonly yes`` + ``appendfsync always``, a single etcd member, a standalone ZooKeeper with a
128 MB heap), and stops them at the end.

1. Uncontended, per engine, 5 rounds that alternate ours and raw op by op (A B A B ..., the
   order flipping between rounds): the median wall time of
   one ``Lock.acquire()`` + ``release()`` and of the raw pair on the same client library and event
   loop — Redis ``SET NX PX`` + ``DEL`` (redis-py asyncio), etcd ``put`` + ``delete`` (httpx to the
   JSON gateway), ZooKeeper ``create`` (ephemeral) + ``delete`` (kazoo). Ours on ZooKeeper is one
   ``create`` + one ``multi`` (check the session marker and break epoch, delete), see
   ``gyroscope.lock.backends.zookeeper``. CPU time per pair comes from ``getrusage`` of this
   process.
2. Contended, Redis: 8 processes loop acquire / release for a fixed time. A *handoff* is a grant
   to a different process than the previous grant (a holder re-taking the lock it just released
   is not one); we report handoffs/s, acquisitions/s and each acquisition's wait. Ours uses
   ``fair=True`` (FIFO); redis-py's ``Lock`` runs with its defaults (polling every 0.1 s), as
   users get it.

    python bench/locks.py [--rounds 5] [--ops 200] [--seconds 3] [--skip etcd,zookeeper]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from gyroscope.lock import Lock, open_backend
from gyroscope.testing import free_port, wait_for_port

Pair = Callable[[int], Awaitable[None]]


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- servers -----------------------------------------------------------------------------------


class Servers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, argv: list[str], port: int, timeout: float = 60) -> None:
        log = open(self.root / f"{Path(argv[0]).name}-{port}.log", "wb")  # noqa: SIM115
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True))
        wait_for_port("127.0.0.1", port, timeout=timeout)

    def redis(self) -> str:
        port = free_port()
        d = self.root / "redis"
        d.mkdir()
        self._spawn(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(d),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            port,
        )
        return f"redis://127.0.0.1:{port}/0"

    def etcd(self) -> str:
        port, peer = free_port(), free_port()
        self._spawn(
            [
                "etcd",
                "--name",
                "bench",
                "--data-dir",
                str(self.root / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"bench=http://127.0.0.1:{peer}",
            ],
            port,
        )
        return f"127.0.0.1:{port}"

    def zookeeper(self) -> str:
        port = free_port()
        d = self.root / "zk"
        (d / "data").mkdir(parents=True)
        (d / "zoo.cfg").write_text(
            f"tickTime=500\ndataDir={d / 'data'}\nclientPort={port}\n"
            "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
        )
        self._spawn(
            [
                "java",
                "-Xmx128m",
                "-XX:+UseSerialGC",
                "-Dzookeeper.root.logger=WARN,CONSOLE",
                "-cp",
                "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(d / "zoo.cfg"),
            ],
            port,
        )
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


# -- uncontended -------------------------------------------------------------------------------


async def measure(pair: Pair, ops: int) -> tuple[float, float]:
    """Median seconds per pair over ``ops`` pairs, and CPU seconds per pair."""
    times = []
    c0 = cpu()
    for i in range(ops):
        t0 = time.perf_counter()
        await pair(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (cpu() - c0) / ops


async def interleaved(
    pairs: dict[str, Pair], ops: int, first: int
) -> dict[str, tuple[float, float]]:
    """Alternate the contenders op by op (A B A B ...) so both see the same background load;
    per contender: median seconds per pair, CPU seconds per pair."""
    labels = list(pairs)
    if first:
        labels.reverse()
    times: dict[str, list[float]] = {label: [] for label in labels}
    spent = dict.fromkeys(labels, 0.0)
    for i in range(ops):
        for label in labels:
            c0, t0 = cpu(), time.perf_counter()
            await pairs[label](i)
            times[label].append(time.perf_counter() - t0)
            spent[label] += cpu() - c0
    return {label: (statistics.median(times[label]), spent[label] / ops) for label in labels}


def ours(url: str) -> tuple[Pair, Callable[[], Awaitable[None]]]:
    backend = open_backend(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"

    lock = Lock(name, backend, ttl=10)  # one lock object, acquired and released again and again

    async def pair(_: int) -> None:
        await lock.acquire()
        await lock.release()

    return pair, backend.aclose


def raw_redis(url: str) -> tuple[Pair, Callable[[], Awaitable[None]]]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    key = f"raw-{uuid.uuid4().hex[:8]}"

    async def pair(_: int) -> None:
        assert await client.set(key, "owner", nx=True, px=10_000)
        await client.delete(key)

    return pair, client.aclose


def raw_etcd(address: str) -> tuple[Pair, Callable[[], Awaitable[None]]]:
    import base64

    import httpx

    client = httpx.AsyncClient()
    key = base64.b64encode(f"raw/{uuid.uuid4().hex[:8]}".encode()).decode()
    base = f"http://{address}"

    async def pair(_: int) -> None:
        (
            await client.post(f"{base}/v3/kv/put", json={"key": key, "value": "b3duZXI="})
        ).raise_for_status()
        (await client.post(f"{base}/v3/kv/deleterange", json={"key": key})).raise_for_status()

    return pair, client.aclose


def raw_zookeeper(address: str) -> tuple[Pair, Callable[[], Awaitable[None]]]:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=address, timeout=10)
    client.start(30)
    client.ensure_path("/raw")
    path = f"/raw/{uuid.uuid4().hex[:8]}"

    async def pair(_: int) -> None:  # kazoo's sync calls: what a kazoo user writes
        client.create(path, b"owner", ephemeral=True)
        client.delete(path)

    async def close() -> None:
        client.stop()
        client.close()

    return pair, close


async def uncontended(
    engine: str,
    ours_url: str,
    raw: tuple[Pair, Callable[[], Awaitable[None]]],
    rounds: int,
    ops: int,
) -> float:
    mine, close_mine = ours(ours_url)
    anchor, close_anchor = raw
    await measure(mine, 20)  # warm up connections, scripts, sessions
    await measure(anchor, 20)
    ratios: list[float] = []
    cpus: dict[str, list[float]] = {"ours": [], "raw": []}
    for r in range(rounds):
        got = await interleaved({"ours": mine, "raw": anchor}, ops, first=r % 2)
        for label, (_, spent) in got.items():
            cpus[label].append(spent)
        ratios.append(got["ours"][0] / got["raw"][0])
        print(
            f"  {engine} round {r + 1}: ours {got['ours'][0] * 1e3:.3f} ms, raw "
            f"{got['raw'][0] * 1e3:.3f} ms, ratio {ratios[-1]:.2f}  (load {load()})",
            flush=True,
        )
    await close_mine()
    await close_anchor()
    ratio = statistics.median(ratios)
    print(
        f"  {engine}: median ratio {ratio:.2f} (range {min(ratios):.2f}-{max(ratios):.2f}); "
        f"CPU/pair ours {statistics.median(cpus['ours']) * 1e6:.0f} us, raw "
        f"{statistics.median(cpus['raw']) * 1e6:.0f} us"
    )
    return ratio


# -- contended (one process per contender) -----------------------------------------------------


def contender(kind: str, url: str, name: str, seconds: float, out: str) -> None:
    waits: list[float] = []
    grants: list[float] = []
    print("ready", flush=True)  # imports done; the parent answers with the common start time
    start_at = float(sys.stdin.readline())
    while time.monotonic() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    if kind == "ours":

        async def run() -> None:
            backend = open_backend(url)
            lock = Lock(name, backend, ttl=5, fair=True)
            while time.monotonic() < end:
                t0 = time.monotonic()
                await lock.acquire(timeout=30)
                grants.append(time.monotonic())
                waits.append(grants[-1] - t0)
                await lock.release()
            await backend.aclose()

        asyncio.run(run())
    else:
        import redis

        client = redis.Redis.from_url(url)
        while time.monotonic() < end:
            t0 = time.monotonic()
            lock = client.lock(name, timeout=5)
            lock.acquire(blocking_timeout=30)
            grants.append(time.monotonic())
            waits.append(grants[-1] - t0)
            lock.release()
        client.close()
    Path(out).write_text(json.dumps({"waits": waits, "grants": grants}))


def contended_round(
    kind: str, url: str, seconds: float, procs: int, tmp: Path
) -> tuple[float, float, list[float]]:
    """Handoffs/s (the lock passing to *another* process), acquisitions/s, and every wait."""
    name = f"contend-{uuid.uuid4().hex[:8]}"
    outs = [tmp / f"{kind}-{name}-{i}.json" for i in range(procs)]
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--contender", kind, url, name, str(seconds), str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    start_at = time.monotonic() + 0.2
    for child in children:
        assert child.stdin is not None
        child.stdin.write(f"{start_at}\n")
        child.stdin.flush()
    for child in children:
        child.wait(timeout=seconds + 60)
    runs = [json.loads(out.read_text()) for out in outs]
    waits = [w for run in runs for w in run["waits"]]
    grants = sorted((g, i) for i, run in enumerate(runs) for g in run["grants"])
    handoffs = sum(1 for (_, a), (_, b) in itertools.pairwise(grants) if a != b)
    return handoffs / seconds, len(waits) / seconds, waits


def contended(url: str, rounds: int, seconds: float, tmp: Path) -> tuple[float, float]:
    ratios, spreads = [], []
    for r in range(rounds):
        order = ["ours", "redis-py"] if r % 2 == 0 else ["redis-py", "ours"]
        rate, acq, waits = {}, {}, {}
        for kind in order:
            rate[kind], acq[kind], waits[kind] = contended_round(kind, url, seconds, 8, tmp)
        med = statistics.median(waits["ours"])
        spread = max(waits["ours"]) / med if med > 0 else float("inf")
        ratios.append(rate["ours"] / max(rate["redis-py"], 1 / seconds))
        spreads.append(spread)
        print(
            f"  round {r + 1}: ours {rate['ours']:.0f} handoffs/s of {acq['ours']:.0f} "
            f"acquisitions/s (wait median {med * 1e3:.1f} ms, max "
            f"{max(waits['ours']) * 1e3:.1f} ms), redis-py {rate['redis-py']:.0f} handoffs/s "
            f"of {acq['redis-py']:.0f} acquisitions/s (wait median "
            f"{statistics.median(waits['redis-py']) * 1e3:.1f} ms, max "
            f"{max(waits['redis-py']) * 1e3:.1f} ms)  (load {load()})",
            flush=True,
        )
    return statistics.median(ratios), max(spreads)


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--contender":
        kind, url, name, seconds, out = sys.argv[2:7]
        contender(kind, url, name, float(seconds), out)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--skip", default="", help="comma-separated: redis,etcd,zookeeper,contended"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # kazoo reports every dropped connection otherwise
    skip = set(filter(None, args.skip.split(",")))
    for tool in ("redis-server", "etcd", "java"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/locks.py: {tool} not found; run scripts/services.sh install")
    tmp = Path(tempfile.mkdtemp(prefix="gyro-bench-locks-"))
    servers = Servers(tmp)
    lines: list[str] = []
    print(f"machine: {os.cpu_count()} cores, load {load()}")
    try:
        if "redis" not in skip or "contended" not in skip:
            redis_url = servers.redis()
        if "redis" not in skip:
            print("uncontended acquire+release, Redis (SET NX PX + DEL):")
            ratio = asyncio.run(
                uncontended("redis", redis_url, raw_redis(redis_url), args.rounds, args.ops)
            )
            lines.append(
                _target(
                    f"redis uncontended acquire+release: {ratio:.2f}x SET NX PX + DEL",
                    "<= 1.25x",
                    ratio <= 1.25,
                )
            )
        if "etcd" not in skip:
            address = servers.etcd()
            print("uncontended acquire+release, etcd (put + delete):")
            ratio = asyncio.run(
                uncontended("etcd", f"etcd://{address}", raw_etcd(address), args.rounds, args.ops)
            )
            lines.append(
                _target(
                    f"etcd uncontended acquire+release: {ratio:.2f}x put + delete",
                    "<= 1.25x",
                    ratio <= 1.25,
                )
            )
        if "zookeeper" not in skip:
            address = servers.zookeeper()
            print("uncontended acquire+release, ZooKeeper (create + delete):")
            ratio = asyncio.run(
                uncontended(
                    "zookeeper",
                    f"zookeeper://{address}",
                    raw_zookeeper(address),
                    args.rounds,
                    args.ops,
                )
            )
            lines.append(
                _target(
                    f"zookeeper uncontended acquire+release: {ratio:.2f}x create + delete",
                    "<= 1.25x",
                    ratio <= 1.25,
                )
            )
        if "contended" not in skip:
            print(f"contended, Redis, 8 processes, {args.seconds:g} s per run:")
            ratio, spread = contended(redis_url, args.rounds, args.seconds, tmp)
            lines.append(
                _target(
                    f"redis contended handoffs/s: {ratio:.2f}x redis-py Lock, "
                    f"max wait {spread:.1f}x median",
                    ">= 1x and <= 10x",
                    ratio >= 1 and spread <= 10,
                )
            )
    finally:
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    for line in lines:
        print(line)


def _target(figure: str, goal: str, holds: bool) -> str:
    return f"TARGET {figure} (goal {goal}): {'holds' if holds else 'DOES NOT HOLD'}"


if __name__ == "__main__":
    main()
