"""The messages of the HTTP kernel: ``Request``, ``Response``, ``StreamResponse``, ``Handler``.

>>> Response.json({"ok": True}).body
b'{"ok":true}'
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from gyroscope.core._websocket import WebSocketResponse

if TYPE_CHECKING:
    from gyroscope.core._http import Connection

__all__ = ["REASONS", "Handler", "Request", "Response", "StreamResponse", "date_header"]

REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_date_cache: tuple[int, bytes] = (0, b"")


def date_header() -> bytes:
    global _date_cache  # noqa: PLW0603 - a per-second cache shared by every connection
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


class Request:
    """One parsed HTTP request. Header names are lower-case.

    ``websocket`` is true when the request is a WebSocket handshake the kernel has checked: the
    handler may answer it with a ``WebSocketResponse``.
    """

    __slots__ = (
        "body",
        "client",
        "conn",
        "headers",
        "method",
        "path",
        "query",
        "version",
        "websocket",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        version: str,
        conn: Connection,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.version = version
        self.conn = conn
        self.client = conn.peer
        self.websocket = False

    def json(self) -> Any:
        """The body decoded as JSON; raises ``ValueError`` when it is not."""
        return json.loads(self.body or b"null")

    def query_params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)


class Response:
    """A complete response with a body known in advance."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, body: bytes = b"", *, status: int = 200, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []

    @classmethod
    def json(
        cls, obj: Any, *, status: int = 200, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        body = json.dumps(obj, separators=(",", ":")).encode()
        return cls(
            body, status=status, headers=[("content-type", "application/json"), *(headers or [])]
        )

    @classmethod
    def text(
        cls, text: str, *, status: int = 200, content_type: str = "text/plain; charset=utf-8"
    ) -> Response:
        return cls(text.encode(), status=status, headers=[("content-type", content_type)])

    @classmethod
    def error(cls, status: int, message: str) -> Response:
        return cls.json({"error": {"message": message, "code": status}}, status=status)


class StreamResponse:
    """A response whose body is produced piece by piece and sent chunked (for SSE and large bodies)."""

    __slots__ = ("chunks", "headers", "status")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.chunks = chunks
        self.headers = headers or []


Handler = Callable[[Request], Awaitable[Response | StreamResponse | WebSocketResponse]]
