"""``gyro backup serve``: the scheduler alone, with its metrics and health on a small HTTP server.

Loopback by default. With a token (``--token-file`` or ``$GYRO_BACKUP_SERVE_TOKEN``) every request
must carry ``Authorization: Bearer <token>``; listening beyond loopback without one is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gyroscope.backup._config import BackupConfig
from gyroscope.backup._service import BackupScheduler
from gyroscope.core import (
    HttpServer,
    Request,
    Response,
    StreamResponse,
    bearer_ok,
    default_data_dir,
    metrics_response,
    parse_host_port,
    require_token_when_exposed,
    run,
    run_alone,
)
from gyroscope.errors import ConfigError

__all__ = ["TOKEN_ENV", "authorized", "check_listen", "read_token", "serve_alone"]

TOKEN_ENV = "GYRO_BACKUP_SERVE_TOKEN"  # noqa: S105 - the name of the variable, not a secret


def read_token(token_file: Path | None) -> str | None:
    """The token from ``token_file`` (first line, stripped), else ``$GYRO_BACKUP_SERVE_TOKEN``."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        token = token_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ConfigError(f"cannot read the token file: {why}", path=token_file) from None
    if not token:
        raise ConfigError("the token file is empty", path=token_file)
    return token


def check_listen(listen: str, token: str | None) -> tuple[str, int]:
    """``(host, port)`` of ``listen``; a ConfigError (one line, exit 2) if it is not host:port or
    is beyond loopback without a token."""
    try:
        host, port = parse_host_port(listen)
    except ValueError as exc:
        raise ConfigError(str(exc), key="--listen") from None
    try:
        require_token_when_exposed(listen, token, what="backup serve", key="token", env=TOKEN_ENV)
    except ValueError:
        raise ConfigError(
            f"serving /metrics and /healthz on {host} (not loopback) needs a token: pass "
            f"--token-file FILE or set ${TOKEN_ENV} (or listen on 127.0.0.1)",
            key="--listen",
        ) from None
    return host, port


def authorized(request: Request, token: bytes) -> bool:
    """True if the request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    return bearer_ok(request.headers.get("authorization", ""), token)


def serve_alone(config: BackupConfig, listen: str, token: str | None = None) -> None:
    host, port = check_listen(listen, token)
    secret = token.encode() if token else None
    scheduler = BackupScheduler(config, data_dir=default_data_dir())

    async def handler(request: Request) -> Response | StreamResponse:
        if secret is not None and not authorized(request, secret):
            response = Response.error(401, "missing or wrong bearer token")
            response.headers.append(("www-authenticate", 'Bearer realm="gyro backup"'))
            return response
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
