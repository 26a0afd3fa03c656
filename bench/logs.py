"""Log store: durable ingest, label + line filtering, verification — each against an anchor run in
the same process and the same rounds.

- Durable ingest (anchor: the raw floor of durability — ``os.write`` + ``fdatasync`` of the same
  number of bytes per batch to a plain file). 200-byte lines, 1000 per batch; ``append`` returns only
  after the batch is fsynced, exactly as an HTTP request is acknowledged.
- HTTP ingest (no anchor; informative): two client processes POST JSON-lines bodies of 1000 lines
  over loopback to a ``LogServer`` on uvloop; lines/s and the server's CPU per line (parsing,
  validation, group commit, everything above).
- Label + line filter over N lines (default 1M; ``--lines 10000000`` for the issue's 10M), 20
  streams. Query mix: a rare trace id inside one stream, a common word inside one service, a
  mid-frequency user. Anchor: ``grep -F -m LIMIT`` over the same lines in one plain text file.
- Verification: ``verify_store`` (segments matched against their signed BLAKE3 seals, Merkle root
  recomputed and compared with every signed checkpoint) and ``--deep`` (every record decoded,
  CRC-checked and re-hashed). Anchor: ``sha256sum`` of the same segment files.

Rounds are interleaved (A B A B ...); the figures are medians with their range, plus CPU time per
unit of work, and the machine's load average is printed.

    python bench/logs.py [--lines 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gyroscope.core import run
from gyroscope.logs import (
    Entry,
    LogsConfig,
    LogServer,
    LogStore,
    canonical,
    parse_loki_push,
    parse_query,
    run_log_query,
    verify_store,
)

BATCH = 1000
LINE = 200
SERVICES = ["api", "web", "gateway", "worker", "db"]
LEVELS = ["debug", "info", "warn", "error"]
WORDS = [
    "request", "token", "latency", "replica", "cache", "hit", "miss", "upstream", "timeout",
    "retry", "stream", "chunk", "shard", "queue", "batch", "prompt", "completion", "session",
    "health", "probe", "scrape", "deploy", "canary",
]  # fmt: skip


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):,.0f} (range {min(values):,.0f}-{max(values):,.0f})"


def make_line(rng: random.Random, i: int) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(6))
    head = (
        f"GET /v1/{rng.choice(WORDS)} status={rng.choice((200, 200, 200, 404, 500))} "
        f"dur={rng.randint(1, 900)}ms trace={rng.getrandbits(64):016x} user=u{rng.randint(0, 9999)} "
        f'msg="{words}" n={i}'
    )
    return head.ljust(LINE, ".")[:LINE]


def ingest_round(path: Path, lines: int, rng: random.Random) -> tuple[float, float]:
    labels = canonical({"service": "api", "level": "info"})
    batches = [
        [
            Entry(labels, make_line(rng, b * BATCH + i).encode(), time.time_ns())
            for i in range(BATCH)
        ]
        for b in range(lines // BATCH)
    ]
    store = LogStore(path, checkpoint_every=100_000).open()
    c0, t0 = cpu(), time.perf_counter()
    for batch in batches:
        store.append(batch)
    wall, used = time.perf_counter() - t0, cpu() - c0
    store.close()
    shutil.rmtree(path)
    return lines / wall, used / lines


def wire_round(path: Path, lines: int, rng: random.Random) -> tuple[float, float]:
    """As ``ingest_round``, but from Loki JSON push bodies: parsing and validation included."""
    bodies = [
        json.dumps(
            {
                "streams": [
                    {
                        "stream": {"service": "api", "level": "info"},
                        "values": [
                            [str(time.time_ns()), make_line(rng, b * BATCH + i)]
                            for i in range(BATCH)
                        ],
                    }
                ]
            }
        ).encode()
        for b in range(lines // BATCH)
    ]
    store = LogStore(path, checkpoint_every=100_000).open()
    c0, t0 = cpu(), time.perf_counter()
    for body in bodies:
        store.append(parse_loki_push(body))
    wall, used = time.perf_counter() - t0, cpu() - c0
    store.close()
    shutil.rmtree(path)
    return lines / wall, used / lines


def raw_round(path: Path, lines: int) -> tuple[float, float]:
    path.mkdir(parents=True, exist_ok=True)
    chunk = os.urandom(BATCH * (LINE + 50))  # ~ the framed size of a batch
    fd = os.open(path / "raw", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    c0, t0 = cpu(), time.perf_counter()
    for _ in range(lines // BATCH):
        os.write(fd, chunk)
        os.fdatasync(fd)
    wall, used = time.perf_counter() - t0, cpu() - c0
    os.close(fd)
    shutil.rmtree(path)
    return lines / wall, used / lines


def bench_ingest(tmp: Path, rounds: int, lines: int) -> float:
    print(
        f"\n== durable ingest: {lines:,} lines of {LINE} bytes per round, batches of {BATCH} ({load()})"
    )
    ours, raw, wire, ratios, cpu_ours, cpu_raw, cpu_wire = [], [], [], [], [], [], []
    rng = random.Random(1)
    for r in range(rounds):
        a, ca = ingest_round(tmp / f"ingest{r}", lines, rng)
        b, cb = raw_round(tmp / f"raw{r}", lines)
        w, cw = wire_round(tmp / f"wire{r}", lines, rng)
        ours.append(a)
        raw.append(b)
        wire.append(w)
        ratios.append(a / b)
        cpu_ours.append(ca)
        cpu_raw.append(cb)
        cpu_wire.append(cw)
        print(
            f"  round {r + 1}: gyroscope {a:,.0f} lines/s, raw write+fdatasync {b:,.0f} lines/s, "
            f"from Loki JSON bodies {w:,.0f} lines/s"
        )
    print(
        f"  gyroscope {spread(ours)} lines/s; CPU {statistics.median(cpu_ours) * 1e6:.2f} us/line"
    )
    print(
        f"  incl. Loki JSON push parsing {spread(wire)} lines/s; "
        f"CPU {statistics.median(cpu_wire) * 1e6:.2f} us/line"
    )
    print(f"  raw floor {spread(raw)} lines/s; CPU {statistics.median(cpu_raw) * 1e6:.2f} us/line")
    print(
        f"  ratio gyroscope/raw: median {statistics.median(ratios):.2f} "
        f"(range {min(ratios):.2f}-{max(ratios):.2f})"
    )
    return statistics.median(ours)


# A client process: JSON-lines bodies of BATCH lines, POSTed one after another on one connection.
_CLIENT = r"""
import http.client, json, random, sys
sys.path.insert(0, sys.argv[4])
from logs import BATCH, make_line
port, batches, rng = int(sys.argv[1]), int(sys.argv[2]), random.Random(int(sys.argv[3]))
bodies = [
    "\n".join(
        json.dumps({"labels": {"service": "api", "level": "info"}, "line": make_line(rng, i)})
        for i in range(BATCH)
    ).encode()
    for _ in range(batches)
]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
print("ready", flush=True)
sys.stdin.readline()
for body in bodies:
    conn.request("POST", "/api/logs/push", body=body)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status
