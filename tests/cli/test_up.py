"""`gyro up` as a user runs it: a real process, real signals, real ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

CONFIG = """
platform:
  listen: 127.0.0.1:0
  shutdown_grace: 3
demo:
  replicas:
    - name: one
      listen: 127.0.0.1:0
    - name: two
      listen: 127.0.0.1:0
"""


@contextmanager
def gyro_up(
    gyro_cmd: list[str], env: dict[str, str], *args: str
) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*gyro_cmd, "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 30) -> str:
    """Read stdout lines until one contains `marker` (the announcement ends with Ctrl-C)."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"never saw {marker!r}; output so far:\n{seen}")
        seen += proc.stdout.readline()
    return seen


def api_url(announcement: str) -> str:
    match = re.search(r"platform API\s+(http://\S+)/healthz", announcement)
    assert match, announcement
    return match.group(1)


def test_up_serves_reloads_and_stops_cleanly(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "gyroscope.yaml"
    path.write_text(CONFIG)
    with gyro_up(gyro_cmd, clean_env, "-c", str(path)) as proc:
        text = read_until(proc, "Ctrl-C stops everything")
        base = api_url(text)
        replica = re.search(r"demo/one\s+(http://\S+)", text)
        assert replica, text
        health = httpx.get(f"{base}/healthz", timeout=10).json()
        assert {s["name"] for s in health["services"]} == {"demo/one", "demo/two"}
        reply = httpx.post(
            f"{replica.group(1)}/v1/chat/completions",
            json={"model": "demo-model", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert reply.status_code == 200

        # A bad config on SIGHUP is rejected and logged; the old services keep serving.
        path.write_text(CONFIG.replace("name: two", "name: two\n      slots: -1"))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while httpx.get(f"{base}/metrics", timeout=10).text.find('result="rejected"} 1.0') < 0:
            assert time.monotonic() < deadline, "the bad reload was never counted"
            time.sleep(0.1)
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200

        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        _, stderr = proc.communicate(timeout=10)
    assert "reload rejected" in stderr and "demo.replicas[1].slots" in stderr
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_sigint_stops_within_five_seconds(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "gyroscope.yaml"
    path.write_text(CONFIG)
    with gyro_up(gyro_cmd, clean_env, "-c", str(path)) as proc:
        read_until(proc, "Ctrl-C stops everything")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
        assert proc.returncode == 0


def test_second_daemon_on_the_same_data_dir_is_refused(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "gyroscope.yaml"
    path.write_text(CONFIG)
    with gyro_up(gyro_cmd, clean_env, "-c", str(path)) as first:
        read_until(first, "Ctrl-C stops everything")
        second = subprocess.run(
            [*gyro_cmd, "up", "-c", str(path)],
            capture_output=True,
            text=True,
            env=clean_env,
            timeout=60,
        )
        assert second.returncode != 0
        assert "already in use by another gyroscope daemon" in second.stderr
        assert second.stderr.count("\n") == 1
        assert first.poll() is None


def test_port_in_use_is_one_line(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "gyroscope.yaml"
        path.write_text(
            CONFIG.replace(
                "listen: 127.0.0.1:0\n    - name: two", f"listen: 127.0.0.1:{port}\n    - name: two"
            )
        )
        result = subprocess.run(
            [*gyro_cmd, "up", "-c", str(path)],
            capture_output=True,
            text=True,
            env=clean_env,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_the_whole_platform(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    """`gyro up --demo`: replicas behind the gateway, a monitor that fires when one dies, and logs."""
    from gyroscope.platform._demo import DEMO_PORTS

    ports = [p for k, p in DEMO_PORTS.items() if k != "replicas"] + [8001, 8002, 8003]
    for port in ports:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is taken; `gyro up --demo` needs {sorted(ports)}")
    with gyro_up(gyro_cmd, clean_env, "--demo") as proc:
        text = read_until(proc, "Ctrl-C stops everything")
        assert "Try:" in text and "curl" in text
        for port in (8001, 8002, 8003):
            assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 200
        chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        for _ in range(6):
            reply = httpx.post("http://127.0.0.1:8080/v1/chat/completions", json=chat, timeout=10)
            assert reply.status_code == 200
            assert reply.json()["usage"]["completion_tokens"] == 4

        # A replica dies: the monitor's rule fires, and the alert event reaches the log store.
        down = httpx.post(
            "http://127.0.0.1:8003/admin/faults",
            json={"down": True, "clear_after_s": 60},
            timeout=10,
        )
        assert down.status_code == 200
        deadline = time.monotonic() + 40
        while True:
            alerts = httpx.get("http://127.0.0.1:9464/api/v2/alerts", timeout=10).json()
            names = {a["labels"].get("alertname") for a in alerts}
            if "DemoReplicaDown" in names:
                break
            assert time.monotonic() < deadline, f"DemoReplicaDown never fired: {alerts}"
            time.sleep(0.5)
        assert httpx.post(
            "http://127.0.0.1:8080/v1/chat/completions", json=chat, timeout=10
        ).is_success

        deadline = time.monotonic() + 20
        while True:
            found = httpx.get(
                "http://127.0.0.1:3100/loki/api/v1/query_range",
                params={"query": '{job="gyro-monitor"} |= "DemoReplicaDown"', "limit": 10},
                timeout=10,
            ).json()
            if found["data"]["result"]:
                break
            assert time.monotonic() < deadline, "the alert event never reached the log store"
            time.sleep(0.5)

        # The gateway's access log (the platform's own logging) is kept there too.
        access = httpx.get(
            "http://127.0.0.1:3100/loki/api/v1/query_range",
            params={"query": '{job="gyroscope", logger="gateway"} |= "/v1/chat/completions"'},
            timeout=10,
        ).json()
        assert access["data"]["result"], "the gateway's access log is not in the log store"

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    assert os.path.isdir(clean_env["GYRO_DATA_DIR"])


def test_a_second_ctrl_c_exits_without_waiting_for_the_drain(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "gyroscope.yaml"
    path.write_text(CONFIG.replace("shutdown_grace: 3", "shutdown_grace: 30"))
    with gyro_up(gyro_cmd, clean_env, "-c", str(path)) as proc:
        text = read_until(proc, "Ctrl-C stops everything")
        replica = re.search(r"demo/one\s+(http://\S+)", text)
        assert replica, text
        httpx.post(f"{replica.group(1)}/admin/faults", json={"hang": True}, timeout=10)
        # A request that never ends keeps the graceful drain waiting for up to 30 s...
        with socket.create_connection(
            ("127.0.0.1", int(replica.group(1).rsplit(":", 1)[1]))
        ) as hung:
            body = b'{"prompt": "hi", "max_tokens": 2}'
            hung.sendall(
                b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            time.sleep(1.0)
            assert proc.poll() is None, "the first Ctrl-C should still be draining"
            # ...and a second Ctrl-C ends it at once.
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=5) == 130, proc.communicate(timeout=5)[1][-2000:]
