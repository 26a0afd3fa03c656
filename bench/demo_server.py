"""How many short requests one demo model server process answers, next to nginx on the same box.

Anchor: nginx (Debian nginx-light), one worker, answering a small fixed JSON body. Ours: the demo
server as users start it (`gyro demo serve`, default simulation), and the same with the simulated
GPU time made free (`--step-ms 0.001 --prefill-ms-per-token 0`), which shows the server's own
overhead. Load: `wrk -t1 -c50 -d5s` POSTing a non-streaming `max_tokens: 1` completion, in
interleaved rounds. CPU per request comes from each server's own accounting (/proc/<pid>/stat).

    python bench/demo_server.py [--rounds 5] [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from gyroscope.testing import free_port, wait_for_port

BODY = '{"model":"demo-model","prompt":"hello world","max_tokens":1}'
GOAL_RPS = 2000.0

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/json;
      return 200 '{{"id":"cmpl-1","object":"text_completion","choices":[{{"text":" ok"}}]}}';
    }}
  }}
}}
"""

WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


class Server:
    def __init__(self, name: str, argv: list[str], port: int, path: str) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}{path}"
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        wait_for_port("127.0.0.1", port, timeout=30)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children (nginx's worker)."""
        proc = psutil.Process(self.proc.pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(child.cpu_times()[:2])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def run_wrk(url: str, script: Path, seconds: int) -> tuple[float, int, int]:
    out = subprocess.run(
        ["wrk", "-t1", "-c50", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    failed = int(bad.group(1)) if bad else 0
    if errors:
        print(f"    wrk: {errors.group(0)}")
    return rps, total, failed


def fmt_range(values: list[float], spec: str = ",.0f") -> str:
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"demo_server bench: {tool} is missing; run scripts/services.sh install")
            return 1
    tmp = Path(tempfile.mkdtemp(prefix="gyro-bench-demo-"))
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    servers: list[Server] = []
    try:
        port = free_port()
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        servers.append(
            Server("nginx", [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")], port, "/")
        )
        gyro = [sys.executable, "-m", "gyroscope.cli", "demo", "serve", "--seed", "1"]
        port = free_port()
        servers.append(Server("demo", [*gyro, "--port", str(port)], port, "/v1/completions"))
        port = free_port()
        free_model = ["--step-ms", "0.001", "--prefill-ms-per-token", "0", "--port", str(port)]
        servers.append(Server("demo-free", [*gyro, *free_model], port, "/v1/completions"))
        return measure(servers, script, args.rounds, args.seconds)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def measure(servers: list[Server], script: Path, rounds: int, seconds: int) -> int:
    rps: dict[str, list[float]] = {s.name: [] for s in servers}
    cpu_us: dict[str, list[float]] = {s.name: [] for s in servers}
    failures = 0
    print(f"load average at start: {os.getloadavg()}  (2 cores shared; ratios are what count)")
    for server in servers:  # warm up: first connections, imports, caches
        run_wrk(server.url, script, 1)
    for round_no in range(1, rounds + 1):
        for server in servers:
            before = server.cpu_seconds()
            rate, total, failed = run_wrk(server.url, script, seconds)
            used = server.cpu_seconds() - before
            failures += failed
            rps[server.name].append(rate)
            cpu_us[server.name].append(used / max(total, 1) * 1e6)
            print(
                f"round {round_no} {server.name:9s} {rate:10,.0f} req/s  "
                f"{cpu_us[server.name][-1]:6.1f} us CPU/req  non-2xx {failed}  "
                f"load {os.getloadavg()[0]:.2f}"
            )
    print()
    for name, rates in rps.items():
        print(f"{name:9s} req/s {fmt_range(rates)}  CPU/req us {fmt_range(cpu_us[name], '.1f')}")
    ratios = [d / n for d, n in zip(rps["demo"], rps["nginx"], strict=True)]
    free_ratios = [d / n for d, n in zip(rps["demo-free"], rps["nginx"], strict=True)]
    cpu_ratios = [d / n for d, n in zip(cpu_us["demo"], cpu_us["nginx"], strict=True)]
    print(f"demo/nginx req/s ratio: {fmt_range(ratios, '.2f')}")
    print(f"demo (free model)/nginx req/s ratio: {fmt_range(free_ratios, '.2f')}")
    print(f"demo/nginx CPU per request ratio: {fmt_range(cpu_ratios, '.1f')}")
    print(f"load average at end: {os.getloadavg()}")
    print()
    demo = statistics.median(rps["demo"])
    holds = demo >= GOAL_RPS and failures == 0
    print(
        f"demo server: {demo:,.0f} req/s ({statistics.median(ratios):.2f}x nginx), "
        f"{statistics.median(cpu_us['demo']):.0f} us CPU/request "
        f"({statistics.median(cpu_ratios):.1f}x nginx) — goal: >= {GOAL_RPS:,.0f} req/s with no "
        f"errors, so it is never a gateway benchmark's bottleneck — {'holds' if holds else 'FAILS'}"
    )
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
