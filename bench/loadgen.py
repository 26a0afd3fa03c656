"""The load generator against the tools people would use instead, in the same run.

1. nginx (1 worker, small static file, access_log off, pinned to the last core) driven by
   `wrk -t1 -c50 -d Ns` and by `gyro bench run -c 50 --workers 1 -d Ns`, both pinned to core 0,
   in interleaved rounds: requests/s ratio and CPU per request (wrk: its rusage from wait4; ours:
   the CPU the run itself used, from the result, and the whole process including start-up).
2. Locust (FastHttpUser, 1 process, 50 users, no wait) against ours, same nginx, interleaved, on
   /tiny: the same 127 bytes as the static file, from memory, so nginx's one core goes further.
   Ours is fast enough that nginx can still be what sets its requests/s; the run says which side
   was saturated (nginx's CPU while ours ran, ours' own) and prints the CPU-per-request ratio,
   which no target limits, next to the requests/s ratio that the goal names.
3. Streamed LLM tokens decoded per core: `gyro bench llm` against the demo server (64 streams, one
   SSE event per token and per write, as vLLM sends them); tokens divided by the generator's own
   CPU seconds during the run. The goal line is this figure. A fast SSE source (16 events per
   chunk) shows the decoder's capacity when reads are not one event each (printed as info).
4. Corrected latency: nginx frozen with SIGSTOP for a known window during an open-model run; the
   measured p50/p99 against the true latencies, which follow from the schedule and the window.

    python bench/loadgen.py [--rounds 5] [--seconds 4]     (about 3 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bench.servers import nginx, nginx_binary, nginx_worker_pid  # noqa: E402
from tests.bench.test_latency import true_percentiles  # noqa: E402

from gyroscope.bench import LoadConfig, run_load  # noqa: E402
from gyroscope.testing import free_port, wait_for_port  # noqa: E402

GYRO = [sys.executable, "-m", "gyroscope.cli"]
LOCUST = shutil.which("locust") or (
    str(Path(sys.executable).parent / "locust")
    if (Path(sys.executable).parent / "locust").exists()
    else None
)
CORES = os.cpu_count() or 1
GEN_CPU, SERVER_CPU = "0", str(CORES - 1)

# The stall check: few enough requests pile up (~120) that nginx's catch-up after SIGCONT stays
# small next to the true latencies, which run from 0 to the whole stall.
RATE, DURATION, STALL_AT, STALL = 50.0, 3.0, 0.3, 2.4

# A fast SSE source for the decode-capacity figure: answers every request with TOKENS events in the
# demo server's exact chunk format, written 16 events per chunk, as fast as the client reads.
SSE_SERVER = r"""
import asyncio, sys, uvloop
TOKENS = 256
EVENT = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"demo-model",'
         b'"choices":[{"index":0,"delta":{"content":" tok"},"logprobs":null,"finish_reason":null}],'
         b'"usage":null}\n\n')
TAIL = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"demo-model",'
        b'"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":%d,"total_tokens":%d}}\n\n'
        b'data: [DONE]\n\n' % (TOKENS, TOKENS + 4))
