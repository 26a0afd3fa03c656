"""``gyro backup serve``: the scheduler alone, with its metrics and health on a small HTTP server."""

from __future__ import annotations

import json

from gyroscope.backup._config import BackupConfig
from gyroscope.backup._service import BackupScheduler
from gyroscope.core import (
    HttpServer,
    Request,
    Response,
    StreamResponse,
    default_data_dir,
    metrics_response,
    parse_host_port,
    run,
    run_alone,
)

__all__ = ["serve_alone"]


def serve_alone(config: BackupConfig, listen: str) -> None:
    host, port = parse_host_port(listen)
    scheduler = BackupScheduler(config, data_dir=default_data_dir())

    async def handler(request: Request) -> Response | StreamResponse:
        if request.path == "/metrics":
            return metrics_response(scheduler.registry)
        if request.path == "/healthz":
            health = scheduler.health()
            status = 200 if health.status == "ok" else 503
            body = json.dumps(health.as_dict()).encode()
            return Response(body, status=status, headers=[("content-type", "application/json")])
        return Response(b"not found\n", status=404)

    async def main() -> None:
        server = HttpServer(handler, host=host, port=port, name="backup", check_host=True)
        await server.start()
        try:
            await run_alone(scheduler)
        finally:
            await server.stop()

    run(main())
