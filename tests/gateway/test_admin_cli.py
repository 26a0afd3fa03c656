"""The admin API and `gyro gateway ...` as users run them (subprocesses, real sockets)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from gyroscope.testing import free_port
from tests.gateway.conftest import CHAT, wait_until

GYRO = [sys.executable, "-m", "gyroscope.cli"]


async def gyro(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *GYRO, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def start_gateway(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *GYRO, "gateway", "serve", *args, stderr=asyncio.subprocess.PIPE
    )


def two_free_ports() -> int:
    """A port p such that p and p + 1 were both free a moment ago (worker admin ports)."""
    import socket

    for _ in range(100):
        first = free_port()
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", first))
                b.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
            return first
    raise AssertionError("no two consecutive free ports")


async def port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await port_open(port):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing listening on {port}")
        await asyncio.sleep(0.05)


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


async def test_admin_api_requires_the_token_and_reports_errors(demos, gateway):
    (server,) = await demos(1)
    gw = await gateway([server], admin_token="s3cret")
    async with httpx.AsyncClient(base_url=gw.admin.url) as admin:
        assert (await admin.get("/v1/backends")).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await admin.get("/v1/backends", headers=wrong)).status_code == 401
        assert (await admin.get("/health")).status_code == 200  # liveness stays open
        admin.headers["authorization"] = "Bearer s3cret"
        assert (await admin.get("/v1/backends")).json()["backends"][0]["name"] == "d0"
        assert (await admin.post("/v1/backends/zz/weight", json={"weight": 2})).status_code == 404
        dup = {"name": "d0", "address": "127.0.0.1:1"}
        assert (await admin.post("/v1/backends", json=dup)).status_code == 409
        bad = await admin.post("/v1/backends", json={"name": "x", "address": "nowhere"})
        assert bad.status_code == 400 and "host:port" in bad.json()["error"]["message"]
        assert (await admin.post("/v1/backends/d0/weight", json={"weight": -1})).status_code == 400
        assert (await admin.post("/v1/backends", content=b"{not json")).status_code == 400
        assert (await admin.post("/v1/reload")).status_code == 409
        metrics = (await admin.get("/metrics")).text
        assert "gyro_gateway_in_flight" in metrics


async def test_cli_serve_and_backends_commands(demos, tmp_path: Path):
    servers = await demos(2)
    port, admin_port = free_port(), free_port()
    admin_url = f"http://127.0.0.1:{admin_port}"
    proc = await start_gateway(
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin_port}",
        "--upstream",
        f"d0=127.0.0.1:{servers[0].port}",
        "--policy",
        "least_connections",
    )
    try:
        await wait_port(admin_port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        code, out, _ = await gyro("gateway", "backends", "list", "--admin", admin_url)
        assert code == 0 and "d0" in out and "up" in out
        address = f"127.0.0.1:{servers[1].port}"
        assert (
            await gyro(
                "gateway", "backends", "add", "d1", address, "--weight", "3", "--admin", admin_url
            )
        )[0] == 0
        assert (await gyro("gateway", "backends", "weight", "d0", "2", "--admin", admin_url))[
            0
        ] == 0
        assert (await gyro("gateway", "backends", "drain", "d0", "--admin", admin_url))[0] == 0
        code, out, _ = await gyro("gateway", "backends", "list", "--json", "--admin", admin_url)
        rows = {b["name"]: b for b in json.loads(out)}
        assert rows["d0"]["weight"] == 2 and rows["d0"]["draining"]
        assert rows["d1"]["weight"] == 3
        assert (await gyro("gateway", "backends", "remove", "d0", "--admin", admin_url))[0] == 0
        code, _, err = await gyro("gateway", "backends", "remove", "d0", "--admin", admin_url)
        assert code != 0 and "no backend named 'd0'" in err and "Traceback" not in err
    finally:
        assert await stop(proc) == 0


async def test_cli_config_file_reload_and_bad_config(demos, tmp_path: Path):
    servers = await demos(2)
    port, admin_port = free_port(), free_port()
    admin_url = f"http://127.0.0.1:{admin_port}"
    config = tmp_path / "gateway.yaml"

    def write(names: list[int]) -> None:
        backends = "".join(
            f"    - {{name: d{i}, address: '127.0.0.1:{servers[i].port}'}}\n" for i in names
        )
        config.write_text(
            f"gateway:\n  listen: 127.0.0.1:{port}\n  admin: 127.0.0.1:{admin_port}\n"
            f"  routes: [{{policy: round_robin}}]\n  backends:\n{backends}"
        )

    write([0])
    proc = await start_gateway("-c", str(config))
    try:
        await wait_port(admin_port)
        write([0, 1])
        code, out, _ = await gyro("gateway", "reload", "--admin", admin_url)
        assert code == 0 and "2 replicas" in out
        write([1])
        proc.send_signal(signal.SIGHUP)

        async def names() -> list[str]:
            async with httpx.AsyncClient() as admin:
                r = await admin.get(admin_url + "/v1/backends")
            return [b["name"] for b in r.json()["backends"]]

        deadline = asyncio.get_running_loop().time() + 10
        while await names() != ["d1"]:
            assert asyncio.get_running_loop().time() < deadline, "SIGHUP did not reload"
            await asyncio.sleep(0.1)
    finally:
        assert await stop(proc) == 0
    config.write_text("gateway:\n  listen: 127.0.0.1:1\n  bogus: 1\n")
    code, _, err = await gyro("gateway", "serve", "-c", str(config))
    assert code != 0
    assert "bogus" in err and "unknown key" in err and "Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux SO_REUSEPORT")
async def test_workers_share_the_port_and_admin_changes_reach_every_worker(demos):
    servers = await demos(2)
    port, admin_port = free_port(), two_free_ports()
    proc = await start_gateway(
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin_port}",
        "--workers",
        "2",
        "--upstream",
        f"d0=127.0.0.1:{servers[0].port}",
    )
    try:
        await wait_port(admin_port)
        await wait_port(admin_port + 1)
        await wait_port(port)
        async with httpx.AsyncClient(timeout=10) as client:
            body = {"name": "d1", "address": f"127.0.0.1:{servers[1].port}"}
            r = await client.post(f"http://127.0.0.1:{admin_port}/v1/backends", json=body)
            assert r.status_code == 201
            for worker_admin in (admin_port, admin_port + 1):
                rows = (await client.get(f"http://127.0.0.1:{worker_admin}/v1/backends")).json()
                assert [b["name"] for b in rows["backends"]] == ["d0", "d1"]
            for _ in range(10):
                async with httpx.AsyncClient(timeout=10) as fresh:  # new connections spread
                    r = await fresh.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT)
                    assert r.status_code == 200
    finally:
        assert await stop(proc) == 0


async def test_metrics_and_health_through_the_admin_port(demos, gateway):
    servers = await demos(2)
    # Health checks with room for a loaded machine: this test reads a snapshot of "all healthy",
    # which the fixture's 0.5 s check timeout could flip under load (it failed once that way).
    gw = await gateway(servers, health={"interval": 0.2, "timeout": 3.0, "rise": 1, "fall": 3})
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        for _ in range(4):
            await client.post("/v1/chat/completions", json=CHAT)
    await wait_until(lambda: gw.in_flight == 0, 5, "requests to end")
    async with httpx.AsyncClient(base_url=gw.admin.url) as admin:
        text = (await admin.get("/metrics")).text
        health = (await admin.get("/health")).json()
    # The default policy picks at random between equally idle replicas, so count over both.
    answered = re.findall(
        r'gyro_gateway_requests_total\{backend="d[01]",code="2xx",route="default"\} (\S+)', text
    )
    assert sum(float(n) for n in answered) == 4.0, text
    assert "gyro_gateway_request_duration_seconds_bucket" in text
    # Latency is read from a clock finer than the event loop's (which counts whole milliseconds)
    sums = re.findall(r"gyro_gateway_request_duration_seconds_sum\{[^}]*\} (\S+)", text)
    total_ms = sum(float(n) for n in sums) * 1000
    assert total_ms > 0 and abs(total_ms - round(total_ms)) > 1e-6, sums
    assert 'gyro_gateway_backend_healthy{backend="d1"} 1.0' in text
    assert health["status"] == "ok" and len(health["backends"]) == 2
