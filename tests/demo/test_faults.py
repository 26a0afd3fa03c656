"""Every demo fault, switched on through the admin API and observed from a real client."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gyroscope.demo import DemoServer
from gyroscope.errors import DemoError

from .conftest import StartServer, chat

SHORT = {"prompt": "hi", "max_tokens": 2}


async def set_faults(client: httpx.AsyncClient, **faults: object) -> dict[str, object]:
    response = await client.post("/admin/faults", json=faults)
    assert response.status_code == 200, response.text
    return response.json()


async def test_admin_api_merges_shows_and_clears(client: httpx.AsyncClient) -> None:
    await set_faults(client, latency_ms=5)
    body = await set_faults(client, error_rate=0.1, error_status=503)
    assert body["faults"]["latency_ms"] == 5 and body["faults"]["error_rate"] == 0.1
    assert body["active"] == ["error_rate", "latency_ms"]
    assert (await client.get("/admin/faults")).json()["faults"]["error_status"] == 503
    cleared = (await client.delete("/admin/faults")).json()
    assert cleared["active"] == [] and cleared["faults"]["error_rate"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"eror_rate": 0.5}, "unknown fault 'eror_rate'"),
        ({"error_rate": 1.5}, "fault error_rate: input should be less than or equal to 1"),
        ({"error_status": 200}, "fault error_status"),
        ({"hang": "maybe"}, "fault hang"),
        ([1], "must be a JSON object"),
    ],
)
async def test_admin_api_rejects_bad_faults_with_one_line(
    server: DemoServer, client: httpx.AsyncClient, body: object, message: str
) -> None:
    response = await client.post("/admin/faults", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert server.faults.active() == []  # nothing half-applied


async def test_python_api_validates_too(server: DemoServer) -> None:
    with pytest.raises(DemoError, match="unknown fault 'nope'"):
        server.set_faults(nope=True)
    assert server.set_faults(latency_ms=1).latency_ms == 1
    assert server.clear_faults().latency_ms == 0


async def test_error_rate_is_seeded(start_server: StartServer) -> None:
    patterns = []
    for _ in range(2):
        server = await start_server(seed=7)
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            await set_faults(client, error_rate=0.5, error_status=503)
            statuses = [
                (await client.post("/v1/completions", json=SHORT)).status_code for _ in range(40)
            ]
        patterns.append(statuses)
    assert patterns[0] == patterns[1]  # same seed, same failures
    assert set(patterns[0]) == {200, 503}
    assert 8 <= patterns[0].count(503) <= 32


async def test_error_body_is_openai_shaped(client: httpx.AsyncClient) -> None:
    await set_faults(client, error_rate=1.0, error_status=502)
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "server_error"
    assert (await client.get("/health")).status_code == 200  # only inference misbehaves


async def test_latency_delays_the_first_token(client: httpx.AsyncClient) -> None:
    await set_faults(client, latency_ms=300)
    start = time.monotonic()
    assert (await client.post("/v1/completions", json=SHORT)).status_code == 200
    assert time.monotonic() - start >= 0.3


async def test_token_delay_slows_every_token(client: httpx.AsyncClient) -> None:
    await set_faults(client, token_delay_ms=80)
    start = time.monotonic()
    body = (await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 5})).json()
    assert body["usage"]["completion_tokens"] == 5
    assert time.monotonic() - start >= 0.4


async def test_hang_never_answers_until_cleared(
    server: DemoServer, client: httpx.AsyncClient
) -> None:
    await set_faults(client, hang=True)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/completions", json=SHORT, timeout=0.5)
    assert (await client.get("/health")).status_code == 200  # the process itself is alive
    await client.delete("/admin/faults")
    assert (await client.post("/v1/completions", json=SHORT)).status_code == 200


async def test_close_mid_stream_cuts_the_stream_after_n_tokens(client: httpx.AsyncClient) -> None:
    await set_faults(client, close_mid_stream=True, close_after_tokens=3)
    tokens = 0
    with pytest.raises(httpx.RemoteProtocolError):
        request = chat(max_tokens=10, stream=True)
        async with client.stream("POST", "/v1/chat/completions", json=request) as response:
            async for line in response.aiter_lines():
                assert "[DONE]" not in line
                tokens += '"content":" ' in line
    assert tokens == 3
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 10})


async def test_refuse_connections_then_listen_again(server: DemoServer) -> None:
    # A connection opened before the fault keeps working; new ones are refused.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        await set_faults(client, refuse_connections=True)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as fresh:
            await fresh.get("/health")
    writer.write(b"DELETE /admin/faults HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as fresh:
        assert (await fresh.get("/health")).status_code == 200  # same port, listening again


async def test_down_resets_open_connections_and_refuses_new_ones(server: DemoServer) -> None:
    # What a monitor with a kept-alive scrape connection sees when a replica's process dies.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        body = await set_faults(client, down=True, clear_after_s=1.0)
    assert body["active"] == ["down"]
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the idle connection was dropped
    writer.close()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as fresh:
            await fresh.get("/health")
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        while True:
            try:
                assert (await client.get("/health")).status_code == 200
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the replica never came back"
                await asyncio.sleep(0.05)


async def test_clear_after_lifts_faults_by_itself(server: DemoServer) -> None:
    server.set_faults(refuse_connections=True, clear_after_s=0.3)
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        while True:
            try:
                assert (await client.get("/health")).status_code == 200
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the fault did not lift itself"
                await asyncio.sleep(0.05)
    assert server.faults.active() == []


async def test_unhealthy_health_answers_503(server: DemoServer, client: httpx.AsyncClient) -> None:
    await set_faults(client, unhealthy=True)
    response = await client.get("/health")
    assert response.status_code == 503 and response.json()["status"] == "unhealthy"
    assert server.health().status == "degraded" and "unhealthy" in server.health().detail
    assert (await client.post("/v1/completions", json=SHORT)).status_code == 200


async def test_admin_token_guards_faults(start_server: StartServer) -> None:
    server = await start_server(admin_token="s3cret")
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        assert (await client.post("/admin/faults", json={"hang": True})).status_code == 401
        ok = await client.post(
            "/admin/faults", json={"latency_ms": 1}, headers={"authorization": "Bearer s3cret"}
        )
        assert ok.status_code == 200
