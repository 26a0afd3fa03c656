"""The monitor next to Prometheus + Alertmanager (Debian packages) on the same box, same run.

1. parse: our exposition parser vs prometheus_client's (series/s, interleaved rounds).
2. ingest: scrape (HTTP) + parse + store of a 10k-series target, back to back, vs Prometheus
   scraping the same target (5 jobs at 1 s); CPU per sample from each process's own accounting;
   Prometheus is SIGSTOPped during our rounds and we idle during its rounds.
3. storage: bytes per sample on disk after 30 min of simulated 1 s scrapes of a realistic page.
4. query: a single-series rate(x[5m]) over that data, median latency.
5. alert: target killed -> webhook delivered, rule `up == 0` `for: 5s`, 1 s scrape, for ours and for
   Prometheus + Alertmanager (group_wait 0, group_interval 10s), both watching the same targets;
   once as a new group and once joining a group that has already notified.

    python bench/monitor.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from gyroscope.core import HttpServer, Request, Response
from gyroscope.monitor import TSDB, Engine, MonitorConfig, MonitorService, parse_text
from gyroscope.monitor._scrape import ScrapeTarget, TargetState, ingest_text
from gyroscope.testing import free_port, wait_for_port

TARGET_SCRIPT = r"""
import random, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
series = int(sys.argv[2])
pages = []
for v in range(16):
    rows = []
    for i in range(series):
        rows.append('vllm:request_success_total{model="m%d",replica="r%d",finished_reason="stop"} %d'
                    % (i % 17, i, 1000 * i + v * 7))
    pages.append(("\n".join(rows) + "\n").encode())
n = [0]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = pages[n[0] % len(pages)]; n[0] += 1
        self.send_response(200); self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

