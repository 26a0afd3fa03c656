"""Loki's WebSocket live tail (``/loki/api/v1/tail``), driven by a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gyroscope.logs import LogsConfig, LogServer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LogServer]:
    cfg = LogsConfig(listen="127.0.0.1:0", checkpoint_seconds=0, scrub_seconds=0)
    srv = LogServer(cfg, tmp_path / "logs")
    await srv.start()
    yield srv
    await srv.stop(1.0)


@pytest.fixture
async def client(server: LogServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http.url, timeout=30) as c:
        yield c


def tail_url(server: LogServer, **params: object) -> str:
    return f"ws://127.0.0.1:{server.http.port}/loki/api/v1/tail?{urlencode(params)}"


async def push(client: httpx.AsyncClient, *lines: tuple[dict[str, str], str]) -> None:
    body = "\n".join(json.dumps({"labels": lb, "line": ln}) for lb, ln in lines)
    resp = await client.post("/api/logs/push", content=body)
    assert resp.status_code == 200, resp.text


async def entries(ws: ClientConnection, n: int) -> list[tuple[dict[str, str], str, str]]:
    """The next ``n`` (labels, ts, line) entries, across as many messages as they come in."""
    out: list[tuple[dict[str, str], str, str]] = []
    while len(out) < n:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert msg["dropped_entries"] == []
        for stream in msg["streams"]:
            out.extend((stream["stream"], ts, line) for ts, line in stream["values"])
    return out


async def wait_tails(server: LogServer, n: int) -> None:
    for _ in range(3000):
        if server.api.live_tails == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"live tails: {server.api.live_tails}, expected {n}")


async def test_tail_sends_backlog_then_new_matching_lines(
    server: LogServer, client: httpx.AsyncClient
) -> None:
    api, other = {"job": "api", "level": "error"}, {"job": "web", "level": "error"}
    await push(client, (api, "old timeout"), (other, "old other"), (api, "old skip"))
    url = tail_url(server, query='{job="api"} != "skip"', start=0, limit=10)
    async with connect(url) as ws:
        backlog = await entries(ws, 1)
        assert [(lb, line) for lb, _, line in backlog] == [(api, "old timeout")]
        await wait_tails(server, 1)
        await push(client, (api, "new skip"), (other, "new other"), (api, "new 1"))
        await push(client, (api, "new 2"))
        got = await entries(ws, 2)
        assert [line for _, _, line in got] == ["new 1", "new 2"]
        assert all(lb == api for lb, _, _ in got)
        assert all(ts.isdigit() and len(ts) >= 19 for _, ts, _ in got)  # Unix ns, as strings
        stats = (await client.get("/api/logs/stats")).json()
        assert stats["live_tails"] == 1


async def test_tail_applies_json_field_filters_and_extracted_labels(
    server: LogServer, client: httpx.AsyncClient
) -> None:
    gw = {"job": "gateway"}
    async with connect(tail_url(server, query='{job="gateway"} | json | status >= 500')) as ws:
        await wait_tails(server, 1)
        await push(
            client,
            (gw, json.dumps({"status": 200, "path": "/ok"})),
            (gw, json.dumps({"status": 504, "path": "/v1/chat"})),
        )
        [(labels, _, line)] = await entries(ws, 1)
        assert json.loads(line)["status"] == 504
        assert labels == {"job": "gateway", "status": "504", "path": "/v1/chat"}


async def test_bad_requests_get_400_before_the_upgrade(
    server: LogServer, client: httpx.AsyncClient
) -> None:
    cases = {
        "query ends early": {"query": '{job="api"'},
        "metric query": {"query": 'count_over_time({job="api"}[1m])'},
        "delay_for": {"query": '{job="api"}', "delay_for": 9},
        "limit must be an integer": {"query": '{job="api"}', "limit": "many"},
    }
    for expected, params in cases.items():
        with pytest.raises(InvalidStatus) as err:
            async with connect(tail_url(server, **params)):
                pass
        resp = err.value.response
        assert resp.status_code == 400, expected
        assert expected in json.loads(bytes(resp.body or b""))["error"]["message"]
    plain = await client.get("/loki/api/v1/tail", params={"query": '{job="api"}'})
    assert plain.status_code == 400 and "WebSocket" in plain.json()["error"]["message"]
    assert server.api.live_tails == 0


async def test_client_close_or_disconnect_frees_the_tail(
    server: LogServer, client: httpx.AsyncClient
) -> None:
    async with connect(tail_url(server, query='{job="api"}')) as ws:
        await wait_tails(server, 1)
    assert ws.close_code == 1000
    await wait_tails(server, 0)
    ws = await connect(tail_url(server, query='{job="api"}'))
    await wait_tails(server, 1)
    ws.transport.abort()  # no close frame: the server must notice the cut connection
    await wait_tails(server, 0)
    # the server keeps serving: a new tail still gets new lines
    async with connect(tail_url(server, query='{job="api"}')) as ws2:
        await wait_tails(server, 1)
        await push(client, ({"job": "api"}, "still here"))
        assert [line for _, _, line in await entries(ws2, 1)] == ["still here"]


async def test_tail_misses_no_batch_that_lands_while_it_reads(
    server: LogServer, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push that lands while the tail is reading wakes nobody (the tail is not waiting), so the
    tail must notice it by itself. Reading is slowed down here so that the second push surely
    lands during the read of the first."""
    import time

    from gyroscope.logs import _tail

    real = _tail.lines_since
    reading = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(*args: object) -> list[object]:
        loop.call_soon_threadsafe(reading.set)
        time.sleep(0.3)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_tail, "lines_since", slow)
    async with connect(tail_url(server, query='{job="burst"}', limit=0)) as ws:
        await wait_tails(server, 1)
        await push(client, ({"job": "burst"}, "first"))
        await asyncio.wait_for(reading.wait(), 30)
        await push(client, ({"job": "burst"}, "second"))  # lands while the tail reads "first"
        got = await entries(ws, 2)
        assert [line for _, _, line in got] == ["first", "second"]
