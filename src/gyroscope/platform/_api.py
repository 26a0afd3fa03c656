"""The platform's own HTTP API: ``/healthz``, ``/metrics``, ``/metrics/<service>``, ``/v1/services``,
``/v1/reload``.

When ``platform.token`` is set, every request must carry ``Authorization: Bearer <token>``; the
config refuses a non-loopback address without one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gyroscope import __version__
from gyroscope.core import Request, Response, StreamResponse, bearer_ok, metrics_response

if TYPE_CHECKING:
    from gyroscope.platform._daemon import Daemon

__all__ = ["platform_handler"]


def platform_handler(daemon: Daemon) -> Callable[[Request], Awaitable[Response | StreamResponse]]:
    """The request handler for ``daemon``'s API server."""

    def authorized(request: Request) -> bool:
        token = daemon.config.platform.token
        if token is None or not token.get_secret_value():
            return True  # an empty token is none (and is refused off loopback by the config)
        return bearer_ok(request.headers.get("authorization", ""), token.get_secret_value())

    async def healthz(_: Request) -> Response:
        report = daemon.health_report()
        return Response.json(report, status=503 if report["status"] == "down" else 200)

    async def metrics(_: Request) -> Response:
        return metrics_response(daemon.registry)

    async def services(_: Request) -> Response:
        return Response.json({"services": daemon.health_report()["services"]})

    async def reload(_: Request) -> Response:
        accepted = await daemon.reload()
        body = {"reloaded": accepted, "error": daemon.last_reload_error}
        return Response.json(body, status=200 if accepted else 409)

    async def index(_: Request) -> Response:
        endpoints = [f"{method} {path}" for method, path in routes]
        return Response.json({"gyroscope": __version__, "endpoints": endpoints})

    routes: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]] = {
        ("GET", "/healthz"): healthz,
        ("HEAD", "/healthz"): healthz,
        ("GET", "/metrics"): metrics,
        ("GET", "/v1/services"): services,
        ("POST", "/v1/reload"): reload,
        ("GET", "/"): index,
    }
    paths = {path for _, path in routes}

    def service_metrics(request: Request) -> Response:
        # Services without a listener of their own (the backup scheduler) are scraped here:
        # /metrics/<service name>. Each registry stays separate, so names never collide.
        name = request.path.removeprefix("/metrics/")
        running = daemon.running.get(name)
        registry = getattr(running[1], "registry", None) if running else None
        if registry is None:
            return Response.error(404, f"no service {name!r} with metrics (see /v1/services)")
        return metrics_response(registry)

    async def handle(request: Request) -> Response | StreamResponse:
        if not authorized(request):
            return Response.error(401, "missing or wrong bearer token")
        route = routes.get((request.method, request.path))
        if route is not None:
            return await route(request)
        if request.method == "GET" and request.path.startswith("/metrics/"):
            return service_metrics(request)
        if request.path in paths:
            return Response.error(405, f"{request.method} is not allowed on {request.path}")
        return Response.error(404, f"no such endpoint: {request.path}")

    return handle
