"""The response cache through a real gateway: per-host entries, Vary, compressed hits."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from gyroscope.core import HttpServer, Request, Response
from tests.gateway.conftest import raw_request

PAD = "gyroscope " * 300  # 3 kB: above the compression threshold (1 kB)


class Site:
    """An upstream serving several virtual hosts; it counts the requests that reach it."""

    def __init__(self) -> None:
        self.hits = 0
        self.server = HttpServer(self.handle, port=0, name="site")

    async def handle(self, request: Request) -> Response:
        if request.path == "/health":
            return Response.json({"status": "ok"})  # the gateway's health checks: not counted
        self.hits += 1
        host = request.headers.get("host", "")
        body = json.dumps({"host": host, "n": self.hits, "pad": PAD}).encode()
        headers = [("content-type", "application/json"), ("cache-control", "max-age=60")]
        if request.path == "/vary-star":
            headers.append(("vary", "*"))
        elif request.path == "/vary-agent":
            headers.append(("vary", "User-Agent"))
        elif request.path == "/pre-encoded":
            headers.append(("vary", "Accept-Encoding"))
            if "gzip" in request.headers.get("accept-encoding", ""):
                headers.append(("content-encoding", "gzip"))
                body = gzip.compress(body)
        return Response(body, headers=headers)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    await s.server.start()
    yield s
    await s.server.stop(0.5)


def upstream(site: Site) -> list[dict[str, str]]:
    return [{"name": "site", "address": f"127.0.0.1:{site.server.port}"}]


async def test_virtual_hosts_get_their_own_cache_entries(site, gateway):
    gw = await gateway(None, backends=upstream(site), routes=[{"cache": {}}])
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        a1 = await client.get("/page", headers={"host": "a.example"})
        b1 = await client.get("/page", headers={"host": "b.example"})
        assert a1.json()["host"] == "a.example" and "x-cache" not in a1.headers
        assert b1.json()["host"] == "b.example", "b.example was served a.example's answer"
        assert "x-cache" not in b1.headers
        a2 = await client.get("/page", headers={"host": "a.example"})
        b2 = await client.get("/page", headers={"host": "B.Example"})  # Host is case-insensitive
        assert a2.headers["x-cache"] == "HIT" and a2.json() == a1.json()
        assert b2.headers["x-cache"] == "HIT" and b2.json() == b1.json()
    assert site.hits == 2


async def test_responses_that_vary_on_other_headers_are_not_cached(site, gateway):
    gw = await gateway(None, backends=upstream(site), routes=[{"cache": {}}])
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        for path in ("/vary-star", "/vary-agent"):
            first = await client.get(path)
            second = await client.get(path)
            assert "x-cache" not in second.headers, path
            assert second.json()["n"] == first.json()["n"] + 1, path


async def test_a_replica_encoded_answer_goes_only_to_clients_that_accept_it(site, gateway):
    """The route does not compress; the replica gzips for clients that ask (Vary)."""
    gw = await gateway(None, backends=upstream(site), routes=[{"cache": {}}])
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        gz1 = await client.get("/pre-encoded", headers={"accept-encoding": "gzip"})
        assert gz1.headers["content-encoding"] == "gzip"
        gz2 = await client.get("/pre-encoded", headers={"accept-encoding": "gzip"})
        assert gz2.headers["x-cache"] == "HIT" and gz2.json() == gz1.json()
        plain = await client.get("/pre-encoded", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers, "a gzip body for a client without gzip"
        assert "x-cache" not in plain.headers and plain.json()["n"] == gz1.json()["n"] + 1
        again = await client.get("/pre-encoded", headers={"accept-encoding": "identity"})
        assert again.headers["x-cache"] == "HIT" and "content-encoding" not in again.headers


async def test_a_cache_hit_is_compressed_like_a_miss(site, gateway):
    gw = await gateway(
        None,
        backends=upstream(site),
        routes=[{"cache": {}, "compression": {"encodings": ["gzip"]}}],
    )
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        miss = await client.get("/page", headers={"accept-encoding": "gzip"})
        assert miss.headers["content-encoding"] == "gzip" and "x-cache" not in miss.headers
        cache = gw.routes[0].cache
        assert cache is not None
        stored = cache.size  # the identity body
        hit = await client.get("/page", headers={"accept-encoding": "gzip"})
        assert stored < cache.size < 2 * stored  # its gzip copy is kept beside it
        assert hit.headers["x-cache"] == "HIT"
        assert hit.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in hit.headers["vary"].lower()
        assert hit.json() == miss.json()
        plain = await client.get("/page", headers={"accept-encoding": "identity"})
        assert plain.headers["x-cache"] == "HIT" and "content-encoding" not in plain.headers
        assert "accept-encoding" in plain.headers["vary"].lower()
        assert plain.json() == miss.json()
        other = await client.get("/page", headers={"accept-encoding": "br"})  # not offered
        assert other.headers["x-cache"] == "HIT" and "content-encoding" not in other.headers
    host = b"127.0.0.1:%d" % gw.port  # the Host httpx sent above
    raw = await raw_request(
        gw.port,
        b"GET /page HTTP/1.1\r\nhost: %b\r\naccept-encoding: gzip\r\nconnection: close\r\n\r\n"
        % host,
    )
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"x-cache: hit" in head.lower()
    assert b"content-length: %d" % len(body) in head.lower()  # whole, not chunked
    assert json.loads(gzip.decompress(body))["pad"] == PAD
    assert len(body) < len(PAD) // 4
    assert site.hits == 1
