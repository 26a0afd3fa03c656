"""Database checks against real servers: MariaDB from scripts/services.sh (the MySQL check).

Failure is a sample, never an exception: wrong password, server down and a server that accepts
the connection but never answers all give ``db_up 0`` and a one-line reason without the password.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from gyroscope.monitor import MonitorConfig, MonitorService
from gyroscope.monitor._checks import check_database
from gyroscope.monitor._config import DatabaseCheck
from gyroscope.monitor._dbchecks import mysql_target
from gyroscope.testing import free_port, require_server

MYSQL_URL = os.environ.get("GYRO_TEST_MYSQL_URL", "mysql://gyro:gyro-test@127.0.0.1:13306/")
MYSQL_ADDRESS = "127.0.0.1:13306"


def _mysql(dsn: str | None = None, **kw: Any) -> DatabaseCheck:
    return DatabaseCheck(
        name="shop",
        kind="mysql",
        address=MYSQL_ADDRESS,
        dsn=SecretStr(dsn or MYSQL_URL),
        **kw,
    )


def _values(samples: list[tuple[tuple[tuple[str, str], ...], float]]) -> dict[str, float]:
    return {dict(labels)["__name__"]: value for labels, value in samples}


@pytest.fixture
def mysql() -> None:
    require_server("mysql", "127.0.0.1", 13306)


async def test_mysql_check_reports_up_latency_and_status(mysql: None) -> None:
    first, reason = await check_database(_mysql())
    assert reason == ""
    got = _values(first)
    assert got["db_up"] == 1.0
    assert 0 < got["db_mysql_select_seconds"] <= got["db_query_seconds"]
    assert got["db_mysql_threads_connected"] >= 1 and got["db_mysql_threads_running"] >= 1
    assert got["db_mysql_uptime_seconds"] >= 0 and got["db_mysql_slow_queries_total"] >= 0
    labels = dict(first[0][0])
    assert labels == {
        "__name__": "db_up",
        "job": "shop",
        "instance": MYSQL_ADDRESS,
        "kind": "mysql",
    }
    second = _values((await check_database(_mysql()))[0])
    # our own SELECT 1 and SHOW STATUS were counted: the counters move forward
    assert second["db_mysql_questions_total"] > got["db_mysql_questions_total"]
    assert second["db_mysql_connections_total"] > got["db_mysql_connections_total"]


async def test_mysql_wrong_password_is_down_with_reason(mysql: None) -> None:
    samples, reason = await check_database(
        _mysql(MYSQL_URL.replace("gyro-test", "not-the-password"))
    )
    assert _values(samples) == {"db_up": 0.0}
    assert reason.startswith(f"mysql {MYSQL_ADDRESS}: Access denied for user 'gyro'")
    assert "(error 1045)" in reason and "not-the-password" not in reason


async def test_mysql_server_down_is_a_sample() -> None:
    port = free_port()
    samples, reason = await check_database(_mysql(f"mysql://gyro:x@127.0.0.1:{port}/", timeout=5))
    assert _values(samples) == {"db_up": 0.0}
    assert "Can't connect" in reason


async def test_mysql_server_that_never_answers_times_out() -> None:
    """A server that accepts and then says nothing (hung, SIGSTOPped) must not hang the check."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        samples, reason = await check_database(
            _mysql(f"mysql://gyro:x@127.0.0.1:{port}/", timeout=1)
        )
    assert _values(samples) == {"db_up": 0.0}
    assert "no answer within 1s" in reason or "Lost connection" in reason


def test_mysql_dsn_parsing() -> None:
    t = mysql_target(_mysql("mysql://app%40x:p%3Ass@[::1]:3307/shop"))
    assert (t.host, t.port, t.user, t.password, t.database) == (
        "::1",
        3307,
        "app@x",
        "p:ss",
        "shop",
    )
    t = mysql_target(DatabaseCheck(name="d", kind="mysql", address="10.0.0.5:3306"))
    assert (t.host, t.port, t.user, t.password, t.database) == ("10.0.0.5", 3306, "root", "", None)


async def test_bad_dsn_scheme_is_a_clear_reason() -> None:
    samples, reason = await check_database(_mysql("postgres://u:p@127.0.0.1:1/x"))
    assert _values(samples) == {"db_up": 0.0}
    assert "dsn must look like mysql://" in reason and "u:p" not in reason


@pytest.fixture
async def monitor(tmp_path: Path, mysql: None) -> AsyncIterator[MonitorService]:
    bad = MYSQL_URL.replace("gyro-test", "wrong")
    cfg = MonitorConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "host": {"enabled": False},
            "databases": [
                {
                    "name": "good",
                    "kind": "mysql",
                    "address": MYSQL_ADDRESS,
                    "dsn": MYSQL_URL,
                    "interval": "1s",
                },
                {
                    "name": "bad",
                    "kind": "mysql",
                    "address": MYSQL_ADDRESS,
                    "dsn": bad,
                    "interval": "1s",
                },
            ],
        }
    )
    service = MonitorService(cfg, tmp_path / "data")
    await service.start()
    yield service
    await service.stop(1.0)


async def test_service_stores_db_up_and_shows_the_reason(monitor: MonitorService) -> None:
    async with httpx.AsyncClient(base_url=monitor.url) as client:

        async def probes() -> dict[str, Any]:
            data = (await client.get("/api/v1/probes")).json()["data"]
            return {p["name"]: p for p in data}

        seen: dict[str, Any] = {}

        async def both() -> bool:
            seen.update(await probes())
            return {"good", "bad"} <= seen.keys()

        deadline = asyncio.get_running_loop().time() + 30
        while not await both():
            assert asyncio.get_running_loop().time() < deadline, "database checks never ran"
            await asyncio.sleep(0.1)
        assert seen["good"]["success"] is True and seen["good"]["error"] is None
        assert seen["bad"]["success"] is False and "Access denied" in seen["bad"]["error"]
        assert "wrong" not in seen["bad"]["error"]
        result = (await client.get("/api/v1/query", params={"query": "db_up"})).json()
        ups = {r["metric"]["job"]: r["value"][1] for r in result["data"]["result"]}
        assert ups == {"good": "1", "bad": "0"}
        # the CLI shows the same: which check fails and why
        from click.testing import CliRunner

        from gyroscope.cli.monitor import monitor as cli

        # in a thread: the CLI blocks, and the monitor answers from this event loop
        out = await asyncio.to_thread(CliRunner().invoke, cli, ["probes", "--url", monitor.url])
        assert out.exit_code == 0, out.output
        lines = {line.split()[2]: line for line in out.output.splitlines()}
        assert lines["good"].startswith("ok    mysql")
        assert lines["bad"].startswith("FAIL  mysql") and "Access denied" in lines["bad"]
