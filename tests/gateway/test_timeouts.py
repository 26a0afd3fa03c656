"""Upstream timeouts: a connect timeout answers 504 (like nginx), and the first-byte timeout
counts from when the request was sent to the replica, not from its arrival."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from gyroscope.testing import free_port
from tests.gateway.conftest import CHAT, wait_until


@pytest.fixture
def unanswering() -> Iterator[Callable[[], int]]:
    """Listening ports that never complete a TCP handshake: the accept queue is full.

    The fault proxy cannot do this (it accepts every connection, then drops bytes: a first-byte
    timeout); a listener with backlog 0 and one connection never accepted makes the kernel drop
    every further SYN, so a connect waits until the client gives up, as with a dead host.
    """
    held: list[socket.socket] = []

    def make() -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler = socket.socket()
        filler.connect(listener.getsockname())
        held.extend((listener, filler))
        return int(listener.getsockname()[1])

    yield make
    for sock in held:
        sock.close()


async def test_a_connect_timeout_is_504_and_a_refused_connect_502(unanswering, gateway):
    gw = await gateway(
        None,
        backends=[{"name": "stuck", "address": f"127.0.0.1:{unanswering()}"}],
        timeouts={"connect": 0.5},
        health={"enabled": False},
        outlier={"enabled": False},
    )
    refused = await gateway(
        None,
        backends=[{"name": "dead", "address": f"127.0.0.1:{free_port()}"}],
        health={"enabled": False},
        outlier={"enabled": False},
    )
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{gw.url}/v1/chat/completions", json=CHAT)
        assert r.status_code == 504, r.text
        assert "timeout" in r.json()["error"]["message"]
        r = await client.get(f"{gw.url}/v1/models")
        assert r.status_code == 504, r.text
        r = await client.get(f"{refused.url}/v1/models")
        assert r.status_code == 502, r.text  # refused: the replica is down, not slow


async def test_connect_timeouts_retried_on_every_replica_end_in_504(unanswering, gateway):
    gw = await gateway(
        None,
        backends=[
            {"name": "s1", "address": f"127.0.0.1:{unanswering()}"},
            {"name": "s2", "address": f"127.0.0.1:{unanswering()}"},
        ],
        timeouts={"connect": 0.5},
        health={"enabled": False},
        outlier={"enabled": False},
    )
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{gw.url}/v1/models")
    assert r.status_code == 504, r.text
    assert gw.routes[0].counters.retries >= 1  # the other replica was tried first


async def test_first_byte_timeout_counts_from_sending_not_from_queueing(demos, gateway):
    """A request queued behind a long stream longer than first_byte is still answered."""
    (server,) = await demos(1, step_ms=100)
    gw = await gateway(
        None,
        backends=[
            {"name": "d0", "address": f"127.0.0.1:{server.port}", "max_concurrent": 1},
        ],
        timeouts={"first_byte": 2.0},
        limits={"queue_timeout": 60},
        outlier={"enabled": False},
    )
    long_chat = {**CHAT, "max_tokens": 50, "stream": True}  # about 5 s at 100 ms a token

    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:

        async def long_stream() -> int:
            async with client.stream("POST", "/v1/chat/completions", json=long_chat) as r:
                async for _ in r.aiter_bytes():
                    pass
                return r.status_code

        first = asyncio.create_task(long_stream())
        await wait_until(lambda: gw.in_flight == 1, 20, "the stream to take the only slot")
        queued = asyncio.create_task(
            client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 1})
        )
        await wait_until(lambda: len(gw.queue) == 1, 20, "the second request to queue")
        assert await first == 200
        r = await queued
    assert r.status_code == 200, r.text  # it waited ~5 s queued, more than first_byte
