"""The gateway against HAProxy 2.6 and nginx as reverse proxies, in front of the same three upstreams.

Upstreams: one nginx process (1 worker) answering a small fixed JSON body on three ports.
Proxies, each one process / one thread, keep-alive to the upstreams, round robin:
  gyroscope  `gyro gateway serve` (routing, metrics, timeouts and active health checks on)
  haproxy    Debian HAProxy 2.6, nbthread 1, balance roundrobin, http-reuse always
  nginx      Debian nginx, 1 worker, proxy_pass to an upstream block with keepalive
Load: `wrk -t1 -c50` GET, interleaved rounds (gyroscope, haproxy, nginx, ...). CPU per request is
read from each proxy's own accounting. Then: the gateway's new upstream connections during the
measured rounds (steady state), and the delay the gateway adds to each SSE event against a direct
connection (the upstream stamps each event with CLOCK_MONOTONIC, shared by every process here).

    python bench/gateway.py [--rounds 9] [--seconds 5] [--floor]

Nine rounds by default: on this shared 2-core machine a single round's ratio moves by 20-30%,
and the median of five still moved by about 7% from one run to the next.

``--floor`` adds two floors to the rounds: ``bare`` pipes bytes with uvloop (no HTTP at all) and
``min-http`` finds message ends with httptools and forwards bytes as received (no header
rewriting, metrics or timeouts): what any Python proxy on uvloop must spend per request here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

from gyroscope.testing import free_port, wait_for_port

ORIGIN_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/origin.pid;
error_log {tmp}/origin-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  {servers}
}}
"""
ORIGIN_SERVER = """server {{ listen 127.0.0.1:{port};
    location / {{ default_type application/json;
      return 200 '{{"object":"list","data":[{{"id":"demo-model","object":"model"}}]}}'; }} }}"""

NGINX_PROXY_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/proxy.pid;
error_log {tmp}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/pbody; proxy_temp_path {tmp}/pproxy;
  fastcgi_temp_path {tmp}/pfastcgi; uwsgi_temp_path {tmp}/puwsgi; scgi_temp_path {tmp}/pscgi;
  keepalive_requests 100000000;
  upstream replicas {{
    {servers}
    keepalive 128;
    keepalive_requests 100000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 3s;
      proxy_read_timeout 60s;
    }}
  }}
}}
"""

HAPROXY_CONF = """
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  default_backend replicas
backend replicas
  balance roundrobin
{servers}
"""

SSE_UPSTREAM = r"""
import asyncio, sys, time
EVENTS, GAP = int(sys.argv[2]), float(sys.argv[3])
async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            for _ in range(EVENTS):
                await asyncio.sleep(GAP)
                event = b"data: %.9f\n\n" % time.monotonic()
                writer.write(b"%x\r\n%b\r\n" % (len(event), event))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


# The floor for any Python proxy here: uvloop moving bytes between a client connection and one
# upstream connection (chosen round robin per client connection), no HTTP parsing at all.
BARE_PROXY = r"""
import asyncio, itertools, socket, sys, uvloop
PORT, UPS = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
turn = itertools.cycle(UPS)
class Pipe(asyncio.Protocol):
    def __init__(self, peer=None):
        self.peer, self.transport, self.pending = peer, None, []
    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.peer is None:
            asyncio.get_running_loop().create_task(self.open())
        else:
            self.peer.peer = self
            for data in self.peer.pending:
                transport.write(data)
    async def open(self):
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: Pipe(self), "127.0.0.1", next(turn))
    def data_received(self, data):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.pending.append(data)
    def connection_lost(self, exc):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()
async def main():
    server = await asyncio.get_running_loop().create_server(Pipe, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()
uvloop.run(main())
"""