UP_SCRIPT = r"""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"x 1\n"; self.send_response(200); self.send_header("content-length", "4")
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def med(values: list[float]) -> str:
    return f"median {statistics.median(values):.3g} (range {min(values):.3g}-{max(values):.3g})"


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def realistic_page(step: int, rng: random.Random, state: dict[str, float]) -> str:
    """~300 series like a vLLM replica's: counters, histograms, gauges with 2 decimals."""
    rows = []
    for r in range(3):
        for name in ("request_success_total", "prompt_tokens_total", "generation_tokens_total"):
            key = f"{name}{r}"
            state[key] = state.get(key, 0) + rng.randint(0, 40)
            rows.append(f'vllm:{name}{{replica="r{r}"}} {state[key]:.0f}')
        for b, le in enumerate(
            ["0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
        ):
            key = f"h{r}{b}"
            state[key] = state.get(key, 0) + rng.randint(0, 3) * (b + 1)
            rows.append(
                f'vllm:e2e_request_latency_seconds_bucket{{replica="r{r}",le="{le}"}} {state[key]:.0f}'
            )
        for g in range(60):
            key = f"g{r}{g}"
            state[key] = round(
                max(0.0, state.get(key, 50.0) + rng.choice((-1, 0, 0, 0, 1)) * 0.25), 2
            )
            rows.append(f'vllm:gauge_{g}{{replica="r{r}"}} {state[key]}')
        for c in range(30):
            rows.append(f'process_info_{c}{{replica="r{r}"}} 1')
    return "\n".join(rows) + "\n"


# -- 1. parser ---------------------------------------------------------------------------------
def bench_parse(rounds: int) -> float:
    text = "".join(f'm{{a="{i}",b="x"}} {i}.5\n' for i in range(20_000))
    ours, theirs = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        n = len(parse_text(text))
        ours.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        n = sum(len(f.samples) for f in text_string_to_metric_families(text))
        theirs.append(n / (time.perf_counter() - t))
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(
        f"parse (first scrape, cold cache): ours {med(ours)} series/s; prometheus_client {med(theirs)}"
        f" series/s; ratio {med(ratios)}"
    )
    return statistics.median(ratios)


# -- 2. ingest -------------------------------------------------------------------------------------
async def bench_ingest(rounds: int, seconds: float, tmp: Path) -> tuple[float, float]:
    port = free_port()
    target = subprocess.Popen([sys.executable, "-c", TARGET_SCRIPT, str(port), "10000"])
    prom_port = free_port()
    prom_dir = tmp / "prom-ingest"
    prom_dir.mkdir()
    jobs = "\n".join(
        f"  - job_name: j{i}\n    scrape_interval: 1s\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]"
        for i in range(5)
    )
    (prom_dir / "p.yml").write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n{jobs}\n")
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={prom_dir / 'p.yml'}",
            f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ours_rate, ours_cpu, prom_cpu = [], [], []
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        wait_for_port("127.0.0.1", prom_port, timeout=60)
        db = TSDB(tmp / "ingest.sqlite")
        async with httpx.AsyncClient() as client:
            # Four jobs on the same target, scraped concurrently, as Prometheus scrapes its jobs.
            scrapers = [
                ScrapeTarget(db, client, job=f"j{i}", address=f"127.0.0.1:{port}", interval=1.0)
                for i in range(4)
            ]
            t_ms = 1_700_000_000_000
            await asyncio.gather(*(s.scrape_once(t_ms) for s in scrapers))  # warm series caches
            for _ in range(rounds):
                os.kill(prom.pid, signal.SIGSTOP)
                samples, wall0, cpu0 = 0, time.perf_counter(), cpu_self()
                while time.perf_counter() - wall0 < seconds:
                    t_ms += 1000
                    await asyncio.gather(*(s.scrape_once(t_ms) for s in scrapers))
                    samples += sum(s.state.samples + 3 for s in scrapers)
                wall, cpu = time.perf_counter() - wall0, cpu_self() - cpu0
                ours_rate.append(samples / wall)
                ours_cpu.append(cpu / samples * 1e6)
                os.kill(prom.pid, signal.SIGCONT)
                before = await _prom_appended(client, prom_port)
                c0 = cpu_of(prom.pid)
                await asyncio.sleep(seconds)
                after = await _prom_appended(client, prom_port)
                if after > before:
                    prom_cpu.append((cpu_of(prom.pid) - c0) / (after - before) * 1e6)
        db.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(prom.pid, signal.SIGCONT)
        for proc in (target, prom):
            proc.terminate()
            proc.wait(10)
    print(
        f"ingest (HTTP scrape + parse + store, 4 x 10k series): ours {med(ours_rate)} samples/s, "
        f"CPU {med(ours_cpu)} us/sample; Prometheus CPU {med(prom_cpu) if prom_cpu else 'n/a'} "
        f"us/sample; {load()}"
    )
    ratio = statistics.median(ours_cpu) / statistics.median(prom_cpu) if prom_cpu else float("nan")
    print(f"  CPU per sample, ours / Prometheus: {ratio:.2f}x")
    return statistics.median(ours_rate), ratio


async def _prom_appended(client: httpx.AsyncClient, port: int) -> float:
    """Samples Prometheus has appended, from its own /metrics (it does not scrape itself here)."""
    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "prometheus_tsdb_head_samples_appended_total":
                return float(sample.value)
    return 0.0


# -- 3 + 4. storage and query ------------------------------------------------------------------------
def bench_storage(tmp: Path, minutes: int) -> tuple[float, float, float]:
    db = TSDB(tmp / "storage.sqlite")
    state: dict[str, float] = {}
    rng = random.Random(7)
    ts = TargetState()
    samples = 0
    t_ms = 1_700_000_000_000
    extra = (("instance", "127.0.0.1:8001"), ("job", "demo"))
    for step in range(minutes * 60):
        samples += ingest_text(realistic_page(step, rng, state), db, ts, extra, t_ms + step * 1000)
        db.commit()
    head_log = db.stats()["wal_bytes"]  # the write-ahead log before the final flush
    db.flush_all()
    stats = db.stats()
    chunk_bps = stats["chunk_bytes"] / samples
    db._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db._db.execute("VACUUM")
    file_bps = (tmp / "storage.sqlite").stat().st_size / samples
    engine = Engine(db)
    end = (t_ms + minutes * 60_000) / 1000
    latencies = []
    for i in range(200):
        t = time.perf_counter()
        engine.instant('rate(vllm:request_success_total{replica="r1"}[5m])', end - (i % 50))
        latencies.append((time.perf_counter() - t) * 1000)
    panel = time.perf_counter()
    engine.range_query("sum by (replica) (rate(vllm:gauge_1[5m]))", end - 900, end, 15)
    panel_ms = (time.perf_counter() - panel) * 1000
    db.close()
    print(
        f"query: dashboard panel, rate over 3 series x 61 steps (15 min at 15 s): {panel_ms:.1f} ms"
    )
    print(
        f"storage: {samples} samples ({minutes} min at 1 s, {len(state)} series): "
        f"{chunk_bps:.2f} bytes/sample in chunks, {file_bps:.2f} bytes/sample for the whole SQLite file; "
        f"head log (write-ahead, transient) {head_log / 1e6:.1f} MB before the final flush"
    )
    print(f"query: single-series rate(x[5m]) {med(latencies)} ms")
    return chunk_bps, file_bps, statistics.median(latencies)


# -- 5. alert latency ------------------------------------------------------------------------------
class Hooks:
    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.server = HttpServer(self.handle, port=0, name="hooks")

    async def handle(self, request: Request) -> Response:
        now = time.time()
        body = json.loads(request.body)
        for alert in body.get("alerts", []):
            if alert["status"] == "firing":
                key = (request.path.strip("/"), alert["labels"].get("instance", ""))
                self.arrivals.setdefault(key, now)
        return Response.text("ok\n")


RULES = """groups:
  - name: bench
    interval: 1s
    rules:
      - alert: TargetDown
        expr: up == 0
        for: 5s
"""


async def bench_alerts(rounds: int, tmp: Path) -> dict[str, list[float]]:
    hooks = Hooks()
    await hooks.server.start()
    ports = {case: [free_port() for _ in range(rounds)] for case in ("solo", "join")}
    anchor = free_port()  # never listens: its alert fires first and opens the "join" group
    procs = {
        p: subprocess.Popen([sys.executable, "-c", UP_SCRIPT, str(p)])
        for ps in ports.values()
        for p in ps
    }
    for p in procs:
        wait_for_port("127.0.0.1", p, timeout=30)
    (tmp / "rules.yml").write_text(RULES)
    solo = [f"127.0.0.1:{p}" for p in ports["solo"]]
    join = [f"127.0.0.1:{p}" for p in [*ports["join"], anchor]]
    routes = [{"matchers": ['job="join"'], "group_by": ["alertname", "job"], "receiver": "hook"}]
    ours = MonitorService(
        MonitorConfig.model_validate(
            {
                "listen": "127.0.0.1:0",
                "host": {"enabled": False},
                "rule_files": [str(tmp / "rules.yml")],
                "scrape": [
                    {"job": "solo", "targets": solo, "interval": "1s", "timeout": "1s"},
                    {"job": "join", "targets": join, "interval": "1s", "timeout": "1s"},
                ],
                "alerting": {
                    "route": {
                        "receiver": "hook",
                        "group_by": ["alertname", "instance"],
                        "group_wait": 0,
                        "group_interval": "10s",
                        "routes": routes,
                    },
                    "receivers": [{"name": "hook", "webhook": {"url": f"{hooks.server.url}/ours"}}],
                },
            }
        ),
        tmp / "ours",
    )
    am_port, prom_port = free_port(), free_port()
    (tmp / "am.yml").write_text(
        json.dumps(
            {
                "route": {
                    "receiver": "hook",
                    "group_by": ["alertname", "instance"],
                    "group_wait": "0s",
                    "group_interval": "10s",
                    "repeat_interval": "1h",
                    "routes": [
                        {
                            "matchers": ['job="join"'],
                            "group_by": ["alertname", "job"],
                            "receiver": "hook",
                        }
                    ],
                },
                "receivers": [
                    {"name": "hook", "webhook_configs": [{"url": f"{hooks.server.url}/prom"}]}
                ],
            }
        )
    )
    (tmp / "prom.yml").write_text(
        json.dumps(
            {
                "global": {
                    "scrape_interval": "1s",
                    "evaluation_interval": "1s",
                    "scrape_timeout": "1s",
                },
                "rule_files": [str(tmp / "rules.yml")],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                },
                "scrape_configs": [
                    {"job_name": "solo", "static_configs": [{"targets": solo}]},
                    {"job_name": "join", "static_configs": [{"targets": join}]},
                ],
            }
        )
    )
    am = subprocess.Popen(
        [
            "prometheus-alertmanager",
            f"--config.file={tmp / 'am.yml'}",
            f"--storage.path={tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp / 'prom.yml'}",
            f"--storage.tsdb.path={tmp / 'pd'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await ours.start()
    delays: dict[str, list[float]] = {
        "ours solo": [],
        "prom solo": [],
        "ours join": [],
        "prom join": [],
    }
    try:
        anchor_key = f"127.0.0.1:{anchor}"
        await _wait(
            lambda: (
                ("ours", anchor_key) in hooks.arrivals and ("prom", anchor_key) in hooks.arrivals
            ),
            90,
        )
        for i in range(rounds):
            for case in ("solo", "join"):
                port = ports[case][i]
                await asyncio.sleep(
                    random.uniform(0, 1)
                )  # kill at a random phase of the scrape tick
                killed = time.time()
                procs[port].kill()
                key = f"127.0.0.1:{port}"
                await _wait(
                    lambda key=key: (
                        ("ours", key) in hooks.arrivals and ("prom", key) in hooks.arrivals
                    ),
                    90,
                )
                delays[f"ours {case}"].append(hooks.arrivals[("ours", key)] - killed)
                delays[f"prom {case}"].append(hooks.arrivals[("prom", key)] - killed)
    finally:
        await ours.stop(1.0)
        for proc in [am, prom, *procs.values()]:
            proc.kill()
            proc.wait(10)
        await hooks.server.stop(0.5)
    for name, values in delays.items():
        print(f"alert {name}: target killed -> webhook {med(values)} s (max {max(values):.2f})")
    return delays


async def _wait(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        await asyncio.sleep(0.02)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--minutes", type=int, default=20, help="simulated minutes for the storage test"
    )
    args = parser.parse_args()
    logging.getLogger("gyroscope.monitor").setLevel(logging.ERROR)  # killed targets are expected
    for tool in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run scripts/services.sh install")
    print(f"monitor benchmark, {psutil.cpu_count()} CPUs, {load()}")
    with tempfile.TemporaryDirectory(prefix="gyro-bench-monitor-") as name:
        tmp = Path(name)
        parse_ratio = bench_parse(args.rounds)
        rate, cpu_ratio = await bench_ingest(args.rounds, args.seconds, tmp)
        chunk_bps, file_bps, query_ms = bench_storage(tmp, args.minutes)
        delays = await bench_alerts(args.rounds, tmp)
    print(f"background: {load()}")
    p99 = {k: max(v) for k, v in delays.items()}  # with 5 rounds the max stands in for p99
    print(f"(parse speed vs prometheus_client's parser: {parse_ratio:.1f}x; no goal)")
    print(
        f"TARGET scrape+parse+store: {rate:,.0f} samples/s, goal >= 200,000: "
        f"{'holds' if rate >= 200_000 else 'does not hold'}"
        f" (CPU/sample {cpu_ratio:.2f}x Prometheus's)"
    )
    print(
        f"TARGET bytes/sample on disk: {file_bps:.2f} (chunks {chunk_bps:.2f}), goal <= 2: "
        f"{'holds' if file_bps <= 2 else 'does not hold'}"
    )
    for case in ("solo", "join"):
        ours, prom = p99[f"ours {case}"], p99[f"prom {case}"]
        label = "new group" if case == "solo" else "joins a notified group"
        print(
            f"TARGET alert delivery ({label}): max {ours:.2f} s vs Prometheus+Alertmanager {prom:.2f} s, "
            f"goal <= for + 2 s = 7 s: {'holds' if ours <= 7 else 'does not hold'}"
        )
    print(
        f"TARGET single-series rate() query: {query_ms:.2f} ms, goal < 10 ms: "
        f"{'holds' if query_ms < 10 else 'does not hold'}"
    )


if __name__ == "__main__":
    asyncio.run(main())
