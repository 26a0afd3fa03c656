"""A size-bounded LRU cache for GET responses, honouring Cache-Control (RFC 9111, shared cache).

Only GET, only when the request carries no ``Authorization`` and no ``no-store``/``no-cache``, and
only responses with status 200 whose Cache-Control gives a positive ``s-maxage``/``max-age`` (or
the configured default TTL) and says neither ``no-store``, ``no-cache`` nor ``private``, with no
``Set-Cookie`` and no ``Vary`` beyond Accept-Encoding. Streams (SSE) are never stored.

An entry is keyed by method, Host and URL (:func:`cache_key`): two virtual hosts behind one
gateway never share an answer. ``Vary: Accept-Encoding`` is honoured: a body the replica encoded
itself is served only to requests with the same Accept-Encoding; an identity body suits every
client, and the gateway compresses it per request when the route compresses (the compressed copy
is kept beside it, within the same byte budget).

>>> c = ResponseCache(max_bytes=100, max_entry_bytes=50)
>>> key = cache_key(b"GET", b"/a", [(b"host", b"api")])
>>> c.put(key, 200, [], b"hello", ttl=10, now=0.0)
True
>>> c.get(key, now=5.0).body
b'hello'
>>> c.get(key, now=11.0) is None
True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "CachedResponse",
    "ResponseCache",
    "accept_encoding",
    "cache_key",
    "request_cacheable",
    "response_ttl",
]


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored answer; ``vary`` is the normalised Accept-Encoding it is limited to, if any."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored_at: float
    expires: float
    vary: bytes | None = None
    encoded: dict[str, bytes] = field(default_factory=dict)  # body compressed by the gateway

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(v) for v in self.encoded.values())


def cache_key(method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """What identifies a stored answer: method, Host (case-insensitive) and URL.

    >>> cache_key(b"GET", b"/v1/models", [(b"host", b"API.example")])
    b'GET api.example /v1/models'
    """
    host = b""
    for name, value in headers:
        if name == b"host":
            host = value.strip().lower()
            break
    # Spaces cannot occur in a method, a Host value or a request target, so the key is unambiguous.
    return b"%b %b %b" % (method, host, url)


def accept_encoding(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request's Accept-Encoding, normalised so equal preferences compare equal.

    >>> accept_encoding([(b"accept-encoding", b"br, GZIP")]) == accept_encoding(
    ...     [(b"accept-encoding", b"gzip,br")])
    True
    """
    tokens: list[bytes] = []
    for name, value in headers:
        if name == b"accept-encoding":
            tokens += (t.strip().replace(b" ", b"") for t in value.lower().split(b","))
    return b",".join(sorted(t for t in tokens if t))


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
        if name == b"vary" and not _varies_on_encoding_only(value):
            return 0.0  # Vary: * or on other headers: one stored answer cannot serve everyone
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


def _varies_on_encoding_only(value: bytes) -> bool:
    return all(t.strip() in (b"accept-encoding", b"") for t in value.lower().split(b","))


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

    def get(
        self, key: bytes, now: float, accept_encoding: bytes | None = None
    ) -> CachedResponse | None:
        """The fresh entry for ``key`` that suits a request with this (normalised) Accept-Encoding.

        An entry limited to another Accept-Encoding is a miss but stays: the answer to this
        request replaces it (one variant per key).
        """
        entry = self._entries.get(key)
        if (
            entry is None
            or entry.expires <= now
            or (entry.vary is not None and entry.vary != (accept_encoding or b""))
        ):
            if entry is not None and entry.expires <= now:
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
        vary: bytes | None = None,
    ) -> bool:
        """Store an answer; ``vary`` limits it to requests with that normalised Accept-Encoding."""
        if ttl <= 0 or len(body) > self.max_entry_bytes or len(body) > self.max_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = CachedResponse(status, headers, body, now, now + ttl, vary)
        self.size += len(body)
        self._shrink()
        return True

    def encoded(
        self, key: bytes, entry: CachedResponse, encoding: str, compress: Callable[[bytes], bytes]
    ) -> bytes:
        """``entry``'s body compressed with ``encoding``: made once, then kept with the entry."""
        data = entry.encoded.get(encoding)
        if data is not None:
            return data
        data = compress(entry.body)
        # Kept only while the entry is still the one stored and the copy fits the budget; a
        # replaced or evicted entry is just answered from this compressed body once.
        if self._entries.get(key) is entry and entry.size + len(data) <= self.max_entry_bytes:
            entry.encoded[encoding] = data
            self.size += len(data)
            self._shrink()
        return data

    def _shrink(self) -> None:
        while self.size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self.size -= entry.size