# The floor for an HTTP-aware Python proxy: httptools finds where each request and response ends
# (one callback per message, no per-header work), bytes are forwarded as received over a LIFO
# keep-alive pool per upstream, round robin per request. No header rewriting, metrics or timeouts.
MIN_HTTP_PROXY = r"""
import asyncio, itertools, socket, sys, httptools, uvloop
PORT, UPS = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
pools = {p: [] for p in UPS}
turn = itertools.cycle(UPS)
def nodelay(t):
    t.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
class Up(asyncio.Protocol):
    def __init__(self, port):
        self.port, self.client, self.parser = port, None, httptools.HttpResponseParser(self)
    def connection_made(self, t):
        self.t = t
        nodelay(t)
    def data_received(self, data):
        self.client.t.write(data)
        self.parser.feed_data(data)
    def on_message_complete(self):
        self.client = None
        pools[self.port].append(self)
class Client(asyncio.Protocol):
    def __init__(self):
        self.parser, self.buf = httptools.HttpRequestParser(self), []
    def connection_made(self, t):
        self.t = t
        nodelay(t)
    def data_received(self, data):
        self.buf.append(data)
        self.parser.feed_data(data)
    def on_message_complete(self):
        data, self.buf = b"".join(self.buf), []
        port = next(turn)
        if pools[port]:
            up = pools[port].pop()
            up.client = self
            up.t.write(data)
        else:
            asyncio.get_running_loop().create_task(self.connect(port, data))
    async def connect(self, port, data):
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: Up(port), "127.0.0.1", port)
        up.client = self
        up.t.write(data)
async def main():
    server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()
uvloop.run(main())
"""


