"""A fast path for the common upstream answer: an HTTP/1.1 head with a Content-Length body.

Parsing every response with httptools costs one Python callback per header, then a second pass
filters the headers and a third renders them again. Most model server answers are plain
(HTTP/1.1, one Content-Length, no hop-by-hop header but Connection), so this module recognises
exactly that shape (one regular expression validates the whole head, then a few ``find`` calls)
and hands back the header block to forward almost verbatim. Anything else (1xx, 204/304,
chunked, close-delimited, HTTP/1.0, odd bytes, a header the proxy must act on) returns ``None``
and the full httptools path handles it, so strictness here never rejects a valid answer.

>>> head = simple_head(b"HTTP/1.1 200 OK\\r\\nServer: x\\r\\nContent-Length: 2\\r\\n"
...     b"Connection: keep-alive\\r\\n\\r\\n{}")
>>> head
(200, 73, b'Server: x\\r\\nContent-Length: 2\\r\\n', 2, True, False)
"""

from __future__ import annotations

import re
from typing import Final

from gyroscope.gateway._memo import ParseMemo, Recent

__all__ = ["SimpleHead", "simple_head"]

# Field values: visible ASCII, space, tab and obs-text; never CR, LF or other control bytes.
# Names: RFC 9110 tokens, so no space before the colon can hide a header from the scan below.
_SIMPLE = re.compile(
    rb"HTTP/1\.1 ([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*\r\n"
    rb"((?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*)\r\n"
)
# Headers that make an answer "not simple": hop-by-hop ones the proxy would have to act on, and
# X-Request-Id, which it replaces. (Connection is handled; the rest are rare from model servers.)
# One search (about 0.2 us) rather than a ``find`` per name (eight would cost 1.7 us).
_NOT_SIMPLE = re.compile(
    rb"\r\n(?:transfer-encoding|keep-alive|proxy-connection|te|trailer|upgrade|expect"
    rb"|x-request-id):"
)

# (status, offset of the first body byte, header lines to forward with Connection removed and
# each ending in CRLF, Content-Length, the replica keeps the connection, a Date header is present)
SimpleHead = tuple[int, int, bytes, int, bool, bool]


_LONGEST_REMEMBERED: Final = 4096


def simple_head(data: bytes) -> SimpleHead | None:
    """The head at the start of ``data`` if it is complete and plain, else ``None``.

    A few C-level searches on a lowercased copy, no Python loop over the headers: this runs on
    every response and must cost far less than the parser and the re-rendering it replaces. The
    verdict on a head seen lately is remembered (``_memo``): only Date changes from one answer of
    a replica to the next, once a second.
    """
    recent = _RECENT
    if data.startswith(recent.key):  # that head again, exactly: it ends at its first blank line
        return recent.verdict
    end = data.find(b"\r\n\r\n") + 4
    if end == 3:
        return None  # incomplete: the parser waits for the rest
    if end > _LONGEST_REMEMBERED:
        return _parse(data)
    head = data[:end]
    verdict = _SEEN[head]
    recent.key, recent.verdict = head, verdict
    return verdict


def _parse(data: bytes) -> SimpleHead | None:  # noqa: PLR0911 - each bail-out is one rule
    m = _SIMPLE.match(data)
    if m is None:
        return None
    status = int(m[1])
    if status < 200 or status in (204, 304):
        return None  # interim answers and bodiless statuses: the full parser's job
    start, stop = m.span(2)
    # From the status line's CRLF, so every header line is preceded by one.
    lowered = data[start - 2 : stop].lower()
    if _NOT_SIMPLE.search(lowered) is not None:
        return None
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0 or lowered.find(b"\r\ncontent-length:", at + 17) >= 0:
        return None  # close-delimited, or repeated: let httptools judge it
    eol = lowered.find(b"\r\n", at + 17)
    value = lowered[at + 17 : eol].strip(b" \t")
    if not value.isdigit():
        return None
    block = data[start:stop]
    keep_alive = True  # HTTP/1.1's default
    at = lowered.find(b"\r\nconnection:")
    if at >= 0:
        eol = lowered.find(b"\r\n", at + 13)
        token = lowered[at + 13 : eol].strip(b" \t")
        if token not in (b"keep-alive", b"close") or lowered.find(b"\r\nconnection:", eol) >= 0:
            return None  # it may name other hop-by-hop headers
        keep_alive = token == b"keep-alive"
        # In ``block`` (two bytes later than ``lowered``) the line with its CRLF is [at, eol).
        block = block[:at] + block[eol:]
    return status, m.end(), block, int(value), keep_alive, b"\r\ndate:" in lowered


_SEEN: Final[ParseMemo[SimpleHead | None]] = ParseMemo(_parse)
_RECENT: Final[Recent[SimpleHead | None]] = Recent(None)
