"""Web pages of other sites (and DNS-rebinding pages) cannot drive the local APIs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from gyroscope.core import HttpServer, Request, Response
from gyroscope.core._websocket import WebSocket, WebSocketResponse
from gyroscope.demo import DemoServer, DemoServerConfig

WS_HEADERS = {
    "connection": "Upgrade",
    "upgrade": "websocket",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def _session(ws: WebSocket) -> None:
    await ws.send_text("secret log line")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[HttpServer]]]:
    servers: list[HttpServer] = []
    calls: list[str] = []

    async def handler(request: Request) -> Response | WebSocketResponse:
        calls.append(request.path)
        if request.websocket:
            return WebSocketResponse(_session)
        return Response.text("changed\n")

    async def start(**kwargs: object) -> HttpServer:
        server = HttpServer(handler, **kwargs)  # type: ignore[arg-type]
        await server.start()
        servers.append(server)
        server.calls = calls  # type: ignore[attr-defined]
        return server

    yield start
    for server in servers:
        await server.stop(0.5)


async def test_cross_origin_requests_are_refused_before_the_handler(serve) -> None:
    server = await serve(check_host=True)
    own = f"127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.post("/v1/reload")).status_code == 200  # curl, gyro: no Origin
        same = await client.post("/v1/reload", headers={"origin": f"http://{own}"})
        assert same.status_code == 200  # a page this server served itself
        for origin in ("http://evil.example", "null", f"http://{own}.evil.example", "file://"):
            answer = await client.post(
                "/v1/reload", headers={"origin": origin, "content-type": "text/plain"}
            )
            assert answer.status_code == 403, origin
            assert "cross-origin" in answer.json()["error"]["message"]
    assert server.calls == ["/v1/reload", "/v1/reload"]  # type: ignore[attr-defined]


async def test_dns_rebinding_host_is_refused_on_loopback_control_apis(serve) -> None:
    guarded = await serve(check_host=True)
    plain = await serve()
    async with httpx.AsyncClient() as client:
        for host, status in (
            ("rebind.example:80", 403),
            ("localhost", 200),
            (f"127.0.0.2:{guarded.port}", 200),
            ("[::1]:80", 200),
        ):
            answer = await client.get(f"{guarded.url}/x", headers={"host": host})
            assert answer.status_code == status, host
        # A server without the check (a model API behind a gateway) takes any name.
        answer = await client.get(f"{plain.url}/x", headers={"host": "api.example.com"})
        assert answer.status_code == 200


async def test_cross_origin_websocket_handshake_is_refused(serve) -> None:
    server = await serve()
    for origin, expect in (("http://evil.example", b"403"), (None, b"101")):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        lines = ["GET /tail HTTP/1.1", f"host: 127.0.0.1:{server.port}"]
        lines += [f"{k}: {v}" for k, v in WS_HEADERS.items()]
        if origin:
            lines.append(f"origin: {origin}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.split()[1] == expect, origin
        rest = await asyncio.wait_for(reader.read(4096), 5)
        assert (b"secret log line" in rest) == (origin is None)
        writer.close()


async def test_demo_admin_refuses_rebinding_but_its_model_api_does_not() -> None:
    demo = DemoServer(DemoServerConfig(listen="127.0.0.1:0"))
    await demo.start()
    try:
        async with httpx.AsyncClient(base_url=demo.url) as client:
            evil = {"host": "rebind.example"}
            answer = await client.post("/admin/faults", json={"unhealthy": True}, headers=evil)
            assert answer.status_code == 403
            assert (await client.get("/health")).status_code == 200
            models = await client.get("/v1/models", headers={"host": "api.example.com"})
            assert models.status_code == 200
    finally:
        await demo.stop(0.5)
