"""`gyro demo serve` and `gyro demo fault` as a user runs them: real processes, real sockets."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from gyroscope.demo import CRASH_EXIT_CODE
from gyroscope.testing import free_port, wait_for_port


@pytest.fixture
def serve(
    gyro_cmd: list[str], clean_env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = subprocess.Popen(
        [*gyro_cmd, "demo", "serve", "--port", str(port), "--seed", "3", "--fault", "latency_ms=1"],
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def gyro(gyro_cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gyro_cmd, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_fault_clear_and_sigterm(
    serve: tuple[str, subprocess.Popen[str]], gyro_cmd: list[str], clean_env: dict[str, str]
) -> None:
    url, proc = serve
    shown = gyro(gyro_cmd, clean_env, "demo", "fault", url, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["latency_ms"] == 1  # from --fault
    result = gyro(gyro_cmd, clean_env, "demo", "fault", url, "error_rate=1", "error_status=503")
    assert result.returncode == 0, result.stderr
    assert "error_rate" in result.stdout
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/v1/completions", json={"prompt": "x"}).status_code == 503
        assert gyro(gyro_cmd, clean_env, "demo", "fault", url, "--clear").returncode == 0
        answer = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
        assert answer.status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    _, err = proc.communicate(timeout=5)
    assert url in err and "curl" in err  # it told the user where it listens and what to try
    assert "Traceback" not in err


def test_crash_fault_ends_the_process(
    serve: tuple[str, subprocess.Popen[str]], gyro_cmd: list[str], clean_env: dict[str, str]
) -> None:
    url, proc = serve
    result = gyro(gyro_cmd, clean_env, "demo", "fault", url, "crash=true")
    assert result.returncode != 0  # the server died before it could answer
    assert proc.wait(timeout=15) == CRASH_EXIT_CODE
    assert "crash fault injected" in proc.communicate(timeout=5)[1]
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)


def test_bad_fault_flag_is_one_line(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    for flag, expected in [
        ("hang_forever=1", "unknown fault 'hang_forever'"),
        ("nonsense", "key=value"),
    ]:
        result = gyro(gyro_cmd, clean_env, "demo", "serve", "--port", "0", "--fault", flag)
        assert result.returncode == 2
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_port_in_use_is_one_line(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = gyro(gyro_cmd, clean_env, "demo", "serve", "--port", str(port))
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr and "address already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_exposed_without_token_and_unreachable_target(
    gyro_cmd: list[str], clean_env: dict[str, str]
) -> None:
    exposed = gyro(gyro_cmd, clean_env, "demo", "serve", "--host", "0.0.0.0", "--port", "0")
    assert exposed.returncode == 2 and "--admin-token" in exposed.stderr
    port = free_port()
    start = time.monotonic()
    gone = gyro(gyro_cmd, clean_env, "demo", "fault", f"http://127.0.0.1:{port}", "hang=true")
    assert gone.returncode != 0 and "cannot reach" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1 and time.monotonic() - start < 30
