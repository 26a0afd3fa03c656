"""Bad input to the log server and its files: a clear 4xx or one error line, never a 500/traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gyroscope.cli import _main
from gyroscope.errors import LogStoreError
from gyroscope.logs import LogServer, LogStore, Shipper
from gyroscope.logs._errors import BadInputError
from gyroscope.platform import load_config

from .conftest import running_log_server

TOKEN = "s3cret-logs-token"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LogServer]:
    async with running_log_server(tmp_path / "logs") as srv:
        yield srv


@pytest.fixture
async def client(server: LogServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http.url, timeout=30) as c:
        resp = await c.post(
            "/api/logs/push",
            content="\n".join(
                json.dumps({"labels": {"job": "a"}, "line": f"l{i}"}) for i in range(3)
            ),
        )
        assert resp.status_code == 200
        yield c


def gyro(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(_main.cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _logs_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_main.COMMANDS, "logs", "gyroscope.cli.logs:logs")
    monkeypatch.delenv("GYRO_LOGS_TOKEN", raising=False)


METRIC = 'count_over_time({job="a"}[1m])'


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/loki/api/v1/query_range", {"query": METRIC, "step": "0"}, "step must be a positive"),
        ("/loki/api/v1/query_range", {"query": METRIC, "step": "-5"}, "step must be a positive"),
        ("/loki/api/v1/query_range", {"query": METRIC, "step": "inf"}, "step must be a positive"),
        ("/loki/api/v1/query_range", {"query": METRIC, "step": "nan"}, "step must be a positive"),
        ("/loki/api/v1/query_range", {"query": METRIC, "step": "0s"}, "step must be at least"),
        ("/loki/api/v1/query_range", {"query": METRIC, "step": "0.000001"}, "too many points"),
        ("/loki/api/v1/query_range", {"query": METRIC, "step": "1ms"}, "raise step"),
        ("/loki/api/v1/query_range", {"query": '{job="a"}', "limit": "-5"}, "limit must be >= 0"),
        ("/loki/api/v1/query_range", {"query": '{job="a"}', "end": "9" * 26}, "end is out of"),
        ("/loki/api/v1/query_range", {"query": '{job="a"}', "start": "5", "end": "1"}, "before"),
        ("/loki/api/v1/query", {"query": '{job="a"}', "time": "9" * 26}, "time is out of range"),
        ("/api/logs/prove", {"seq": "-1"}, "record -1 does not exist"),
        ("/api/logs/prove", {"seq": "3"}, "record 3 does not exist"),
        ("/api/logs/prove", {}, "parameter seq is required"),
        ("/api/logs/consistency", {"old": "5", "new": "1"}, "parameter old must be 1..3"),
        ("/api/logs/consistency", {"old": "2", "new": "1"}, "parameter new must be 2..3"),
        ("/api/logs/consistency", {"old": "0"}, "parameter old must be 1..3"),
        ("/api/logs/consistency", {"old": "1", "new": "99"}, "parameter new must be 1..3"),
        ("/api/logs/tail", {"query": '{job="a"}', "limit": "-3"}, "limit must be >= 0"),
    ],
)
async def test_bad_query_parameters_are_400(
    client: httpx.AsyncClient, path: str, params: dict[str, str], message: str
) -> None:
    resp = await client.get(path, params=params)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]["message"]


async def test_good_proofs_and_steps_still_answer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/logs/prove", params={"seq": "2"})).status_code == 200
    resp = await client.get("/api/logs/consistency", params={"old": "1", "new": "3"})
    assert resp.status_code == 200 and resp.json()["second"] == 3
    resp = await client.get(
        "/loki/api/v1/query_range", params={"query": METRIC, "step": "0.5", "start": "0"}
    )
    assert resp.status_code == 400 and "too many points" in resp.text  # 1970..now at 0.5 s
    resp = await client.get("/loki/api/v1/query_range", params={"query": METRIC, "step": "1"})
    assert resp.status_code == 200, resp.text  # the default hour in 3,601 steps


def test_local_metric_query_with_tiny_step_is_one_line(tmp_path: Path) -> None:
    LogStore(tmp_path / "logs", checkpoint_every=0).open().close()
    code, _, err = gyro("logs", "query", METRIC, "--data-dir", str(tmp_path), "--step", "1ms")
    assert code == 2 and err.count("\n") == 1 and "too many points, raise step" in err


# -- the token ---------------------------------------------------------------------------------


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[LogServer]:
    async with running_log_server(tmp_path / "logs", token=TOKEN) as srv:
        yield srv


def test_token_is_secret_in_config_check(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(f"logs:\n  listen: 127.0.0.1:3100\n  token: {TOKEN}\n")
    code, out, err = gyro("config", "check", "--json", str(path))
    assert code == 0, err
    assert TOKEN not in out
    assert json.loads(out)["logs"]["token"] == "**********"
    section = load_config(path).logs
    assert section is not None and section.token is not None
    assert section.token.get_secret_value() == TOKEN  # what the server compares against


def _raw_get(url: str, authorization: bytes) -> bytes:
    """One request with raw header bytes (httpx refuses non-ASCII header values)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"GET /api/logs/stats HTTP/1.1\r\nHost: "
            + f"{host}:{port}".encode()
            + b"\r\nAuthorization: "
            + authorization
            + b"\r\nConnection: close\r\n\r\n"
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_token_is_enforced_and_non_ascii_header_is_401(secured: LogServer) -> None:
    async with httpx.AsyncClient(base_url=secured.http.url, timeout=30) as c:
        assert (await c.get("/api/logs/stats")).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await c.get("/api/logs/stats", headers=wrong)).status_code == 401
        good = {"authorization": f"Bearer {TOKEN}"}
        assert (await c.get("/api/logs/stats", headers=good)).status_code == 200
    for header in ("Bearer sécret".encode("latin-1"), "Bearer ключ".encode(), b"\xff\xfe"):
        answer = await asyncio.to_thread(_raw_get, secured.http.url, header)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    answer = await asyncio.to_thread(_raw_get, secured.http.url, f"Bearer {TOKEN}".encode())
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def test_cli_commands_send_the_token(secured: LogServer, tmp_path: Path) -> None:
    url = secured.http.url
    log = tmp_path / "app.log"
    log.write_text("hello 1\nhello 2\n")

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        return gyro("logs", *args, env=env)

    code, _, err = await asyncio.to_thread(run, "stats", "--url", url, "--json")
    assert code != 0 and "401" in err and "--token" in err and err.count("\n") == 1
    code, _, err = await asyncio.to_thread(
        run, "ship", str(log), "--url", url, "--once", "--label", "job=app"
    )
    assert code != 0 and "refused the bearer token" in err and err.count("\n") == 1
    code, _, err = await asyncio.to_thread(
        run, "ship", str(log), "--url", url, "--once", "--label", "job=app", "--token", TOKEN
    )
    assert code == 0 and "shipped 2 lines" in err
    env = {"GYRO_LOGS_TOKEN": TOKEN}
    code, out, err = await asyncio.to_thread(run, "stats", "--url", url, "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["records"] == 2
    code, out, err = await asyncio.to_thread(
        run, "query", '{job="app"}', "--url", url, "--json", "--token", TOKEN
    )
    assert code == 0, err
    assert sorted(v[1] for s in json.loads(out)["result"] for v in s["values"]) == [
        "hello 1",
        "hello 2",
    ]
    code, out, err = await asyncio.to_thread(run, "tail", '{job="app"}', "--url", url, env=env)
    assert code == 0, err
    assert "hello 2" in out
    code, out, err = await asyncio.to_thread(run, "prove", "1", "--url", url, env=env)
    assert code == 0, err
    assert json.loads(out)["leaf_index"] == 1
    code, out, err = await asyncio.to_thread(
        run, "prove", "0", "--since-size", "1", "--url", url, env=env
    )
    assert code == 0, err
    assert json.loads(out)["first"] == 1
    code, _, err = await asyncio.to_thread(run, "prove", "7", "--url", url, env=env)
    assert code != 0 and "HTTP 400: record 7 does not exist" in err


# -- files -------------------------------------------------------------------------------------


def _write_key(store_dir: Path, data: bytes) -> Path:
    key = store_dir / "checkpoints" / "checkpoint.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(data)
    return key


@pytest.mark.parametrize("data", [b"", b"-----BEGIN PRIVATE KEY-----\ngarbled\n", b"\x00" * 40])
def test_bad_checkpoint_key_is_one_line(tmp_path: Path, data: bytes) -> None:
    key = _write_key(tmp_path / "logs", data)
    with pytest.raises(LogStoreError) as info:
        LogStore(tmp_path / "logs", checkpoint_every=0).open()
    message = str(info.value)
    assert str(key) in message and "restore it from a backup" in message
    assert "\n" not in message
    code, _, err = gyro("logs", "redact", "0", "--data-dir", str(tmp_path))
    assert code != 0 and err.count("\n") == 1 and str(key) in err


def test_checkpoint_key_is_private_and_pub_is_rewritten_when_torn(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs", checkpoint_every=0).open()
    store.close()
    directory = tmp_path / "logs" / "checkpoints"
    key, pub = directory / "checkpoint.key", directory / "checkpoint.pub"
    assert key.stat().st_mode & 0o777 == 0o600
    good = pub.read_text()
    assert good.startswith("-----BEGIN PUBLIC KEY-----")
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []  # no temp files
    pub.write_text("")  # as a crash during the old in-place write left it
    LogStore(tmp_path / "logs", checkpoint_every=0).open().close()
    assert pub.read_text() == good


def test_ship_directory_and_missing_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = "http://127.0.0.1:9"  # never contacted: both fail before sending
    code, _, err = gyro("logs", "ship", str(tmp_path), "--url", url, "--once")
    assert code != 0 and err.count("\n") == 1 and "is a directory" in err
    missing = tmp_path / "missing.log"
    code, _, err = gyro("logs", "ship", str(missing), "--url", url, "--once")
    assert code != 0 and err.count("\n") == 1 and "no such file" in err
    shipper = Shipper(missing, url, {"job": "x"}, tmp_path / "pos")
    with caplog.at_level(logging.WARNING, logger="gyroscope.logs._ship"):
        assert shipper.run(follow=True, poll=0.01, max_seconds=0.2) == 0
    waits = [r for r in caplog.records if "waiting for it to appear" in r.getMessage()]
    assert len(waits) == 1  # once, not once per poll
    with pytest.raises(BadInputError, match="is a directory"):
        Shipper(tmp_path, url, {"job": "x"}, tmp_path / "pos2").run(follow=True, max_seconds=1)
