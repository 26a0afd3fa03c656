"""The HTTP control API of a fault proxy (served by ``gyroscope.core.HttpServer``).

=======  ==========  ==========================================================
GET      /faults     the faults in force, as JSON
POST     /faults     merge a JSON object of fault fields; answers the new faults
DELETE   /faults     clear every fault
POST     /cut        reset every open connection; answers ``{"cut": N}``
GET      /stats      connection and byte counters
GET      /health     the proxy's health report
GET      /metrics    Prometheus metrics
=======  ==========  ==========================================================

Bad input gets ``400`` with one message naming the field; with a token configured, every request
must carry ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from gyroscope.chaos._faults import Faults
from gyroscope.core import Handler, Request, Response, StreamResponse, bearer_ok, metrics_response
from gyroscope.errors import ProxyError

if TYPE_CHECKING:
    from gyroscope.chaos._proxy import FaultProxy

__all__ = ["control_handler"]

_ROUTES = {
    "/faults": ("GET", "POST", "DELETE"),
    "/cut": ("POST",),
    "/stats": ("GET",),
    "/health": ("GET",),
    "/metrics": ("GET",),
}


def control_handler(proxy: FaultProxy) -> Handler:
    """The request handler for ``proxy``'s control API."""

    async def handle(request: Request) -> Response | StreamResponse:
        if proxy.control_token and not _authorized(request, proxy.control_token):
            return Response.error(401, "missing or wrong token (send Authorization: Bearer TOKEN)")
        path = request.path.rstrip("/") or "/"
        methods = _ROUTES.get(path)
        if methods is None:
            return Response.error(404, f"no such endpoint {path}; try /faults, /cut or /stats")
        if request.method not in methods:
            return Response.error(
                405, f"{request.method} {path} is not allowed; use {', '.join(methods)}"
            )
        try:
            return _dispatch(proxy, request.method, path, request.body)
        except ProxyError as exc:
            return Response.error(400, str(exc))

    return handle


_SIMPLE: dict[tuple[str, str], Callable[[FaultProxy], Response]] = {
    ("GET", "/stats"): lambda proxy: Response.json(proxy.stats().as_dict()),
    ("GET", "/health"): lambda proxy: Response.json(proxy.health().as_dict()),
    ("GET", "/metrics"): lambda proxy: metrics_response(proxy.registry),
    ("POST", "/cut"): lambda proxy: Response.json({"cut": proxy.cut()}),
    ("GET", "/faults"): lambda proxy: Response.json(proxy.faults.model_dump()),
    ("DELETE", "/faults"): lambda proxy: Response.json(proxy.clear_faults().model_dump()),
}


def _dispatch(proxy: FaultProxy, method: str, path: str, body: bytes) -> Response:
    simple = _SIMPLE.get((method, path))
    if simple is not None:
        return simple(proxy)
    try:  # POST /faults: merge the given fields
        fields = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProxyError(f"faults: the body is not valid JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise ProxyError(f"faults: expected a JSON object of fault fields, got {fields!r}")
    return Response.json(proxy.set_faults(Faults.parse(fields, base=proxy.faults)).model_dump())


def _authorized(request: Request, token: str) -> bool:
    return bearer_ok(request.headers.get("authorization", ""), token)