print("done", flush=True)
"""


async def http_round(path: Path, lines: int, clients: int = 2) -> tuple[float, float]:
    """Lines/s and the server's CPU per line for JSON-lines pushes over loopback HTTP."""
    server = LogServer(LogsConfig(listen="127.0.0.1:0", checkpoint_seconds=0), path)
    await server.start()
    here = str(Path(__file__).resolve().parent)
    per = lines // BATCH // clients
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(server.http.port), str(per), str(k), here],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(clients)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdin is not None
            assert (await asyncio.to_thread(p.stdout.readline)).strip() == "ready"
        c0, t0 = cpu(), time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(p.stdout.readline), 300)
            assert line.strip() == "done", "an HTTP client failed"
        wall, used = time.perf_counter() - t0, cpu() - c0
        assert server.store.next_seq == per * clients * BATCH
    finally:
        for p in procs:
            p.kill()
            p.wait()
        await server.stop(1.0)
    shutil.rmtree(path)
    return per * clients * BATCH / wall, used / (per * clients * BATCH)


def bench_http(tmp: Path, rounds: int, lines: int) -> None:
    print(
        f"\n== HTTP JSON-lines ingest, 2 clients on loopback, {lines:,} lines per round ({load()})"
    )
    rate, used = [], []
    for r in range(rounds):
        a, ca = run(http_round(tmp / f"http{r}", lines))  # uvloop, as gyro up runs it
        rate.append(a)
        used.append(ca)
        print(f"  round {r + 1}: {a:,.0f} lines/s, server CPU {ca * 1e6:.2f} us/line")
    print(f"  HTTP {spread(rate)} lines/s; server CPU {statistics.median(used) * 1e6:.2f} us/line")


