"""The log server over HTTP and syslog: ingest formats, batch semantics, Loki query API, tail, proofs."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gyroscope.logs import LogsConfig, LogServer, verify_proof


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LogServer]:
    cfg = LogsConfig(
        listen="127.0.0.1:0",
        syslog_udp="127.0.0.1:0",
        syslog_tcp="127.0.0.1:0",
        checkpoint_seconds=0,
        scrub_seconds=0,
    )
    srv = LogServer(cfg, tmp_path / "logs")
    await srv.start()
    yield srv
    await srv.stop(1.0)


@pytest.fixture
async def client(server: LogServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http.url, timeout=30) as c:
        yield c


def jl(*objs: object) -> str:
    return "\n".join(json.dumps(o) for o in objs)


async def query(client: httpx.AsyncClient, q: str, **params: object) -> dict[str, object]:
    resp = await client.get("/loki/api/v1/query_range", params={"query": q, "start": 0, **params})
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]  # type: ignore[no-any-return]


async def test_json_lines_push_and_query(client: httpx.AsyncClient) -> None:
    body = jl(
        {
            "labels": {"service": "api", "level": "error"},
            "line": "GET /x 500 timeout",
            "ts": 10**18,
        },
        {
            "labels": {"service": "api", "level": "info"},
            "line": "GET /y 200",
            "ts": "2026-01-01T00:00:00Z",
        },
    )
    resp = await client.post("/api/logs/push", content=body)
    assert resp.status_code == 200
    assert resp.json() == {"first_seq": 0, "count": 2, "duplicate": False}
    data = await query(client, '{service="api"} |= "timeout"')
    assert data["result"] == [
        {
            "stream": {"level": "error", "service": "api"},
            "values": [[str(10**18), "GET /x 500 timeout"]],
        }
    ]


async def test_bad_input_is_refused_whole_with_one_clear_error(client: httpx.AsyncClient) -> None:
    cases = [
        (jl({"labels": {"job": "a"}, "line": "ok"}) + "\n{not json", "line 2: invalid JSON"),
        (
            jl({"labels": {"job": "a"}, "line": "ok"}, {"labels": {"9bad": "x"}, "line": "y"}),
            "line 2: invalid label name",
        ),
        (
            jl({"labels": {"job": "a"}, "line": "x" * 300_000}),
            "line 1: line of 300000 bytes exceeds",
        ),
        (
            jl({"labels": {"job": "a"}, "line": "ok", "ts": "yesterday"}),
            "line 1: invalid timestamp",
        ),
    ]
    for body, message in cases:
        resp = await client.post("/api/logs/push", content=body)
        assert resp.status_code == 400
        assert message in resp.json()["error"]["message"]
    data = await query(client, '{job="a"}')
    assert data["result"] == []  # all or nothing: the good first lines were not stored


async def test_loki_push_json_and_gzip(client: httpx.AsyncClient) -> None:
    now = time.time_ns()
    push = {
        "streams": [
            {
                "stream": {"app": "gw", "level": "warn"},
                "values": [[str(now), "slow upstream"], [str(now + 1), "retry", {"trace": "1"}]],
            }
        ]
    }
    resp = await client.post("/loki/api/v1/push", json=push)
    assert resp.status_code == 204
    resp = await client.post(
        "/loki/api/v1/push",
        content=gzip.compress(json.dumps(push).encode()),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert resp.status_code == 204
    resp = await client.post(
        "/loki/api/v1/push", content=b"\x00\x01", headers={"content-type": "application/x-protobuf"}
    )
    assert resp.status_code == 400 and "snappy" in resp.json()["error"]["message"]
    resp = await client.post(
        "/loki/api/v1/push", content=b"x", headers={"content-type": "text/plain"}
    )
    assert resp.status_code == 400 and "application/json" in resp.json()["error"]["message"]
    resp = await client.post(
        "/loki/api/v1/push", json={"streams": [{"stream": {"a": "b"}, "values": [["1"]]}]}
    )
    assert resp.status_code == 400 and "streams[0].values[0]" in resp.json()["error"]["message"]
    data = await query(client, '{app="gw"}', direction="forward", limit=3)
    values = data["result"][0]["values"]  # type: ignore[index]
    assert [v[1] for v in values] == ["slow upstream", "retry", "slow upstream"]


async def test_labels_values_metric_and_errors(client: httpx.AsyncClient) -> None:
    body = jl(
        *(
            {
                "labels": {"service": s, "level": lv},
                "line": json.dumps({"status": st}),
                "ts": 10**18 + i,
            }
            for i, (s, lv, st) in enumerate(
                [("api", "error", 500), ("api", "info", 200), ("web", "info", 503)]
            )
        )
    )
    assert (await client.post("/api/logs/push", content=body)).status_code == 200
    labels = (await client.get("/loki/api/v1/labels")).json()
    assert labels == {"status": "success", "data": ["level", "service"]}
    values = (await client.get("/loki/api/v1/label/service/values")).json()["data"]
    assert values == ["api", "web"]
    values = (
        await client.get("/loki/api/v1/label/level/values", params={"query": '{service="web"}'})
    ).json()
    assert values["data"] == ["info"]
    data = await query(client, '{service=~"api|web"} | json | status >= 500', direction="forward")
    assert sorted(s["stream"]["service"] for s in data["result"]) == ["api", "web"]  # type: ignore[index, union-attr]
    data = await query(
        client,
        'sum by (level) (count_over_time({service=~".+"}[1m]))',
        start=str(10**18),
        end=str(10**18 + 10**9),
        step="1",
    )
    assert data["resultType"] == "matrix"
    counts = {s["metric"]["level"]: s["values"][-1][1] for s in data["result"]}  # type: ignore[index, union-attr]
    assert counts == {"error": "1", "info": "2"}
    resp = await client.get("/loki/api/v1/query_range", params={"query": '{service="api"'})
    assert resp.status_code == 400 and "query ends early" in resp.json()["error"]["message"]
    resp = await client.get("/loki/api/v1/query_range", params={"query": '{a="b"} |~ "("'})
    assert resp.status_code == 400 and "regular expression" in resp.json()["error"]["message"]
    resp = await client.get("/loki/api/v1/tail", params={"query": '{a="b"}'})
    assert resp.status_code == 400 and "WebSocket" in resp.json()["error"]["message"]


async def test_batch_key_makes_retries_idempotent(client: httpx.AsyncClient) -> None:
    body = jl({"labels": {"job": "ship"}, "line": "once"})
    first = await client.post("/api/logs/push", content=body, headers={"x-gyro-batch-key": "f:0:5"})
    again = await client.post("/api/logs/push", content=body, headers={"x-gyro-batch-key": "f:0:5"})
    assert again.json() == {**first.json(), "duplicate": True}
    data = await query(client, '{job="ship"}')
    assert len(data["result"][0]["values"]) == 1  # type: ignore[index]


async def test_live_tail_streams_new_lines(client: httpx.AsyncClient) -> None:
    await client.post("/api/logs/push", content=jl({"labels": {"job": "t"}, "line": "before"}))
    got: list[dict[str, object]] = []

    async def follow() -> None:
        async with client.stream(
            "GET", "/api/logs/tail", params={"query": '{job="t"} != "skip"'}
        ) as resp:
            async for raw in resp.aiter_lines():
                got.append(json.loads(raw))
                if len(got) == 3:
                    return

    task = asyncio.create_task(follow())
    for _ in range(200):  # wait for the backlog line, so the tail is attached
        if got:
            break
        await asyncio.sleep(0.02)
    await client.post(
        "/api/logs/push",
        content=jl(
            {"labels": {"job": "t"}, "line": "skip me"}, {"labels": {"job": "t"}, "line": "after 1"}
        ),
    )
    await client.post("/api/logs/push", content=jl({"labels": {"job": "t"}, "line": "after 2"}))
    await asyncio.wait_for(task, 30)
    assert [g["line"] for g in got] == ["before", "after 1", "after 2"]


async def test_syslog_udp_and_tcp(server: LogServer, client: httpx.AsyncClient) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.sendto(
        b"<34>1 2026-01-02T03:04:05Z host1 sshd 42 - - failed login",
        ("127.0.0.1", server.syslog_ports["udp"]),
    )
    udp.sendto(b"garbage without priority", ("127.0.0.1", server.syslog_ports["udp"]))
    udp.close()
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.syslog_ports["tcp"])
    msg = b"<13>Feb  5 17:32:18 host2 cron[7]: job done"
    writer.write(b"%d %s" % (len(msg), msg) + b"<14>Feb  5 17:32:19 host2 cron: newline framed\n")
    await writer.drain()
    for _ in range(500):
        data = await query(client, '{job="syslog"}', direction="forward")
        if sum(len(s["values"]) for s in data["result"]) == 3:  # type: ignore[union-attr, index]
            break
        await asyncio.sleep(0.02)
    writer.close()
    lines = sorted(
        (s["stream"]["host"], s["stream"]["severity"], v[1])  # type: ignore[index]
        for s in data["result"]
        for v in s["values"]
    )  # type: ignore[union-attr, attr-defined]
    assert lines == [
        ("host1", "crit", "failed login"),
        ("host2", "info", "newline framed"),
        ("host2", "notice", "job done"),
    ]
    metrics = (await client.get("/metrics")).text
    assert "gyro_logs_rejected_total 1.0" in metrics


async def test_prove_verify_and_scrub_over_http(
    server: LogServer, client: httpx.AsyncClient
) -> None:
    await client.post(
        "/api/logs/push", content=jl(*({"labels": {"job": "p"}, "line": f"l{i}"} for i in range(9)))
    )
    proof = (await client.get("/api/logs/prove", params={"seq": 4})).json()
    assert "included" in verify_proof(proof)
    cons = (await client.get("/api/logs/consistency", params={"old": 3})).json()
    assert "prefix" in verify_proof(cons)
    assert (await client.post("/api/logs/verify")).status_code == 200
    seg = server.store.segments[-1]
    with open(seg.path, "r+b") as fh:
        fh.seek(seg.offsets[2] + 12)
        fh.write(b"\xff")
    resp = await client.post("/api/logs/verify")
    assert resp.status_code == 409
    assert resp.json()["problems"][0]["offset"] == seg.offsets[2]
    assert server.health().status == "degraded"
    stats = (await client.get("/api/logs/stats")).json()
    assert stats["records"] == 9 and stats["verify"]["ok"] is False
    assert stats["ingested_lines"] == 9 and stats["ingest_lines_per_second"] > 0


async def test_logging_handler_stores_python_log_records(
    server: LogServer, client: httpx.AsyncClient
) -> None:
    import logging

    from gyroscope.logs import LogServerHandler

    handler = LogServerHandler(server, {"job": "gyroscope"})
    handler.bind(asyncio.get_running_loop())
    logger = logging.getLogger("gyroscope.gateway.access")
    logger.addHandler(handler)
    try:
        logger.warning("GET /v1/chat 502 upstream=%s", "demo-2")
        logging.getLogger("gyroscope.logs.x").addHandler(handler)
        logging.getLogger("gyroscope.logs.x").warning("not stored: the store's own logs")
        for _ in range(250):
            data = await query(client, '{job="gyroscope", logger="gateway", level="warn"}')
            if data["result"]:
                break
            await asyncio.sleep(0.02)
    finally:
        logger.removeHandler(handler)
        logging.getLogger("gyroscope.logs.x").removeHandler(handler)
    line = json.loads(data["result"][0]["values"][0][1])  # type: ignore[index]
    assert line == {"msg": "GET /v1/chat 502 upstream=demo-2", "logger": "gyroscope.gateway.access"}
    assert (await query(client, '{job="gyroscope", logger="logs"}'))["result"] == []
