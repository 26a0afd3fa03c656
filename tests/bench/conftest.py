"""Fixtures of the bench tests: nginx and the demo model server, each in its own process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from gyroscope.testing import free_port, wait_for_port
from tests.bench.servers import nginx


@pytest.fixture(scope="module")
def nginx_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with nginx(tmp_path_factory.mktemp("nginx")) as (url, _proc):
        yield url


@pytest.fixture
def demo_server() -> Iterator[Callable[..., str]]:
    """Start ``gyro demo serve`` in a subprocess (its own event loop, not the generator's)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(slots: int = 4, step_ms: float = 10.0, *extra: str) -> str:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "gyroscope.cli",
            "demo",
            "serve",
            "--port",
            str(port),
            "--slots",
            str(slots),
            "--seed",
            "1",
            "--step-ms",
            str(step_ms),
            "--step-alpha",
            "0",
            "--prefill-ms-per-token",
            "0",
            *extra,
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_for_port("127.0.0.1", port, timeout=20)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def completion_body(max_tokens: int = 5) -> str:
    import json

    return json.dumps({"model": "demo-model", "prompt": "hi", "max_tokens": max_tokens})
