"""The access log names query parameters but never their values (a query may carry an API key)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest


async def test_query_values_stay_out_of_the_access_log(
    echo, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await gateway([echo])
    caplog.set_level(logging.INFO, logger="gyroscope.gateway.access")
    async with httpx.AsyncClient(base_url=gw.url) as client:
        answer = await client.get("/v1/models?api_key=QSECRET&limit=5")
    assert answer.status_code == 200
    assert answer.json()["path"] == "/v1/models"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    assert [line["path"] for line in lines] == ["/v1/models?api_key=…&limit=…"]
    assert "QSECRET" not in caplog.text
