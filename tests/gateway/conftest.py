"""Fixtures: demo model replicas, small hand-written upstreams, and gateways in front of them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gyroscope.core import HttpServer, Request, Response, StreamResponse
from gyroscope.demo import DemoServer, DemoServerConfig
from gyroscope.gateway import Gateway, GatewayConfig

CHAT = {"model": "demo-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


async def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` every 20 ms; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def demos() -> AsyncIterator[Callable[..., Awaitable[list[DemoServer]]]]:
    started: list[DemoServer] = []

    async def make(n: int = 3, **kw: Any) -> list[DemoServer]:
        servers = []
        for _i in range(n):
            cfg = {
                "name": f"d{len(started)}",
                "listen": "127.0.0.1:0",
                "slots": 8,
                "seed": len(started) + 1,
                **kw,
            }
            server = DemoServer(DemoServerConfig(**cfg))
            await server.start()
            started.append(server)
            servers.append(server)
        return servers

    yield make
    for server in started:
        await server.stop(0.5)


def backends_for(servers: list[Any]) -> list[dict[str, Any]]:
    return [{"name": f"d{i}", "address": f"127.0.0.1:{s.port}"} for i, s in enumerate(servers)]


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    started: list[Gateway] = []

    async def make(servers: list[Any] | None = None, **overrides: Any) -> Gateway:
        data: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "admin": "127.0.0.1:0",
            "backends": backends_for(servers or []),
            "health": {"interval": 0.2, "timeout": 0.5, "rise": 1, "fall": 2},
            **overrides,
        }
        gw = Gateway(GatewayConfig.model_validate(data))
        await gw.start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.stop(1.0)


async def _echo(request: Request) -> Response | StreamResponse:
    """Answers with what it received, or with the status the path asks for."""
    if request.path.startswith("/status/"):
        status = int(request.path.rsplit("/", 1)[1])
        return Response(b"", status=status, headers=[("etag", '"v1"')])
    if request.path == "/cached":
        return Response.json({"n": time.monotonic_ns()}, headers=[("cache-control", "max-age=60")])
    if request.path == "/big":
        return Response.text("gyroscope " * 2000, content_type="application/json")
    if request.path == "/huge":

        async def blocks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"z" * (1 << 20)

        return StreamResponse(blocks(), headers=[("content-type", "application/octet-stream")])
    if request.path == "/stream":

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield b"data: %d\n\n" % i

        return StreamResponse(chunks(), headers=[("content-type", "text/event-stream")])
    return Response.json(
        {
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
            "body_length": len(request.body),
        }
    )


@pytest.fixture
async def echo() -> AsyncIterator[HttpServer]:
    server = HttpServer(_echo, port=0, name="echo")
    await server.start()
    yield server
    await server.stop(0.5)


class RawUpstream:
    """A TCP server that answers every request with fixed bytes (garbage, odd framing)."""

    def __init__(self, answer: bytes, close: bool = False, once: bool = False) -> None:
        self.answer = answer
        self.close = close
        self.once = once  # answer one request per connection, then close on the next one
        self.server: asyncio.Server | None = None
        self.port = 0
        self.requests = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            served = 0
            while await reader.readuntil(b"\r\n\r\n"):
                if self.once and served:
                    break  # like a keep-alive timeout that crosses the next request
                served += 1
                self.requests += 1
                writer.write(self.answer)
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def start(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[..., Awaitable[RawUpstream]]]:
    started: list[RawUpstream] = []

    async def make(answer: bytes, close: bool = False, once: bool = False) -> RawUpstream:
        up = await RawUpstream(answer, close, once).start()
        started.append(up)
        return up

    yield make
    for up in started:
        await up.stop()


async def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to the gateway and read until it closes (or ``timeout``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except TimeoutError:
        pass
    finally:
        writer.close()
    return b"".join(chunks)


def sse_events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
    """The gateway runs on uvloop in production (gyro gateway serve, gyro up): test it there."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}
