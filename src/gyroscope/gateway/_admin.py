"""The admin HTTP API, on its own (loopback by default) port; a bearer token when one is set.

GET    /v1/backends                     list replicas with their state
POST   /v1/backends                     add {"name", "address", "weight", "max_concurrent"}
DELETE /v1/backends/NAME?timeout=30     drain, wait for in-flight requests, remove
POST   /v1/backends/NAME/weight         {"weight": 3}
POST   /v1/backends/NAME/drain          {"draining": true}   (false puts it back)
POST   /v1/reload                       re-read the config file the gateway was started with
GET    /metrics, GET /health

With several workers, worker 0's ``/metrics`` adds up every worker's numbers (see ``_aggregate``);
each other worker's own admin port still shows its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from gyroscope.core import (
    HttpServer,
    JsonCallError,
    Request,
    Response,
    bearer_ok,
    call_json,
    format_validation_error,
    metrics_response,
)
from gyroscope.core import parse_host_port as _hp
from gyroscope.errors import GyroscopeError
from gyroscope.gateway._aggregate import PEER_HEADER, PeerMetricsError, gather_metrics
from gyroscope.gateway._config import BackendConfig
from gyroscope.gateway._errors import AdminApiError, UnknownBackendError

if TYPE_CHECKING:
    from gyroscope.gateway._gateway import Gateway

__all__ = ["AdminApi", "admin_token_bytes", "call_admin"]

log = logging.getLogger(__name__)


class AdminApi:
    """Runtime control of one gateway."""

    def __init__(self, gateway: Gateway, listen: str, token: SecretStr | None) -> None:
        host, port = _hp(listen)
        self.gateway = gateway
        self.token = admin_token_bytes(token)
        self.config_path: Path | None = None
        self.reloader: Callable[[], Awaitable[None]] | None = None
        self.peers: list[str] = []  # other workers' admin URLs: changes are forwarded to them
        self.server = HttpServer(
            self.handle, host=host, port=port, name=f"{gateway.name}-admin", check_host=True
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(grace=1.0)

    async def handle(self, request: Request) -> Response:
        if self.token is not None and request.path != "/health" and not self._authorized(request):
            return Response.error(401, "missing or wrong bearer token")
        try:
            response = await self._route(request)
            forward = self.peers and PEER_HEADER not in request.headers
            if forward and request.method != "GET" and response.status < 300:
                await self._forward(request)
            return response
        except GyroscopeError as exc:
            status = 404 if isinstance(exc, UnknownBackendError) else 409
            return Response.error(status, str(exc))
        except ValidationError as exc:
            return Response.error(400, str(format_validation_error(exc, None)))
        except (ValueError, TypeError) as exc:
            return Response.error(400, f"bad request: {exc}")

    def _authorized(self, request: Request) -> bool:
        return self.token is not None and bearer_ok(
            request.headers.get("authorization", ""), self.token
        )

    async def _route(self, request: Request) -> Response:  # noqa: PLR0911 - one return per endpoint
        gw, method = self.gateway, request.method
        parts = [p for p in request.path.split("/") if p]
        if request.path == "/health":
            return Response.json(gw.health().as_dict())
        if request.path == "/metrics":
            return await self._metrics(request)
        if parts[:2] != ["v1", "backends"]:
            if parts == ["v1", "reload"] and method == "POST":
                return await self._reload()
            return Response.error(404, f"no such endpoint: {method} {request.path}")
        if len(parts) == 2:
            if method == "GET":
                return Response.json({"backends": gw.backends()})
            if method == "POST":
                cfg = BackendConfig.model_validate(_body(request))
                gw.add_backend(cfg)
                log.warning("%s: backend %s added at %s", gw.name, cfg.name, cfg.address)
                return Response.json({"added": cfg.name}, status=201)
        elif len(parts) == 3 and method == "DELETE":
            timeout = float(request.query_params().get("timeout", ["30"])[0])
            finished = await gw.remove_backend(parts[2], wait=timeout)
            log.warning("%s: backend %s removed", gw.name, parts[2])
            return Response.json({"removed": parts[2], "drained": finished})
        elif len(parts) == 4 and method in ("POST", "PUT"):
            return self._change(parts[2], parts[3], _body(request))
        return Response.error(405, f"method {method} not allowed on {request.path}")

    async def _metrics(self, request: Request) -> Response:
        own = metrics_response(self.gateway.registry)
        if not self.peers or PEER_HEADER in request.headers:
            return own
        token = self.token.decode() if self.token is not None else None
        try:
            body = await gather_metrics(own.body.decode(), self.peers, token)
        except PeerMetricsError as exc:
            log.error("%s: metrics of all workers unavailable: %s", self.gateway.name, exc)
            return Response.error(503, f"metrics of all workers unavailable: {exc}")
        return Response(body, headers=own.headers)

    async def _forward(self, request: Request) -> None:
        """Apply the same change on every other worker (each has its own replica state)."""
        target = request.path + (f"?{request.query}" if request.query else "")
        token = self.token.decode() if self.token is not None else None
        results = await asyncio.gather(
            *(
                asyncio.to_thread(
                    call_admin,
                    peer + target,
                    request.method,
                    request.body or None,
                    token,
                    60.0,
                    {PEER_HEADER: "1"},
                )
                for peer in self.peers
            ),
            return_exceptions=True,
        )
        for peer, result in zip(self.peers, results, strict=True):
            if isinstance(result, BaseException):
                log.error("%s: forwarding to worker %s failed: %s", self.gateway.name, peer, result)

    def _change(self, name: str, what: str, body: dict[str, Any]) -> Response:
        gw = self.gateway
        if what == "weight":
            weight = body.get("weight")
            if not isinstance(weight, int) or not 0 <= weight <= 1000:
                raise ValueError("weight must be an integer 0-1000")
            gw.set_weight(name, weight)
            return Response.json({"backend": name, "weight": weight})
        if what == "drain":
            draining = bool(body.get("draining", True))
            gw.drain(name, draining)
            return Response.json({"backend": name, "draining": draining})
        return Response.error(404, f"unknown action {what!r} (weight, drain)")

    async def _reload(self) -> Response:
        if self.reloader is None:
            return Response.error(409, "started without a config file: nothing to reload")
        await self.reloader()
        return Response.json({"reloaded": True, "backends": self.gateway.backends()})


def call_admin(
    url: str,
    method: str,
    body: bytes | None,
    token: str | None,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One admin API call (blocking; the CLI uses it, and worker 0 in a thread)."""
    if not url.startswith(("http://", "https://")):
        raise AdminApiError("expected a URL like http://127.0.0.1:8081", url=url)
    try:
        return call_json(url, method, body, token=token, timeout=timeout, headers=headers)
    except JsonCallError as exc:
        if exc.status is not None:
            raise AdminApiError(exc.message or f"HTTP {exc.status}", url=url) from None
        if exc.not_json:
            raise AdminApiError(f"answered something that is not JSON: {exc}", url=url) from None
        raise AdminApiError(
            f"cannot reach the gateway admin API: {exc} (is the gateway running? --admin)",
            url=url,
        ) from None


def _body(request: Request) -> dict[str, Any]:
    data = json.loads(request.body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def admin_token_bytes(token: SecretStr | None) -> bytes | None:
    """The bearer token to require; an empty one (an unset ``${VAR:-}``) is none."""
    value = token.get_secret_value() if token is not None else ""
    return value.encode() if value else None
