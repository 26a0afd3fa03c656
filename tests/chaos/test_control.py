"""The HTTP control API and the CLI client, against a real `gyro chaos proxy` subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gyroscope.chaos import ControlClient
from gyroscope.errors import ProxyError, TargetError


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


@pytest.fixture(scope="module")
def echo_address() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def proxy_proc(echo_address: str) -> Iterator[dict[str, Any]]:
    """`gyro chaos proxy` on free ports; yields its ready line (listen, control, ...)."""
    from tests.conftest import GYRO

    proc = subprocess.Popen(
        [
            *GYRO,
            "chaos",
            "proxy",
            "--upstream",
            echo_address,
            "--control",
            "127.0.0.1:0",
            "--latency-ms",
            "50",
            "--name",
            "sub",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once both listeners are up
        assert line, proc.stderr.read() if proc.stderr else "no output"
        info = json.loads(line)
        info["proc"] = proc
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GYRO_")}


def gyro(*args: str) -> subprocess.CompletedProcess[str]:
    from tests.conftest import GYRO

    return subprocess.run(
        [*GYRO, "chaos", *args], capture_output=True, text=True, timeout=60, env=clean_env()
    )


def rtt(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        return time.monotonic() - start


def test_ready_line_and_initial_faults(proxy_proc: dict[str, Any]) -> None:
    assert proxy_proc["faults"] == {"latency_ms": 50}
    assert proxy_proc["control"].startswith("http://127.0.0.1:")
    port = int(proxy_proc["listen"].rsplit(":", 1)[1])
    assert rtt(port) >= 0.1


def test_http_api(proxy_proc: dict[str, Any]) -> None:
    url = proxy_proc["control"]
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
        assert http.get("/faults").json()["latency_ms"] == 50
        answer = http.post("/faults", json={"jitter_ms": 10, "direction": "upstream"}).json()
        assert answer["latency_ms"] == 50 and answer["jitter_ms"] == 10  # merged
        bad = http.post("/faults", json={"latency_ms": "fast"})
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == (
            "faults: latency_ms: Input should be a valid integer, "
            "unable to parse string as an integer, got 'fast'"
        )
        unknown = http.post("/faults", json={"lag": 1})
        assert (
            unknown.status_code == 400
            and "unknown field 'lag'" in unknown.json()["error"]["message"]
        )
        assert http.post("/faults", content=b"{not json").status_code == 400
        assert http.post("/faults", json=[1]).status_code == 400
        assert http.get("/faults").json()["jitter_ms"] == 10  # bad input changed nothing
        assert http.get("/nope").status_code == 404
        assert http.put("/faults").status_code == 405
        stats = http.get("/stats").json()
        assert stats["connections_accepted"] >= 1
        metrics = http.get("/metrics").text
        assert 'gyro_chaos_connections_accepted_total{proxy="sub"}' in metrics
        assert 'gyro_chaos_fault{fault="jitter_ms",proxy="sub"} 10.0' in metrics
        assert http.delete("/faults").json()["latency_ms"] == 0
        assert http.post("/faults", json={"latency_ms": 50}).status_code == 200


def test_cli_client_set_show_cut_clear(proxy_proc: dict[str, Any]) -> None:
    url = proxy_proc["control"]
    port = int(proxy_proc["listen"].rsplit(":", 1)[1])
    result = gyro("set", url, "latency_ms=300", "direction=downstream", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["latency_ms"] == 300
    assert rtt(port) >= 0.3
    shown = gyro("show", url)
    assert shown.stdout.strip() == "faults: latency_ms=300 direction=downstream"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        cut = gyro("cut", url, "--json")
        assert json.loads(cut.stdout)["cut"] >= 1
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    cleared = gyro("clear", url)
    assert cleared.stdout.strip() == "faults: none"
    assert rtt(port) < 0.3
    stats = gyro("stats", url, "--json")
    assert json.loads(stats.stdout)["connections_cut"] >= 1


def test_cli_client_bad_input_is_one_line(proxy_proc: dict[str, Any]) -> None:
    url = proxy_proc["control"]
    for args, expected in [
        (
            ("set", url, "latency_ms=-1"),
            "gyro: error: 400: faults: latency_ms: Input should be greater than or equal to 0, got -1",
        ),
        (("set", url, "lag=1"), "gyro: error: 400: faults: unknown field 'lag'"),
        (("set", url, "latency"), "gyro: error: expected key=value, got 'latency'"),
        (("set", "127.0.0.1:1", "latency_ms=1"), "gyro: error: http://127.0.0.1:1: cannot reach"),
    ]:
        result = gyro(*args)
        assert result.returncode == 1
        assert result.stderr.startswith(expected), result.stderr
        assert result.stderr.count("\n") == 1


def test_python_client(proxy_proc: dict[str, Any]) -> None:
    client = ControlClient(proxy_proc["control"])
    assert client.set(blackhole=True)["blackhole"] is True
    port = int(proxy_proc["listen"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(b"lost")
        with pytest.raises(TimeoutError):
            sock.recv(1)
    assert client.clear()["blackhole"] is False
    with pytest.raises(ProxyError, match=r"^400: faults: direction"):
        client.set(direction="sideways")
    with pytest.raises(TargetError):
        ControlClient("127.0.0.1:1").faults()


def test_bad_proxy_options_are_one_line() -> None:
    result = gyro("proxy", "--upstream", "nowhere")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "gyro: error: proxy: upstream: expected host:port, got 'nowhere'"
    )
    result = gyro("proxy", "--upstream", "127.0.0.1:1", "--control", "0.0.0.0:0")
    assert "needs a token" in result.stderr and result.returncode == 2


def test_port_in_use(proxy_proc: dict[str, Any]) -> None:
    result = gyro("proxy", "--upstream", "127.0.0.1:1", "--listen", proxy_proc["listen"])
    assert result.returncode == 1
    assert "address already in use" in result.stderr and result.stderr.count("\n") == 1


def test_sigterm_stops_the_proxy(echo_address: str) -> None:
    from tests.conftest import GYRO

    proc = subprocess.Popen(
        [*GYRO, "chaos", "proxy", "--upstream", echo_address, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    port = int(json.loads(proc.stdout.readline())["listen"].rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    sock.close()
    proc.stdout.close()
    proc.stderr.close()
