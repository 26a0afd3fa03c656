"""A reload applies the new limits and timeouts to everything that reads them, at once."""

from __future__ import annotations

import asyncio
from typing import Any

from gyroscope.gateway import GatewayConfig


def _changed(config: GatewayConfig, **sections: dict[str, Any]) -> GatewayConfig:
    data = config.model_dump()
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    return GatewayConfig.model_validate(data)


async def _status(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return (await asyncio.wait_for(reader.readline(), 10)).strip()
    finally:
        writer.close()


async def test_a_reloaded_header_limit_applies_to_plain_requests(echo, gateway):
    gw = await gateway([echo])
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n"
    assert await _status(gw.port, big) == b"HTTP/1.1 200 OK"
    await gw.reload(_changed(gw.config, limits={"max_header_bytes": 1024}))
    assert (await _status(gw.port, big)).startswith(b"HTTP/1.1 431 ")


async def test_reloaded_pool_limits_reach_existing_and_new_replicas(echo, gateway):
    gw = await gateway([echo])
    config = _changed(
        gw.config, limits={"max_idle_per_backend": 3}, timeouts={"upstream_keepalive": 7.5}
    )
    data = config.model_dump()
    data["backends"] = [*data["backends"], {"name": "late", "address": "127.0.0.1:9"}]
    await gw.reload(GatewayConfig.model_validate(data))
    pools = {ep.name: ep.pool for ep in gw.endpoints}
    assert set(pools) == {gw.endpoints[0].name, "late"}
    assert {(p.max_idle, p.keepalive) for p in pools.values()} == {(3, 7.5)}
