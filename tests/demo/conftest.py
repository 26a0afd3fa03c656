"""Demo server fixtures: in-process replicas on uvloop (the loop `gyro` runs them on)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import pytest
import uvloop

from gyroscope.demo import DemoServer, DemoServerConfig


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Any]:
    return {"uvloop": uvloop.new_event_loop}


StartServer = Callable[..., Awaitable[DemoServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start demo replicas with config overrides; all are stopped after the test."""
    servers: list[DemoServer] = []

    async def start(**overrides: Any) -> DemoServer:
        fields = {"name": f"t{len(servers)}", "listen": "127.0.0.1:0", "seed": 1, **overrides}
        server = DemoServer(DemoServerConfig(**fields))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop(grace=0.5)


@pytest.fixture
async def server(start_server: StartServer) -> DemoServer:
    return await start_server(slots=4)


@pytest.fixture
async def client(server: DemoServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as c:
        yield c


def chat(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "demo-model", "messages": [{"role": "user", "content": content}], **extra}


async def sse_events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of a streamed answer, JSON-decoded ("[DONE]" kept as text)."""
    events: list[Any] = []
    async for line in response.aiter_lines():
        if not line:
            continue
        assert line.startswith("data: "), line
        payload = line[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