def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)
BODY = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(chunk(EVENT * 16) for _ in range(TOKENS // 16)) + chunk(TAIL) + b"0\r\n\r\n")
class P(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(rest) < length:
                return
            self.buf = rest[length:]
            self.t.write(BODY)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
uvloop.run(main())
"""

LOCUSTFILE = """
from locust import FastHttpUser, constant, task

class Get(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self):
        self.client.get({path!r})
"""


def pinned(argv: list[str], cpu: str) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if shutil.which("taskset") else argv


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def run_child(argv: list[str], timeout: float) -> tuple[str, float]:
    """Run argv; return its stdout and the CPU seconds (user + system) it used (wait4).

    Output goes to files, not pipes: a chatty child must never block on a full pipe while we wait.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(" ".join(argv))
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {proc.returncode}: {errors.strip()[-300:]}")
    return text, usage.ru_utime + usage.ru_stime


def wrk_round(url: str, seconds: int) -> tuple[float, float]:
    out, cpu = run_child(
        pinned(["wrk", "-t1", "-c50", f"-d{seconds}s", url], GEN_CPU), seconds + 30
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return rps, cpu / total


def ours_round(
    url: str, seconds: int, extra: list[str] | None = None
) -> tuple[float, float, float, float]:
    """(requests/s, CPU s/request in the run, CPU s/request whole process, share of its core)."""
    argv = [*GYRO, "bench", "run", url, "-c", "50", "--workers", "1", "-d", f"{seconds}s", "--json"]
    out, cpu_total = run_child(pinned(argv + (extra or []), GEN_CPU), seconds + 60)
    s = json.loads(out)["summary"]
    run_cpu = s["generator_cpu"] * s["duration_s"]
    if s["errors"]:
        raise RuntimeError(f"ours saw errors: {s}")
    return s["rps"], run_cpu / s["requests"], cpu_total / s["requests"], s["generator_cpu"]


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def locust_round(url: str, seconds: int, tmp: Path) -> tuple[float, float]:
    """Locust's requests/s and its whole-process CPU seconds per request (start-up included)."""
    locustfile = tmp / "locustfile.py"
    base, _, path = url.partition("://")[2].partition("/")
    locustfile.write_text(LOCUSTFILE.format(path="/" + path))
    prefix = tmp / "locust"
    argv = [
        str(LOCUST),
        "-f",
        str(locustfile),
        "--headless",
        "-u",
        "50",
        "-r",
        "50",
        "-t",
        f"{seconds}s",
        "--host",
        url[: url.index("://") + 3] + base,
        "--only-summary",
        "--csv",
        str(prefix),
        "--loglevel",
        "ERROR",
    ]
    _, cpu = run_child(pinned(argv, GEN_CPU), seconds + 60)
    stats = (tmp / "locust_stats.csv").read_text().splitlines()
    header = stats[0].split(",")
    for line in stats[1:]:
        cols = line.split(",")
        if cols[header.index("Name")] == "Aggregated":
            count = int(cols[header.index("Request Count")])
            failures = int(cols[header.index("Failure Count")])
            if failures:
                raise RuntimeError(f"locust saw {failures} failures")
            return float(cols[header.index("Requests/s")]), cpu / max(count, 1)
    raise RuntimeError("no Aggregated row in locust's stats")


def summary(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values):.3g} (range {min(values):.3g}..{max(values):.3g})"


def bench_wrk(url: str, rounds: int, seconds: int) -> tuple[float, float]:
    ratios, cpu_ratios, cpu_total_ratios = [], [], []
    for i in range(rounds):
        w_rps, w_cpu = wrk_round(url, seconds)
        o_rps, o_cpu, o_cpu_total, _ = ours_round(url, seconds)
        ratios.append(o_rps / w_rps)
        cpu_ratios.append(o_cpu / w_cpu)
        cpu_total_ratios.append(o_cpu_total / w_cpu)
        print(
            f"  round {i + 1}: wrk {w_rps:9.0f} req/s {w_cpu * 1e6:6.2f} us/req | ours "
            f"{o_rps:9.0f} req/s {o_cpu * 1e6:6.2f} us/req in run ({o_cpu_total * 1e6:6.2f} with "
            f"start-up) | {load()}",
            flush=True,
        )
    print("  " + summary("req/s ours/wrk", ratios))
    print("  " + summary("CPU/request ours/wrk (run)", cpu_ratios))
    print(
        "  "
        + summary("CPU/request ours/wrk (whole process incl. interpreter start)", cpu_total_ratios)
    )
    return statistics.median(ratios), statistics.median(cpu_ratios)


def bench_locust(url: str, rounds: int, seconds: int, tmp: Path, worker: int) -> LocustFigures:
    """Interleaved Locust and ours against ``url``; also how busy nginx's worker (pid
    ``worker``) was serving ours: its CPU per request times our requests/s, as a share of its
    core. Near 100% means nginx, not our generator, set our requests/s."""
    if LOCUST is None:
        print("  locust is not installed (pip install -e '.[bench]'); skipped")
        return LocustFigures(float("nan"), float("nan"), float("nan"), float("nan"))
    ratios, cpu_ratios, target_busy, ours_busy = [], [], [], []
    for i in range(rounds):
        l_rps, l_cpu = locust_round(url, seconds, tmp)
        before = proc_cpu(worker)
        o_rps, _, o_cpu, o_busy = ours_round(url, seconds)
        # nginx works only while requests come (not during our start-up): its CPU over the run.
        n_busy = (proc_cpu(worker) - before) / seconds
        ratios.append(o_rps / l_rps)
        cpu_ratios.append(l_cpu / o_cpu)
        target_busy.append(n_busy)
        ours_busy.append(o_busy)
        print(
            f"  round {i + 1}: locust {l_rps:8.0f} req/s {l_cpu * 1e6:6.1f} us/req | ours "
            f"{o_rps:8.0f} req/s {o_cpu * 1e6:6.1f} us/req (whole processes), ours at "
            f"{o_busy:4.0%} of its core, nginx at {n_busy:4.0%} of its core | {load()}",
            flush=True,
        )
    print("  " + summary("req/s ours/locust", ratios))
    print(
        "  " + summary("CPU/request locust/ours (whole processes, start-up included)", cpu_ratios)
    )
    print("  " + summary("nginx worker busy while ours ran (share of its core)", target_busy))
    print("  " + summary("ours busy (share of its core)", ours_busy))
    return LocustFigures(
        statistics.median(ratios),
        statistics.median(cpu_ratios),
        statistics.median(target_busy),
        statistics.median(ours_busy),
    )


class LocustFigures(NamedTuple):
    rps_ratio: float
    cpu_ratio: float  # Locust's CPU per request over ours
    target_busy: float  # nginx's share of its core while ours ran
    ours_busy: float

    def limit(self) -> str:
        """Which side set our requests/s in the Locust comparison."""
        if self.target_busy >= 0.85 and self.ours_busy < 0.85:
            return f"target-limited: nginx {self.target_busy:.0%} busy, ours {self.ours_busy:.0%}"
        if self.ours_busy >= 0.85:
            return f"generator-limited: ours {self.ours_busy:.0%} busy"
        return (
            f"neither saturated (nginx {self.target_busy:.0%}, ours {self.ours_busy:.0%}): "
            "machine contention"
        )


def llm_rounds(url: str, rounds: int, seconds: int, streams: int, tokens: int) -> list[float]:
    figures = []
    for i in range(rounds):
        llm = [
            *GYRO,
            "bench",
            "llm",
            url,
            "-c",
            str(streams),
            "-d",
            f"{seconds}s",
            "--output-tokens",
            str(tokens),
            "--input-tokens",
            "16",
            "--json",
        ]
        out, _ = run_child(pinned(llm, GEN_CPU), seconds + 60)
        s = json.loads(out)["summary"]
        cpu = s["generator_cpu"] * s["duration_s"]
        count = s["llm"]["output_tokens"]
        figures.append(count / cpu)
        print(
            f"  round {i + 1}: {count} tokens in {s['duration_s']:.1f} s "
            f"({s['llm']['output_tokens_per_s']:,.0f}/s), generator CPU {cpu:.2f} s "
            f"({s['generator_cpu']:.0%} of its core) -> {count / cpu:,.0f} tokens per core-second"
            f"; token gap p50 {s['llm']['itl_ms']['p50']:.2f} ms | {load()}",
            flush=True,
        )
    return figures


def bench_tokens(rounds: int, seconds: int) -> tuple[float, float]:
    """(demo server figure, fast-source figure), tokens decoded per generator core-second."""
    port = free_port()
    argv = [
        *GYRO,
        "demo",
        "serve",
        "--port",
        str(port),
        "--slots",
        "256",
        "--seed",
        "1",
        "--step-ms",
        "2",
        "--step-alpha",
        "0",
        "--prefill-ms-per-token",
        "0",
    ]
    server = subprocess.Popen(
        pinned(argv, SERVER_CPU), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        print(
            "  against the demo server (64 streams of 128 tokens, a decode step every 2 ms: a gap"
            " well above 2 ms means its core was shared):"
        )
        demo = llm_rounds(f"http://127.0.0.1:{port}", rounds, seconds, 64, 128)
    finally:
        server.terminate()
        server.wait()
    print("  " + summary("demo server: tokens per generator core-second", demo))
    port = free_port()
    server = subprocess.Popen(pinned([sys.executable, "-c", SSE_SERVER, str(port)], SERVER_CPU))
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        print("  against a fast SSE source in the demo's format (16 streams, 16 events per chunk):")
        fast = llm_rounds(f"http://127.0.0.1:{port}", rounds, seconds, 16, 256)
    finally:
        server.terminate()
        server.wait()
    print("  " + summary("fast source: tokens per generator core-second", fast))
    return statistics.median(demo), statistics.median(fast)


async def stall_round(
    tmp: Path, rate: float, duration: float, at: float, stall: float
) -> tuple[float, float]:
    with nginx(tmp) as (url, proc):
        worker = nginx_worker_pid(tmp, proc.pid)
        loop = asyncio.get_running_loop()
        marks: list[float] = []
        loop.call_later(
            at, lambda: (marks.append(time.monotonic()), os.kill(worker, signal.SIGSTOP))
        )
        loop.call_later(
            at + stall, lambda: (os.kill(worker, signal.SIGCONT), marks.append(time.monotonic()))
        )
        try:
            result = await run_load(LoadConfig(url=url + "/", rate=rate, duration=duration))
        finally:
            os.kill(worker, signal.SIGCONT)
    truth = true_percentiles(rate, duration, marks[1] - marks[0], service=0.001)
    return result.metric("p50") / truth["p50"], result.metric("p99") / truth["p99"]


def bench_stall(rounds: int) -> tuple[float, float]:
    p50s, p99s = [], []
    for i in range(rounds):
        with tempfile.TemporaryDirectory(prefix="gyro-stall-") as tmp:
            p50, p99 = asyncio.run(stall_round(Path(tmp), RATE, DURATION, STALL_AT, STALL))
        p50s.append(p50)
        p99s.append(p99)
        print(f"  round {i + 1}: measured/true p50 {p50:.3f}, p99 {p99:.3f} | {load()}", flush=True)
    print("  " + summary("p50 measured/true", p50s))
    print("  " + summary("p99 measured/true", p99s))
    worst = max(abs(x - 1) for x in p50s + p99s)
    return statistics.median(p50s), statistics.median(p99s), worst


def verdict(name: str, figure: str, goal: str, ok: bool) -> None:
    print(f"{name:<33} {figure:<66} goal {goal:<9} {'holds' if ok else 'MISSED'}")


def info(name: str, figure: str) -> None:
    """A figure printed next to a goal that is not itself the goal's measure."""
    print(f"{name:<33} {figure:<66} (info)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("wrk") is None or nginx_binary() is None:
        sys.exit("needs wrk and nginx (apt-get install wrk nginx-light)")
    print(f"{CORES} cores; generators on core {GEN_CPU}, servers on core {SERVER_CPU}; {load()}")
    with tempfile.TemporaryDirectory(prefix="gyro-loadgen-") as tmp_name:
        tmp = Path(tmp_name)
        with nginx(tmp / "nginx", cpu=int(SERVER_CPU)) as (base, proc):
            url = base + "/"
            worker = nginx_worker_pid(tmp / "nginx", proc.pid)
            print(
                f"\n[1] nginx static file: wrk -t1 -c50 vs gyro bench run -c 50 --workers 1, "
                f"{args.seconds}s rounds"
            )
            rps_ratio, cpu_ratio = bench_wrk(url, args.rounds, args.seconds)
            print(
                f"\n[2] Locust FastHttpUser, 1 process, 50 users vs ours, {args.seconds}s rounds; "
                "same nginx, the same 127 bytes from memory (/tiny: no file I/O per request)"
            )
            locust = bench_locust(base + "/tiny", args.rounds, args.seconds, tmp, worker)
        print("\n[3] streamed LLM tokens decoded per generator core")
        demo_tokens, tokens = bench_tokens(args.rounds, 3)
        print(
            f"\n[4] corrected latency: nginx frozen {STALL} s in a {DURATION} s open-model run "
            f"at {RATE:g} req/s"
        )
        p50, p99, worst = bench_stall(max(3, args.rounds // 2))
    print("\nresults (figure, goal, holds?)")
    verdict("req/s vs wrk -t1 -c50", f"{rps_ratio:.2f}x", ">= 0.90x", rps_ratio >= 0.9)
    verdict("CPU/request vs wrk", f"{cpu_ratio:.2f}x", "<= 1.30x", cpu_ratio <= 1.3)
    verdict(
        "req/s vs Locust FastHttpUser",
        f"{locust.rps_ratio:.1f}x ({locust.limit()})",
        ">= 8x",
        locust.rps_ratio >= 8,
    )
    info(
        "  CPU/request Locust/ours",
        f"{locust.cpu_ratio:.1f}x (what each generator costs per request; no target limit)",
    )
    verdict(
        "SSE tokens per core, demo server",
        f"{demo_tokens:,.0f}/s (64 streams, one event per token)",
        ">= 100k/s",
        demo_tokens >= 100_000,
    )
    info("  SSE decode capacity", f"{tokens:,.0f}/s (fast source, 16 events per chunk)")
    verdict(
        "stall p50, p99 measured/true",
        f"{p50:.3f}, {p99:.3f} (worst round {worst:.1%} off)",
        "+-10%",
        worst <= 0.10,
    )


if __name__ == "__main__":
    main()