class Proc:
    """A process we started, in its own session so the whole group is stopped at the end."""

    def __init__(self, name: str, argv: list[str], port: int) -> None:
        self.name = name
        self.port = port
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            wait_for_port("127.0.0.1", port, timeout=30)
        except TimeoutError:
            self.stop()
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise SystemExit(f"{name} did not start: {err[-500:]}") from None

    def cpu_seconds(self) -> float:
        proc = psutil.Process(self.proc.pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(child.cpu_times()[:2])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def gateway_build() -> str:
    """Which build the gateway processes run (they import the same sources as this one)."""
    code = "from gyroscope.gateway._native import BUILD; print(BUILD)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def wrk(
    port: int, seconds: float, connections: int, during: Callable[[], None] | None = None
) -> tuple[float, float, int]:
    """requests/s, p99 latency (ms), requests, from ``wrk --latency``; ``during`` runs meanwhile."""
    proc = subprocess.Popen(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            f"http://127.0.0.1:{port}/v1/models",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    if during is not None:
        during()
    out, _ = proc.communicate(timeout=seconds + 30)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = _ms(re.search(r"99%\s+([\d.]+)(us|ms|s)", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        print(f"  warning: wrk saw errors on port {port}: {out.splitlines()[-4:]}")
    return rps, p99, total


def _ms(match: re.Match[str] | None) -> float:
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def opened_connections(admin_port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).read()
    return sum(
        int(float(m))
        for m in re.findall(
            rb"gyro_gateway_upstream_connections_opened_total\{[^}]*\} ([\d.e+]+)", text
        )
    )


async def sse_delays(port: int, streams: int) -> list[float]:
    """Per-event delay (ms) from the upstream's stamp to arrival here."""
    delays: list[float] = []
    for _ in range(streams):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /sse HTTP/1.1\r\nhost: bench\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        while True:
            size_line = await reader.readline()
            size = int(size_line.strip(), 16)
            if size == 0:
                await reader.readline()
                break
            chunk = await reader.readexactly(size + 2)
            now = time.monotonic()
            for line in chunk.split(b"\n"):
                if line.startswith(b"data: "):
                    delays.append((now - float(line[6:])) * 1000)
        writer.close()
    return delays


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run a bare uvloop pass-through proxy (no HTTP parsing): the Python floor",
    )
    args = parser.parse_args()
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="gyro-bench-gw-") as tmp_dir:
        tmp = Path(tmp_dir)
        try:
            run(args, tmp, procs)
        finally:
            for proc in reversed(procs):
                proc.stop()


def run(args: argparse.Namespace, tmp: Path, procs: list[Proc]) -> None:
    ups = [free_port() for _ in range(3)]
    (tmp / "origin.conf").write_text(
        ORIGIN_CONF.format(tmp=tmp, servers="\n  ".join(ORIGIN_SERVER.format(port=p) for p in ups))
    )
    procs.append(Proc("origin", ["nginx", "-c", str(tmp / "origin.conf"), "-p", str(tmp)], ups[0]))
    for p in ups[1:]:
        wait_for_port("127.0.0.1", p)

    gw_port, admin_port = free_port(), free_port()
    upstream_args = [a for i, p in enumerate(ups) for a in ("--upstream", f"u{i}=127.0.0.1:{p}")]
    # Idle upstream connections are kept 60 s (the origin keeps them 300 s; the default of 4 s
    # suits uvicorn-based model servers, which close after 5 s), like HAProxy's and nginx's pools.
    (tmp / "gateway.yaml").write_text(
        "gateway:\n  timeouts: {upstream_keepalive: 60}\n  routes: [{policy: round_robin}]\n"
    )
    gyro = Proc(
        "gyroscope",
        [
            sys.executable,
            "-m",
            "gyroscope.cli",
            "gateway",
            "serve",
            "-c",
            str(tmp / "gateway.yaml"),
            "--listen",
            f"127.0.0.1:{gw_port}",
            "--admin",
            f"127.0.0.1:{admin_port}",
            *upstream_args,
        ],
        gw_port,
    )
    procs.append(gyro)
    ha_port = free_port()
    (tmp / "haproxy.cfg").write_text(
        HAPROXY_CONF.format(
            port=ha_port,
            servers="\n".join(f"  server u{i} 127.0.0.1:{p}" for i, p in enumerate(ups)),
        )
    )
    haproxy = Proc("haproxy", ["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")], ha_port)
    procs.append(haproxy)
    ng_port = free_port()
    (tmp / "proxy.conf").write_text(
        NGINX_PROXY_CONF.format(
            tmp=tmp, port=ng_port, servers="\n    ".join(f"server 127.0.0.1:{p};" for p in ups)
        )
    )
    nginx = Proc("nginx", ["nginx", "-c", str(tmp / "proxy.conf"), "-p", str(tmp)], ng_port)
    procs.append(nginx)
    targets = [gyro, haproxy, nginx]
    if args.floor:
        for name, script in (("bare", BARE_PROXY), ("min-http", MIN_HTTP_PROXY)):
            port = free_port()
            floor = Proc(name, [sys.executable, "-c", script, str(port), *map(str, ups)], port)
            procs.append(floor)
            targets.append(floor)

    print(
        f"gateway benchmark: wrk -t1 -c{args.connections} -d{args.seconds}s GET, "
        f"{args.rounds} interleaved rounds, 3 nginx upstreams, {os.cpu_count()} CPUs, "
        f"gateway build: {gateway_build()}"
    )
    for t in targets:  # warm up: connections, caches, the gateway's pools
        wrk(t.port, 2, args.connections)
    # Steady state: from 1 s into each gateway round until 0.5 s before its end. (At the end of a
    # run wrk closes its connections with requests in flight; the gateway then closes those
    # requests' upstream connections on purpose, to cancel their work, and reopens some later.)
    steady_new = 0

    def count_steady() -> None:
        nonlocal steady_new
        time.sleep(1.0)
        before = opened_connections(admin_port)
        time.sleep(max(args.seconds - 1.5, 0.5))
        steady_new += opened_connections(admin_port) - before

    results: dict[str, list[tuple[float, float, float]]] = {t.name: [] for t in targets}
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        line = [f"round {r + 1}: load {load:.2f}"]
        for t in targets:
            cpu0 = t.cpu_seconds()
            during = count_steady if t is gyro else None
            rps, lat99, total = wrk(t.port, args.seconds, args.connections, during)
            cpu_us = (t.cpu_seconds() - cpu0) / max(total, 1) * 1e6
            results[t.name].append((rps, lat99, cpu_us))
            line.append(f"{t.name} {rps:,.0f} req/s p99 {lat99:.2f} ms {cpu_us:.1f} us/req")
        print("  " + " | ".join(line))
    new_conns = steady_new

    sse_port = free_port()
    procs.append(
        Proc("sse", [sys.executable, "-c", SSE_UPSTREAM, str(sse_port), "40", "0.01"], sse_port)
    )
    sse_gw_port, sse_admin = free_port(), free_port()
    procs.append(
        Proc(
            "gyroscope-sse",
            [
                sys.executable,
                "-m",
                "gyroscope.cli",
                "gateway",
                "serve",
                "--listen",
                f"127.0.0.1:{sse_gw_port}",
                "--admin",
                f"127.0.0.1:{sse_admin}",
                "--upstream",
                f"s=127.0.0.1:{sse_port}",
            ],
            sse_gw_port,
        )
    )
    direct, via = [], []
    for _ in range(3):  # interleaved: direct, through the gateway
        direct += asyncio.run(sse_delays(sse_port, 5))
        via += asyncio.run(sse_delays(sse_gw_port, 5))
    report(results, new_conns, direct, via)


