"""A size-bounded LRU cache for GET responses, honouring Cache-Control (RFC 9111, shared cache).

Only GET, only when the request carries no ``Authorization`` and no ``no-store``/``no-cache``, and
only responses with status 200 whose Cache-Control gives a positive ``s-maxage``/``max-age`` (or
the configured default TTL) and says neither ``no-store``, ``no-cache`` nor ``private``, with no
``Set-Cookie`` and no ``Vary`` beyond Accept-Encoding. Streams (SSE) are never stored.

>>> c = ResponseCache(max_bytes=100, max_entry_bytes=50)
>>> c.put(b"/a", 200, [], b"hello", ttl=10, now=0.0); c.get(b"/a", now=5.0).body
b'hello'
>>> c.get(b"/a", now=11.0) is None
True
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["CachedResponse", "ResponseCache", "request_cacheable", "response_ttl"]


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored_at: float
    expires: float


def _directives(value: bytes) -> dict[str, str]:
    out = {}
    for part in value.decode("latin-1").lower().split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name] = arg.strip('"')
    return out


def request_cacheable(method: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    if method != b"GET":
        return False
    for name, value in headers:
        if name == b"authorization":
            return False
        if name == b"cache-control":
            d = _directives(value)
            if "no-store" in d or "no-cache" in d or d.get("max-age") == "0":
                return False
        if name == b"pragma" and b"no-cache" in value.lower():
            return False
    return True


def response_ttl(status: int, headers: list[tuple[bytes, bytes]], default_ttl: float) -> float:
    """Seconds the response may be served from the cache; 0 means do not store it."""
    if status != 200:
        return 0.0
    ttl = default_ttl
    for name, value in headers:
        if name == b"set-cookie" or (name == b"content-type" and b"event-stream" in value):
            return 0.0
        if name == b"vary" and value.strip().lower() not in (b"accept-encoding", b""):
            return 0.0
        if name == b"cache-control":
            d = _directives(value)
            if "no-store" in d or "no-cache" in d or "private" in d:
                return 0.0
            age = d.get("s-maxage") or d.get("max-age")
            if age is not None:
                try:
                    ttl = float(int(age))
                except ValueError:
                    return 0.0
    return max(ttl, 0.0)


class ResponseCache:
    """LRU by bytes: the least recently used entries go first when ``max_bytes`` would be exceeded."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, CachedResponse] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: float) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires <= now:
            if entry is not None:
                self._drop(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(
        self,
        key: bytes,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        ttl: float,
        now: float,
    ) -> bool:
        if ttl <= 0 or len(body) > self.max_entry_bytes or len(body) > self.max_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = CachedResponse(status, headers, body, now, now + ttl)
        self.size += len(body)
        while self.size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
        return True

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self.size -= len(entry.body)