def build(path: Path, text: Path, lines: int) -> tuple[LogStore, list[str]]:
    print(f"\n== building {lines:,} lines in 20 streams ({load()})")
    rng = random.Random(7)
    streams = [canonical({"service": s, "level": lv}) for s in SERVICES for lv in LEVELS]
    store = LogStore(path, checkpoint_every=1_000_000).open()
    rare: list[str] = []
    t0 = time.perf_counter()
    with open(text, "w") as out:
        for b in range(lines // BATCH):
            batch = []
            for i in range(BATCH):
                n = b * BATCH + i
                labels = streams[rng.randrange(len(streams))]
                line = make_line(rng, n)
                if n % (lines // 8) == 17 and labels == streams[3]:
                    rare.append(line.split("trace=")[1][:16])
                batch.append(Entry(labels, line.encode(), 1_700_000_000 * 10**9 + n * 10**6))
                out.write(line + "\n")
            store.append(batch)
    store.checkpoint()
    store.wait_indexed(600)
    print(
        f"  built in {time.perf_counter() - t0:.1f}s (incl. bloom filters), "
        f"{len(store.segments)} segments, {sum(s.size for s in store.segments) / 1e6:,.0f} MB"
    )
    return store, rare


def bench_query(store: LogStore, text: Path, rounds: int, rare: list[str]) -> float:
    trace = rare[0] if rare else "ffffffffffffffff"
    queries = [
        (f'{{service="api", level="error"}} |= "trace={trace}"', f"trace={trace}"),
        ('{service="gateway"} |= "timeout"', "timeout"),
        ('{level="error"} |= "user=u4242 "', "user=u4242 "),
    ]
    print(f"\n== label + line filter, limit 100, newest first ({load()})")
    ours: list[float] = []
    grep: list[float] = []
    for _ in range(rounds):
        for q, needle in queries:
            parsed = parse_query(q)
            t0 = time.perf_counter()
            res = run_log_query(store, parsed, start_ns=0, end_ns=2**62, limit=100)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(
                ["grep", "-F", "-m", "100", "-c", needle, str(text)],
                stdout=subprocess.DEVNULL,
                check=False,
            )
            grep.append(time.perf_counter() - t0)
            assert res.lines or "trace=" not in q, f"no hit for {q}"

    def p95(v: list[float]) -> float:
        return sorted(v)[max(0, int(len(v) * 0.95) - 1)]

    print(
        f"  gyroscope p95 {p95(ours) * 1000:.1f} ms, median {statistics.median(ours) * 1000:.1f} ms "
        f"over {len(ours)} queries"
    )
    print(
        f"  grep -F   p95 {p95(grep) * 1000:.1f} ms, median {statistics.median(grep) * 1000:.1f} ms "
        "(no labels: whole file)"
    )
    print(f"  ratio p95 gyroscope/grep: {p95(ours) / p95(grep):.2f}")
    return p95(ours)


def bench_verify(store: LogStore, rounds: int) -> tuple[float, float]:
    print(f"\n== verification ({load()})")
    files = [str(s.path) for s in store.segments]
    fast, deep, sha = [], [], []
    for r in range(rounds):
        report = verify_store(store)
        assert report.ok, report.problems[:3]
        fast.append(report.records / report.seconds)
        t0 = time.perf_counter()
        subprocess.run(["sha256sum", *files], stdout=subprocess.DEVNULL, check=True)
        sha.append(report.records / (time.perf_counter() - t0))
        if r < 2:  # the record-by-record pass is slow; two rounds say enough
            d = verify_store(store, deep=True)
            deep.append(d.records / d.seconds)
    print(f"  sealed (default): {spread(fast)} records/s")
    print(
        f"  sha256sum of the same files: {spread(sha)} records/s; "
        f"ratio {statistics.median(fast) / statistics.median(sha):.2f}"
    )
    print(f"  deep (every record decoded, CRC32C + leaf hash): {spread(deep)} records/s")
    return statistics.median(fast), statistics.median(deep)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--lines", type=int, default=1_000_000, help="Lines for the query/verify store."
    )
    ap.add_argument("--ingest-lines", type=int, default=100_000, help="Lines per ingest round.")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gyro-bench-logs-", dir=os.environ.get("TMPDIR", "/tmp")))
    try:
        ingest = bench_ingest(tmp, args.rounds, args.ingest_lines)
        bench_http(tmp, 3, args.ingest_lines)
        store, rare = build(tmp / "store", tmp / "lines.txt", args.lines)
        p95 = bench_query(store, tmp / "lines.txt", max(args.rounds, 7), rare)
        fast, deep = bench_verify(store, args.rounds)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = f"{args.lines / 1e6:g}M"
    print()
    print(
        f"durable ingest: {ingest:,.0f} lines/s (fsynced batches of {BATCH}); goal >= 100,000: "
        f"{'holds' if ingest >= 100_000 else 'does not hold'}"
    )
    print(
        f"label + line filter over {n} lines: p95 {p95 * 1000:.0f} ms; goal < 1 s at 10M: "
        f"{'holds at ' + n if p95 < 1 else 'does not hold at ' + n}"
        f"{'' if args.lines >= 10_000_000 else ' (10M not measured in this run)'}"
    )
    print(
        f"verification: {fast:,.0f} records/s (deep: {deep:,.0f}); goal >= 1,000,000: "
        f"{'holds' if fast >= 1_000_000 else 'does not hold'} (deep: "
        f"{'holds' if deep >= 1_000_000 else 'does not hold'})"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
