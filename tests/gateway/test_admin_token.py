"""The admin token: an empty one is no token, and a reload rotates it at once."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from gyroscope.gateway import GatewayConfig


def test_an_empty_token_does_not_expose_the_admin_api() -> None:
    with pytest.raises(ValidationError, match="needs admin_token"):
        GatewayConfig.model_validate({"admin": "0.0.0.0:8081", "admin_token": ""})
    GatewayConfig.model_validate({"admin": "0.0.0.0:8081", "admin_token": "t0ken"})


async def test_reload_rotates_the_admin_token(demos, gateway) -> None:
    (server,) = await demos(1)
    gw = await gateway([server], admin_token="old-token")
    async with httpx.AsyncClient(base_url=gw.admin.url) as admin:
        old = {"authorization": "Bearer old-token"}
        new = {"authorization": "Bearer new-token"}
        assert (await admin.get("/v1/backends", headers=old)).status_code == 200
        await gw.reload(_with_token(gw.config, "new-token"))
        assert (await admin.get("/v1/backends", headers=old)).status_code == 401
        assert (await admin.get("/v1/backends", headers=new)).status_code == 200
        # an empty token on loopback: the admin API is open, as with no token at all
        await gw.reload(_with_token(gw.config, ""))
        assert (await admin.get("/v1/backends")).status_code == 200


def _with_token(config: GatewayConfig, token: str) -> GatewayConfig:
    return GatewayConfig.model_validate({**config.model_dump(), "admin_token": token})
