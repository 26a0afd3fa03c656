"""Failures under real traffic: ejection and recovery, retries, health checks, drain/remove under
load, rate limits, concurrency limits with a queue and load shedding, a cut or silent network."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx

from gyroscope.chaos import FaultProxy
from tests.gateway.conftest import CHAT, backends_for, wait_until


def ok_count(gw, name: str) -> int:
    return sum(route.stats[name].codes[2] for route in gw.routes if name in route.stats)


async def test_ejects_an_erroring_replica_and_brings_it_back(demos, gateway):
    servers = await demos(3)
    servers[1].set_faults(error_rate=1.0, error_status=500)
    gw = await gateway(
        servers,
        health={"enabled": False},
        outlier={"consecutive_5xx": 3, "base_ejection_time": 1.0},
        routes=[{"policy": "round_robin", "retries": {"attempts": 0}}],
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        statuses = [
            (await client.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(30)
        ]
        assert statuses.count(500) == 3  # three in a row, then d1 is out
        assert gw.find("d1").ejections == 1
        servers[1].clear_faults()
        before = ok_count(gw, "d1")
        deadline = time.monotonic() + 10
        while ok_count(gw, "d1") == before and time.monotonic() < deadline:
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
            await asyncio.sleep(0.05)
    assert ok_count(gw, "d1") > before, "d1 never came back after its ejection ended"


async def test_retries_land_on_another_replica(demos, gateway, caplog):
    servers = await demos(3)
    caplog.set_level(logging.INFO, logger="gyroscope.gateway.access")
    servers[0].set_faults(error_rate=1.0, error_status=503)
    gw = await gateway(
        servers,
        health={"enabled": False},
        outlier={"enabled": False},
        routes=[
            {
                "policy": "round_robin",
                "retries": {"attempts": 2, "methods": ["POST"], "on_status": [503]},
            }
        ],
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        statuses = [
            (await client.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(30)
        ]
    assert statuses == [200] * 30
    assert gw.routes[0].counters.retries >= 9
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    retried = [line for line in lines if line["attempts"] > 1]
    assert retried and all(line["backend"] != "d0" and line["status"] == 200 for line in retried)


async def test_post_is_not_retried_by_default(demos, gateway):
    servers = await demos(2)
    servers[0].set_faults(error_rate=1.0, error_status=503)
    gw = await gateway(
        servers,
        health={"enabled": False},
        outlier={"enabled": False},
        routes=[{"policy": "round_robin"}],
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        statuses = {
            (await client.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(4)
        }
        assert statuses == {200, 503}


async def test_get_is_retried_on_another_replica(echo, raw_upstream, gateway):
    busy = await raw_upstream(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
    gw = await gateway(
        None,
        backends=[
            {"name": "busy", "address": f"127.0.0.1:{busy.port}"},
            {"name": "echo", "address": f"127.0.0.1:{echo.port}"},
        ],
        health={"enabled": False},
        outlier={"enabled": False},
        routes=[{"policy": "round_robin"}],
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        statuses = [(await client.get("/v1/models")).status_code for _ in range(6)]
    assert statuses == [200] * 6
    assert busy.requests >= 1
    assert gw.routes[0].counters.retries == busy.requests


async def test_active_health_checks_take_a_replica_out_and_back(demos, gateway):
    servers = await demos(2)
    gw = await gateway(servers, routes=[{"policy": "round_robin"}])
    servers[1].set_faults(unhealthy=True)
    await wait_until(lambda: not gw.find("d1").healthy, 10, "d1 to be marked down")
    before = ok_count(gw, "d1")
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        for _ in range(10):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert ok_count(gw, "d1") == before
        servers[1].clear_faults()
        await wait_until(lambda: gw.find("d1").healthy, 10, "d1 to be marked up")
        for _ in range(4):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert ok_count(gw, "d1") > before


async def test_drain_and_remove_under_load_without_a_failed_request(demos, gateway):
    servers = await demos(4)
    for s in servers:
        s.set_faults(token_delay_ms=5)
    gw = await gateway(servers[:3])
    failures: list[str] = []
    done = 0
    stop = asyncio.Event()

    async def worker(client: httpx.AsyncClient, n: int) -> None:
        nonlocal done
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            body = {**CHAT, "max_tokens": 8, "stream": n % 2 == 0}
            try:
                r = await client.post("/v1/chat/completions", json=body)
                if r.status_code != 200 or (body["stream"] and "[DONE]" not in r.text):
                    failures.append(f"{r.status_code} {r.text[:100]}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            done += 1

    admin = httpx.AsyncClient(base_url=gw.admin.url, timeout=30)
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        tasks = [asyncio.create_task(worker(client, i)) for i in range(8)]
        await wait_until(lambda: done >= 30, 20, "load to start")
        assert (await admin.post("/v1/backends/d1/drain", json={})).status_code == 200
        await wait_until(lambda: done >= 60, 20, "more load")
        r = await admin.delete("/v1/backends/d1")
        assert r.status_code == 200 and r.json()["drained"]
        new = {"name": "d3", "address": f"127.0.0.1:{servers[3].port}"}
        assert (await admin.post("/v1/backends", json=new)).status_code == 201
        await wait_until(lambda: ok_count(gw, "d3") >= 5, 20, "the new replica to get traffic")
        stop.set()
        await asyncio.gather(*tasks)
    await admin.aclose()
    assert failures == []
    assert [b["name"] for b in gw.backends()] == ["d0", "d2", "d3"]
    assert servers[1].engine.running == 0


async def test_rate_limit_per_client(demos, gateway):
    (server,) = await demos(1)
    gw = await gateway(
        [server],
        routes=[{"rate_limit": {"key": "api_key", "requests_per_second": 0.5, "burst": 2}}],
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        alice = {"authorization": "Bearer alice"}
        statuses = [(await client.get("/v1/models", headers=alice)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = await client.get("/v1/models", headers=alice)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_exceeded"
        bob = {"authorization": "Bearer bob"}
        assert (await client.get("/v1/models", headers=bob)).status_code == 200


async def test_tokens_per_minute_counted_from_usage_streaming_and_not(demos, gateway):
    (server,) = await demos(1)
    gw = await gateway([server], routes=[{"rate_limit": {"tokens_per_minute": 40}}])
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        body = {**CHAT, "max_tokens": 30}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
        r = await client.post("/v1/chat/completions", json=stream)
        assert r.status_code == 200 and "[DONE]" in r.text
        limited = await client.post("/v1/chat/completions", json=body)
    assert limited.status_code == 429
    assert "tokens_per_minute" in limited.json()["error"]["message"]
    assert gw.routes[0].counters.rate_limited == {"tokens_per_minute": 1}


async def test_concurrency_limit_queues_then_sheds(demos, gateway):
    (server,) = await demos(1)
    server.set_faults(latency_ms=400)
    gw = await gateway(
        None,
        backends=[{"name": "d0", "address": f"127.0.0.1:{server.port}", "max_concurrent": 1}],
        limits={"queue_size": 1, "queue_timeout": 10, "retry_after": 2},
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as client:
        first = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
        await wait_until(lambda: gw.in_flight == 1, 5, "the first request")
        second = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
        await wait_until(lambda: len(gw.queue) == 1, 5, "the second request to queue")
        shed = await client.post("/v1/chat/completions", json=CHAT)
        assert shed.status_code == 503 and shed.headers["retry-after"] == "2"
        assert (await first).status_code == 200
        assert (await second).status_code == 200
    assert gw.routes[0].counters.shed == {"queue_full": 1}


async def test_queue_timeout_sheds(demos, gateway):
    (server,) = await demos(1)
    server.set_faults(latency_ms=1500)
    gw = await gateway(
        None,
        backends=[{"name": "d0", "address": f"127.0.0.1:{server.port}", "max_concurrent": 1}],
        limits={"queue_size": 4, "queue_timeout": 0.3},
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=20) as client:
        first = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
        await wait_until(lambda: gw.in_flight == 1, 5, "the first request")
        waited = await client.post("/v1/chat/completions", json=CHAT)
        assert waited.status_code == 503
        assert (await first).status_code == 200


async def test_a_cut_connection_mid_stream_breaks_only_that_stream(demos, gateway):
    (server,) = await demos(1)
    server.set_faults(token_delay_ms=30)
    proxy = FaultProxy(upstream=f"127.0.0.1:{server.port}", listen="127.0.0.1:0")
    await proxy.start()
    try:
        gw = await gateway(
            None,
            backends=[{"name": "p", "address": f"127.0.0.1:{proxy.port}"}],
            outlier={"enabled": False},
        )
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            body = {**CHAT, "max_tokens": 200, "stream": True}
            broken = False
            try:
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            proxy.cut()
            except httpx.HTTPError:
                broken = True
            assert broken, "a cut upstream must not look like a complete stream"
            await wait_until(lambda: gw.in_flight == 0, 5, "the broken exchange to end")
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    finally:
        await proxy.stop()


async def test_a_silent_network_times_out_with_504(demos, gateway):
    (server,) = await demos(1)
    proxy = FaultProxy(upstream=f"127.0.0.1:{server.port}", listen="127.0.0.1:0")
    await proxy.start()
    try:
        gw = await gateway(
            None,
            backends=[{"name": "p", "address": f"127.0.0.1:{proxy.port}"}],
            timeouts={"first_byte": 0.5},
            health={"enabled": False},
        )
        proxy.update_faults(blackhole=True)
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 504
    finally:
        await proxy.stop()


async def test_backends_helper_matches(demos):
    servers = await demos(2)
    assert [b["name"] for b in backends_for(servers)] == ["d0", "d1"]


async def test_a_reused_connection_closed_by_the_replica_is_resent_even_for_post(
    raw_upstream, gateway
):
    up = await raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", once=True)
    gw = await gateway(
        None,
        backends=[{"name": "u", "address": f"127.0.0.1:{up.port}"}],
        health={"enabled": False},
        outlier={"enabled": False},
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        statuses = [(await client.post("/v1/completions", json=CHAT)).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert up.requests == 5
    assert gw.endpoints[0].pool.opened >= 5


async def test_priorities_under_saturation(demos, gateway):
    (server,) = await demos(1)
    server.set_faults(latency_ms=500)
    gw = await gateway(
        None,
        backends=[{"name": "d0", "address": f"127.0.0.1:{server.port}", "max_concurrent": 1}],
        routes=[
            {"name": "batch", "prefix": "/v1/completions", "priority": -1},
            {"name": "interactive", "prefix": "/", "priority": 10},
        ],
        limits={"queue_size": 1, "queue_timeout": 20},
    )
    prompt = {"model": "demo-model", "prompt": "hi", "max_tokens": 2}
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        running = asyncio.create_task(client.post("/v1/completions", json=prompt))
        await wait_until(lambda: gw.in_flight == 1, 5, "the first request")
        batch = asyncio.create_task(client.post("/v1/completions", json=prompt))
        await wait_until(lambda: len(gw.queue) == 1, 5, "the batch request to queue")
        chat = await client.post("/v1/chat/completions", json=CHAT)
        assert chat.status_code == 200  # took the batch request's place in the queue
        shed = await batch
        assert shed.status_code == 503 and "higher-priority" in shed.json()["error"]["message"]
        assert (await running).status_code == 200


async def test_a_new_replica_ramps_up_under_slow_start(demos, gateway):
    servers = await demos(2)
    gw = await gateway(servers[:1], health={"slow_start": 1.5, "interval": 0.2})
    from gyroscope.gateway import BackendConfig

    gw.add_backend(BackendConfig(name="d1", address=f"127.0.0.1:{servers[1].port}", weight=10))
    new = gw.find("d1")
    await wait_until(lambda: 0 < new.lb_weight < 10, 5, "a reduced weight at first")
    await wait_until(lambda: new.lb_weight == 10, 10, "the full weight after the window")
