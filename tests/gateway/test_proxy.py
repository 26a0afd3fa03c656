"""The data plane with real clients (httpx, raw sockets) and real demo model servers."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx

from gyroscope.gateway import Gateway
from tests.gateway.conftest import CHAT, raw_request, sse_events, wait_until


async def test_proxies_json_and_adds_forwarding_headers(echo, gateway):
    gw = await gateway([echo])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.get(
            "/v1/x?y=1",
            headers={"x-forwarded-for": "10.1.1.1", "x-request-id": "abc-123", "host": "api.test"},
        )
    assert r.status_code == 200
    seen = r.json()
    assert seen["path"] == "/v1/x"
    assert seen["headers"]["x-forwarded-for"] == "10.1.1.1, 127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-request-id"] == "abc-123"
    assert seen["headers"]["host"] == "api.test"
    assert r.headers["x-request-id"] == "abc-123"


async def test_generates_a_request_id_and_strips_hop_by_hop_headers(echo, gateway):
    gw = await gateway([echo])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.get(
            "/",
            headers={
                "connection": "keep-alive, x-secret-hop",
                "x-secret-hop": "1",
                "keep-alive": "timeout=5",
                "te": "trailers",
                "x-kept": "yes",
            },
        )
    headers = r.json()["headers"]
    assert headers["x-request-id"] and r.headers["x-request-id"] == headers["x-request-id"]
    assert "x-secret-hop" not in headers and "keep-alive" not in headers and "te" not in headers
    assert headers["x-kept"] == "yes"


async def test_head_204_304_have_no_body_and_keep_the_connection(echo, gateway):
    gw = await gateway([echo])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        head = await client.head("/anything")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0
        assert (await client.get("/status/204")).status_code == 204
        r304 = await client.get("/status/304")
        assert r304.status_code == 304 and r304.content == b""
        assert (await client.get("/after")).json()["path"] == "/after"  # same connection works
    assert sum(ep.pool.opened for ep in gw.endpoints) == 1


async def test_streams_a_chunked_request_body(echo, gateway):
    gw = await gateway([echo])

    async def body():
        for _ in range(50):
            yield b"x" * 1000

    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.post("/upload", content=body())
    assert r.json()["body_length"] == 50_000


async def test_expect_100_continue(echo, gateway):
    gw = await gateway([echo])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"hello")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_sse_events_arrive_one_by_one_not_batched(demos, gateway):
    (server,) = await demos(1)
    server.set_faults(token_delay_ms=150)
    gw = await gateway([server])
    arrivals = []
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        body = {**CHAT, "max_tokens": 6, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    arrivals.append(time.monotonic())
    assert len(arrivals) >= 6
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # Each token is 150 ms after the previous one at the server; a buffering proxy would hand
    # them over together at the end. (Loose bounds: a loaded machine delays some ticks.)
    assert sum(1 for g in gaps if g >= 0.05) >= 3
    assert arrivals[-1] - arrivals[0] >= 0.4


async def test_zero_new_upstream_connections_in_steady_state(demos, gateway):
    servers = await demos(3)
    gw = await gateway(
        servers, routes=[{"policy": "round_robin"}], timeouts={"upstream_keepalive": 300}
    )
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for _ in range(6):
            assert (await client.get("/v1/models")).status_code == 200
        opened = sum(ep.pool.opened for ep in gw.endpoints)
        assert opened == 3
        for _ in range(200):
            assert (await client.get("/v1/models")).status_code == 200
    assert sum(ep.pool.opened for ep in gw.endpoints) == opened


async def test_zero_new_upstream_connections_under_concurrency(demos, gateway):
    (server,) = await demos(1)
    # keep idle connections for the whole test, however slowly a loaded machine runs it
    gw = await gateway([server], timeouts={"upstream_keepalive": 300})
    limits = httpx.Limits(max_connections=4)
    async with httpx.AsyncClient(base_url=gw.url, limits=limits) as client:

        async def burst(n):
            rs = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=CHAT) for _ in range(n))
            )
            assert all(r.status_code == 200 for r in rs)

        await burst(4)
        await burst(4)
        warm = gw.endpoints[0].pool.opened
        assert warm <= 4
        for _ in range(25):
            await burst(4)
    assert gw.endpoints[0].pool.opened == warm
    async with httpx.AsyncClient() as admin:
        metrics = (await admin.get(gw.admin.url + "/metrics")).text
    assert f'gyro_gateway_upstream_connections_opened_total{{backend="d0"}} {warm}.0' in metrics


async def test_client_disconnect_cancels_upstream_work(demos, gateway):
    (server,) = await demos(1)
    server.set_faults(token_delay_ms=50)
    gw = await gateway([server])
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        body = {**CHAT, "max_tokens": 2000, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    break
            assert server.engine.running == 1
    # the client closed mid-stream: the replica's slot must free long before 2000 tokens
    await wait_until(lambda: server.engine.running == 0, 5, "the demo slot to be freed")
    await wait_until(lambda: gw.in_flight == 0, 5, "the gateway to forget the request")
    assert gw.endpoints[0].in_flight == 0


async def test_malformed_request_gets_400_and_close(echo, gateway):
    gw = await gateway([echo])
    answer = await raw_request(gw.port, b"GARBAGE NOT HTTP\x00\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"connection: close" in answer.lower()
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/still-fine")).status_code == 200


async def test_oversized_headers_get_431_and_body_413(echo, gateway):
    gw = await gateway([echo], limits={"max_header_bytes": 2048, "max_body_bytes": 1000})
    big = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 4000 + b"\r\n\r\n"
    assert (await raw_request(gw.port, big)).startswith(b"HTTP/1.1 431")
    declared = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n"
    assert (await raw_request(gw.port, declared)).startswith(b"HTTP/1.1 413")
    async with httpx.AsyncClient(base_url=gw.url) as client:

        async def chunked():
            for _ in range(5):
                yield b"y" * 400

        r = await client.post("/", content=chunked())
        assert r.status_code == 413
        assert (await client.get("/ok")).status_code == 200
    assert len(gw.clients) <= 1


async def test_upstream_garbage_is_502_and_marks_the_replica(raw_upstream, gateway):
    bad = await raw_upstream(b"SPAM SPAM SPAM\r\n\r\n")
    gw = await gateway([bad], health={"enabled": False}, outlier={"consecutive_gateway_errors": 3})
    async with httpx.AsyncClient(base_url=gw.url) as client:
        statuses = [(await client.get("/")).status_code for _ in range(3)]
    assert statuses == [502, 502, 502]
    assert gw.endpoints[0].ejections == 1
    assert gw.backends()[0]["ejected"]


async def test_no_replica_available_is_503_with_retry_after(demos, gateway):
    (server,) = await demos(1)
    gw = await gateway([server], limits={"retry_after": 3})
    gw.drain("d0")
    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "3"
    assert "no replica" in r.json()["error"]["message"]


async def test_first_byte_timeout_is_504(demos, gateway):
    (server,) = await demos(1)
    server.set_faults(hang=True)
    gw = await gateway([server], timeouts={"first_byte": 0.5}, outlier={"enabled": False})
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 504
    await wait_until(lambda: server.engine.running == 0, 5, "the hung request to be dropped")


async def test_refused_connection_is_retried_on_another_replica(demos, gateway):
    from gyroscope.testing import free_port

    (server,) = await demos(1)
    dead = {"name": "dead", "address": f"127.0.0.1:{free_port()}"}
    gw = await gateway(
        None,
        backends=[dead, {"name": "d0", "address": f"127.0.0.1:{server.port}"}],
        health={"enabled": False},
        routes=[{"policy": "round_robin"}],
    )
    async with httpx.AsyncClient(base_url=gw.url) as client:
        rs = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(6)]
    # POST is not idempotent, but nothing was sent on a refused connection: safe to retry
    assert [r.status_code for r in rs] == [200] * 6
    assert gw.find("dead").ejections >= 1


async def test_graceful_stop_finishes_in_flight_streams(demos):
    from gyroscope.gateway import GatewayConfig

    (server,) = await demos(1)
    server.set_faults(token_delay_ms=40)
    cfg = GatewayConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "admin": None,
            "backends": [{"name": "d0", "address": f"127.0.0.1:{server.port}"}],
        }
    )
    gw = Gateway(cfg)
    await gw.start()
    events = []
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        body = {**CHAT, "max_tokens": 15, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            stopping = None
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(line)
                    if stopping is None:
                        stopping = asyncio.create_task(gw.stop(grace=10))
        await stopping
    assert events[-1] == "data: [DONE]"
    assert len(sse_events("\n".join(events))) >= 15


async def test_compression_and_cache(echo, gateway):
    gw = await gateway(
        [echo],
        routes=[{"policy": "round_robin", "cache": {}, "compression": {"encodings": ["gzip"]}}],
    )
    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.get("/big", headers={"accept-encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert r.text.startswith("gyroscope gyroscope")  # httpx decoded it
        raw = await raw_request(
            gw.port,
            b"GET /big HTTP/1.1\r\nhost: x\r\naccept-encoding: gzip\r\nconnection: close\r\n\r\n",
        )
        body = raw.split(b"\r\n\r\n", 1)[1]
        assert len(body) < 2000  # 20 kB of repeated text, compressed
        plain = await client.get("/big", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
        stream = await client.get("/stream", headers={"accept-encoding": "gzip"})
        assert "content-encoding" not in stream.headers  # never SSE
        first = (await client.get("/cached")).json()
        second = await client.get("/cached")
        assert second.json() == first and second.headers["x-cache"] == "HIT"
        assert second.headers["content-type"] == "application/json"
        assert int(second.headers["age"]) >= 0
        fresh = await client.get("/cached", headers={"cache-control": "no-cache"})
        assert fresh.json() != first


async def test_these_tests_run_on_uvloop():
    import uvloop

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


def served(gw: Gateway) -> dict[str, int]:
    return {name: s.codes[2] for route in gw.routes for name, s in route.stats.items()}


async def test_weighted_round_robin_over_real_replicas(demos, gateway):
    servers = await demos(3)
    backends = [
        {"name": f"d{i}", "address": f"127.0.0.1:{s.port}", "weight": i + 1}
        for i, s in enumerate(servers)
    ]
    gw = await gateway(None, backends=backends, routes=[{"policy": "weighted_round_robin"}])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for _ in range(60):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert served(gw) == {"d0": 10, "d1": 20, "d2": 30}


async def test_hash_on_a_json_field_keeps_each_user_on_one_replica(demos, gateway):
    servers = await demos(3)
    gw = await gateway(
        servers,
        routes=[{"policy": "maglev", "hash": {"source": "json", "field": "user"}}],
    )
    homes: dict[str, set[str]] = {}
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for i in range(40):
            user = f"user-{i % 8}"
            before = served(gw)
            r = await client.post("/v1/chat/completions", json={**CHAT, "user": user})
            assert r.status_code == 200
            after = served(gw)
            (replica,) = [n for n in after if after[n] != before.get(n, 0)]
            homes.setdefault(user, set()).add(replica)
    assert all(len(h) == 1 for h in homes.values())
    assert len({next(iter(h)) for h in homes.values()}) >= 2  # users spread over replicas


async def test_session_affinity_by_header_with_bounded_load(demos, gateway):
    servers = await demos(3)
    gw = await gateway(
        servers,
        routes=[
            {
                "policy": "ring_hash",
                "hash": {"source": "header", "name": "x-session-id"},
                "hash_balance_factor": 1.25,
            }
        ],
    )
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for _ in range(12):
            r = await client.post(
                "/v1/chat/completions", json=CHAT, headers={"x-session-id": "s-1"}
            )
            assert r.status_code == 200
    counts = served(gw)
    assert sorted(counts.values()) == [12]  # one session, sequential: always its home replica


async def test_random_bytes_and_cut_requests_neither_crash_nor_leak(echo, gateway):
    import random

    gw = await gateway([echo], timeouts={"client_keepalive": 1.0})
    rng = random.Random(5)
    valid = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n0123456789"
    for i in range(60):
        if i % 3 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif i % 3 == 1:
            data = valid[: rng.randrange(1, len(valid))]  # cut anywhere, then close
        else:
            data = bytearray(valid)
            data[rng.randrange(len(data))] = rng.randrange(256)  # one corrupted byte
            data = bytes(data)
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(data)
        await writer.drain()
        writer.close()
    await wait_until(lambda: not gw.clients, 10, "every client connection to be closed")
    await wait_until(lambda: gw.in_flight == 0, 10, "no request left in flight")
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/alive")).status_code == 200
    pool = gw.endpoints[0].pool
    assert pool.live == len(pool.idle)  # every upstream connection is idle in the pool or closed


async def test_upstream_garbage_mid_body_aborts_the_client(raw_upstream, gateway):
    bad = await raw_upstream(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n", close=True
    )
    gw = await gateway([bad], health={"enabled": False})
    async with httpx.AsyncClient(base_url=gw.url) as client:
        try:
            r = await client.get("/")
            truncated = False
            del r
        except httpx.HTTPError:
            truncated = True
    assert truncated, "a broken upstream body must not reach the client as a complete response"
    await wait_until(lambda: gw.in_flight == 0, 5, "the exchange to end")


async def test_a_slow_client_pauses_the_replica_instead_of_filling_memory(echo, gateway):
    import socket

    gw = await gateway([echo])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", gw.port))
    await loop.sock_sendall(sock, b"GET /huge HTTP/1.1\r\nhost: x\r\n\r\n")
    received = len(await loop.sock_recv(sock, 65536))
    (client,) = gw.clients
    await wait_until(
        lambda: client.current is not None and client.current.upconn is not None,
        5,
        "the response to start",
    )
    upstream = client.current.upconn
    await wait_until(
        lambda: not upstream.transport.is_reading(),
        10,
        "the gateway to stop reading from the replica",
    )
    # 64 MB are on offer; the gateway holds no more than its transport's high-water mark or so
    assert client.transport.get_write_buffer_size() < 4 * (1 << 20)
    # reading on resumes the flow and the whole body arrives
    deadline = loop.time() + 60
    while received < 64 * (1 << 20) and loop.time() < deadline:
        chunk = await loop.sock_recv(sock, 1 << 20)
        if not chunk:
            break
        received += len(chunk)
    sock.close()
    assert received >= 64 * (1 << 20)
