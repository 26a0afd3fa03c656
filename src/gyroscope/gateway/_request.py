"""The request head sent to a replica, built in one pass over the client's headers.

Hop-by-hop headers (and any the Connection header names) stay behind; X-Forwarded-For gets the
client appended, X-Forwarded-Proto is set, and X-Request-Id is kept or generated, so one id
follows the request through the gateway's access log, the replica and the response.

>>> head, chunked, expect, _, rid = upstream_head(
...     b"GET", b"/v1/models", [(b"host", b"api"), (b"te", b"trailers")], "10.0.0.1", False,
...     lambda: b"id-1")
>>> head.split(b"\\r\\n")[:3], chunked, expect, rid
([b'GET /v1/models HTTP/1.1', b'host: api', b'x-forwarded-for: 10.0.0.1'], False, False, b'id-1')
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from gyroscope.gateway._memo import ParseMemo, Recent
from gyroscope.gateway._response import HOP_BY_HOP, connection_listed

__all__ = ["PlainRequest", "dechunk", "plain_head", "plain_request", "upstream_head"]

# One complete request with no body, in origin form, HTTP/1.1: what load balancers mostly see
# from keep-alive clients (model listings, health checks, GETs of every kind). Field names are
# RFC 9110 tokens and values visible ASCII, space, tab or obs-text, so no header can hide from
# the scan below; anything else (a body, absolute URIs, odd bytes) goes to httptools.
_PLAIN = re.compile(
    rb"(GET|HEAD|DELETE|OPTIONS) (/[!-~]*) HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*)\r\n"
)
# Headers the gateway must act on: framing and hop-by-hop ones, and the three it rewrites.
_NOT_PLAIN = re.compile(
    rb"\r\n(?:content-length|transfer-encoding|keep-alive|proxy-connection|te|trailer|upgrade"
    rb"|expect|x-forwarded-for|x-forwarded-proto|x-request-id):"
)

# (method, URL, the header lines to forward, each ending in CRLF, the client keeps the connection)
PlainRequest = tuple[bytes, bytes, bytes, bool]


_LONGEST_REMEMBERED: Final = 2048


def plain_request(data: bytes) -> PlainRequest | None:
    """The request ``data`` holds if it is exactly one plain bodiless request, else ``None``.

    It forwards the same head ``upstream_head`` would build from httptools' callbacks, at a
    fraction of the cost: one match, one lowercased copy and a few C-level searches; the verdict
    on request bytes seen lately is remembered (``_memo``).

    >>> plain_request(b"GET /v1/models HTTP/1.1\\r\\nHost: a\\r\\nConnection: close\\r\\n\\r\\n")
    (b'GET', b'/v1/models', b'Host: a\\r\\n', False)
    >>> plain_request(b"POST /v1/completions HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n") is None
    True
    """
    recent = _RECENT
    if data == recent.key:
        return recent.verdict
    if len(data) > _LONGEST_REMEMBERED:
        return _parse(data)
    verdict = _SEEN[data]
    recent.key, recent.verdict = data, verdict
    return verdict


def _parse(data: bytes) -> PlainRequest | None:
    m = _PLAIN.match(data)
    if m is None or m.end() != len(data):
        return None  # not plain, incomplete, or pipelined: httptools handles it
    start, stop = m.span(3)
    lowered = data[start - 2 : stop].lower()  # from the request line's CRLF
    if _NOT_PLAIN.search(lowered) is not None or b"\r\nhost:" not in lowered:
        return None
    block = data[start:stop]
    at = lowered.find(b"\r\nconnection:")
    if at < 0:
        return m[1], m[2], block, True
    eol = lowered.find(b"\r\n", at + 13)
    token = lowered[at + 13 : eol].strip(b" \t")
    if token not in (b"keep-alive", b"close") or lowered.find(b"\r\nconnection:", eol) >= 0:
        return None  # it may name other hop-by-hop headers
    # In ``block`` (two bytes later than ``lowered``) the line with its CRLF is [at, eol).
    return m[1], m[2], block[:at] + block[eol:], token == b"keep-alive"


_SEEN: Final[ParseMemo[PlainRequest | None]] = ParseMemo(_parse)
_RECENT: Final[Recent[PlainRequest | None]] = Recent(None)


def plain_head(
    method: bytes, url: bytes, block: bytes, client_ip: bytes, request_id: bytes
) -> bytes:
    """The upstream head for a ``plain_request``: its headers plus the forwarding ones."""
    return (
        b"%b %b HTTP/1.1\r\n%bx-forwarded-for: %b\r\nx-forwarded-proto: http\r\nx-request-id: %b\r\n\r\n"
        % (method, url, block, client_ip, request_id)
    )


def upstream_head(  # noqa: PLR0912 - one pass over the headers on the hot path
    method: bytes,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    client_ip: str,
    strip_accept_encoding: bool,
    new_request_id: Callable[[], bytes],
) -> tuple[bytes, bool, bool, bytes | None, bytes]:
    """(head, chunked body, Expect: 100-continue, Accept-Encoding taken over, request id)."""
    parts = [method, b" ", url, b" HTTP/1.1\r\n"]
    forwarded_for = b""
    has_host = chunked = expect = False
    accept_encoding: bytes | None = None
    request_id = b""
    listed: set[bytes] | None = None  # headers the Connection header names as hop-by-hop
    for name, value in headers:
        if name in HOP_BY_HOP:
            if name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
            elif name == b"connection":
                listed = connection_listed(value) or listed
            continue
        if name == b"x-forwarded-for":
            forwarded_for = value + b", "
            continue
        if name == b"x-request-id":
            request_id = value[:200]
            continue
        if name == b"host":
            has_host = True
        elif name == b"accept-encoding" and strip_accept_encoding:
            accept_encoding = value  # the gateway compresses; the replica sends identity
            continue
        elif name == b"x-forwarded-proto":
            continue
        parts += (name, b": ", value, b"\r\n")
    if listed:
        parts = _without(parts, listed)
    if not request_id:
        request_id = new_request_id()
    if not has_host:
        parts.append(b"host: gyroscope\r\n")
    parts += (
        b"x-forwarded-for: ",
        forwarded_for,
        client_ip.encode(),
        b"\r\nx-forwarded-proto: http\r\nx-request-id: ",
        request_id,
        b"\r\n",
    )
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), chunked, expect, accept_encoding, request_id


def _without(parts: list[bytes], names: set[bytes]) -> list[bytes]:
    """Drop the headers ``names`` from a head being built as [line, name, ': ', value, CRLF, ...]."""
    kept = parts[:4]
    for i in range(4, len(parts), 4):
        if parts[i] not in names:
            kept += parts[i : i + 4]
    return kept


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked body held in memory (for hashing a JSON field).

    >>> dechunk(b"3\\r\\nabc\\r\\n2\\r\\nde\\r\\n0\\r\\n\\r\\n")
    b'abcde'
    """
    out, pos = [], 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            break
        try:
            size = int(data[pos:line_end].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(data[line_end + 2 : line_end + 2 + size])
        pos = line_end + 4 + size
    return b"".join(out)
