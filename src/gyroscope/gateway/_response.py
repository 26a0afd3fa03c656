"""Bytes of response heads and the gateway's own error bodies."""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

__all__ = [
    "HOP_BY_HOP",
    "connection_listed",
    "error_body",
    "forwarded_headers",
    "render_head",
    "render_simple_head",
]

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded. (Framing is redone per hop.)
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    }
)

_STATUS_LINES: Final = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus
}
_date: Final[list[object]] = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if _date[0] != now:
        _date[0] = now
        _date[1] = b"date: %s\r\n" % formatdate(now, usegmt=True).encode()
    value = _date[1]
    assert isinstance(value, bytes)
    return value


def connection_listed(value: bytes) -> set[bytes] | None:
    """The header names a Connection header lists, hop-by-hop for this hop too; None for a bare
    keep-alive or close.

    >>> sorted(connection_listed(b"Keep-Alive, X-Secret"))
    [b'keep-alive', b'x-secret']
    """
    lowered = value.lower()
    if lowered in (b"keep-alive", b"close"):
        return None
    return {t.strip() for t in lowered.split(b",")}


def forwarded_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes]], bytes | None, bytes | None, bool, bool]:
    """A replica's headers as the client gets them, in one pass: (headers to forward,
    Content-Length, Content-Type, the body is encoded, the body is chunked).

    Hop-by-hop headers stay behind, and so do those the Connection header names; Content-Length
    and X-Request-Id are set by the gateway itself.

    >>> forwarded_headers([(b"connection", b"x-a"), (b"x-a", b"1"), (b"content-length", b"2"),
    ...                    (b"x-b", b"2")])
    ([(b'x-b', b'2')], b'2', None, False, False)
    """
    content_length = content_type = None
    encoded = chunked = False
    out: list[tuple[bytes, bytes]] = []
    listed: set[bytes] | None = None  # headers the Connection header names as hop-by-hop
    for name, value in headers:
        if name in HOP_BY_HOP:
            if name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                listed = connection_listed(value) or listed
            continue
        if name == b"content-length":
            content_length = value
            continue
        if name == b"content-type":
            content_type = value
        elif name == b"x-request-id":
            continue
        elif name == b"content-encoding":
            encoded = True
        out.append((name, value))
    if listed:
        out = [h for h in out if h[0] not in listed]
    return out, content_length, content_type, encoded, chunked


def render_head(
    status: int,
    headers: list[tuple[bytes, bytes]],
    content_length: bytes | None,
    chunked: bool,
    keep_alive: bool,
    request_id: bytes,
) -> bytes:
    """The status line and headers, with framing, connection and request id headers added."""
    line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
    parts = [line]
    has_date = False
    for name, value in headers:
        if name == b"date":
            has_date = True
        parts += (name, b": ", value, b"\r\n")
    if not has_date:
        parts.append(_date_header())
    if content_length is not None:
        parts += (b"content-length: ", content_length, b"\r\n")
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    if request_id:
        parts += (b"x-request-id: ", request_id, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def render_simple_head(
    status: int, block: bytes, has_date: bool, keep_alive: bool, request_id: bytes, body: bytes
) -> bytes:
    """A head around a plain upstream header ``block`` that already carries Content-Length,
    followed by the first ``body`` bytes: one bytes object for one write, without copying the
    head a second time to append the body."""
    line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
    date = b"" if has_date else _date_header()
    close = b"" if keep_alive else b"connection: close\r\n"
    return b"%b%b%b%bx-request-id: %b\r\n\r\n%b" % (line, block, date, close, request_id, body)


def error_body(status: int, message: str) -> bytes:
    """An OpenAI-style error object, so LLM clients show the reason."""
    kind = "rate_limit_exceeded" if status == 429 else "gateway_error"
    return json.dumps(
        {"error": {"message": message, "type": kind, "code": status}}, separators=(",", ":")
    ).encode()