def report(
    results: dict[str, list[tuple[float, float, float]]],
    new_conns: int,
    direct: list[float],
    via: list[float],
) -> None:
    def ratios(metric: int, other: str) -> list[float]:
        return [
            g[metric] / o[metric] for g, o in zip(results["gyroscope"], results[other], strict=True)
        ]

    def summary(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}x (range {min(values):.2f}-{max(values):.2f})"

    med = {
        name: [statistics.median(v[i] for v in rows) for i in range(3)]
        for name, rows in results.items()
    }
    for name, (rps, lat, cpu) in med.items():
        print(f"  {name:<10} median {rps:,.0f} req/s, p99 {lat:.2f} ms, CPU {cpu:.1f} us/request")
    for name in ("bare", "min-http"):
        if name in results:
            rel = [f[2] / h[2] for f, h in zip(results[name], results["haproxy"], strict=True)]
            print(f"  {name} (a floor, not a gateway) CPU per request: {summary(rel)} HAProxy's")
    rps_ha, rps_ng = ratios(0, "haproxy"), ratios(0, "nginx")
    p99_ha = ratios(1, "haproxy")
    cpu_ha, cpu_ng = ratios(2, "haproxy"), ratios(2, "nginx")
    added = p99(via) - p99(direct)
    print(f"  CPU per request: {summary(cpu_ha)} HAProxy's, {summary(cpu_ng)} nginx's")
    print(
        f"  SSE per-event delay p99: direct {p99(direct):.2f} ms, via gateway {p99(via):.2f} ms "
        f"({len(via)} events)"
    )
    print()
    lines = [
        ("requests/s vs HAProxy 2.6", summary(rps_ha), ">= 0.9x", statistics.median(rps_ha) >= 0.9),
        ("requests/s vs nginx proxy", summary(rps_ng), ">= 1.0x", statistics.median(rps_ng) >= 1.0),
        ("p99 latency vs HAProxy", summary(p99_ha), "<= 1.3x", statistics.median(p99_ha) <= 1.3),
        ("SSE added delay per event p99", f"{added:.2f} ms", "<= 5 ms", added <= 5.0),
        ("new upstream connections, steady state", str(new_conns), "0", new_conns == 0),
    ]
    for what, figure, goal, holds in lines:
        print(f"{what}: {figure} (goal {goal}) {'HOLDS' if holds else 'does NOT hold'}")


if __name__ == "__main__":
    main()
