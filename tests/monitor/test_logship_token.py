"""Alert events reach a log server that requires its token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from gyroscope.logs import LogServer
from gyroscope.monitor import MonitorConfig
from gyroscope.monitor._logship import LogShipper
from tests.logs.conftest import running_log_server

TOKEN = "logs-t0ken"


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[LogServer]:
    async with running_log_server(tmp_path / "logs", token=TOKEN) as server:
        yield server


async def test_events_are_shipped_with_the_token_and_kept_without_it(secured: LogServer) -> None:
    event = {"event": "firing", "time": 1_700_000_000.0, "alert": "ReplicaDown"}
    async with httpx.AsyncClient() as client:
        without = LogShipper(secured.url, client)
        without.add([event])
        await without.flush()
        assert without.failing and len(without.queue) == 1  # refused (401), kept for a retry

        shipper = LogShipper(secured.url, client, token=SecretStr(TOKEN))
        shipper.add([event])
        await shipper.flush()
        assert not shipper.failing and not shipper.queue
        found = await client.get(
            f"{secured.url}/loki/api/v1/query_range",
            params={"query": '{job="gyro-monitor"}', "start": "0"},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    assert "ReplicaDown" in found.text


def test_the_token_is_a_secret_in_the_config() -> None:
    cfg = MonitorConfig.model_validate(
        {"alerting": {"log_store_url": "http://127.0.0.1:3100", "log_store_token": TOKEN}}
    )
    assert TOKEN not in cfg.model_dump_json()
