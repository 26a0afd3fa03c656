"""The access log: query values never written (a query may carry an API key), and its switches
(config, reload, the log level) applying without requests asking logging each time."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

ACCESS = "gyroscope.gateway.access"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """The access-log lines captured so far, as the JSON objects they are."""
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS]


async def test_query_values_stay_out_of_the_access_log(
    echo, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    gw = await gateway([echo])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        answer = await client.get("/v1/models?api_key=QSECRET&limit=5")
    assert answer.status_code == 200
    assert answer.json()["path"] == "/v1/models"
    assert [line["path"] for line in access_lines(caplog)] == ["/v1/models?api_key=…&limit=…"]
    assert "QSECRET" not in caplog.text


async def test_an_access_log_level_set_at_run_time_applies_within_a_sweep(
    echo, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests read a flag the sweeper refreshes, instead of asking logging each time."""
    caplog.set_level(logging.WARNING, logger=ACCESS)
    gw = await gateway([echo])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/quiet")).status_code == 200
        assert access_lines(caplog) == []
        caplog.set_level(logging.INFO, logger=ACCESS)
        for _ in range(50):  # bounded: 50 x 0.1 s
            assert (await client.get("/heard")).status_code == 200
            if access_lines(caplog):
                break
            await asyncio.sleep(0.1)
    paths = [line["path"] for line in access_lines(caplog)]
    assert paths and set(paths) == {"/heard"}


async def test_a_reload_turns_the_access_log_off(
    echo, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    gw = await gateway([echo])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/before")).status_code == 200
        await gw.reload(gw.config.model_copy(update={"access_log": False}))
        assert (await client.get("/after")).status_code == 200
    assert [line["path"] for line in access_lines(caplog)] == ["/before"]


async def test_requests_do_not_ask_logging_each_time(echo, gateway, monkeypatch) -> None:
    """Logging is asked once per sweep (0.1 s), however many requests pass meanwhile."""
    from gyroscope.gateway._extras import access_log

    gw = await gateway([echo])
    asked = 0
    real = access_log.isEnabledFor

    def counting(level: int) -> bool:
        nonlocal asked
        asked += 1
        return real(level)

    monkeypatch.setattr(access_log, "isEnabledFor", counting)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for _ in range(200):
            assert (await client.get("/x")).status_code == 200
    sweeps = (loop.time() - started) / 0.1 + 2
    assert asked <= sweeps, (asked, sweeps)
