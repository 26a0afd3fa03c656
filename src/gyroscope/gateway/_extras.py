"""What the optional route features do around an exchange: cache, token counting, compression,
rate-limit keys, and the JSON access log line. Kept apart so the plain proxy path stays short.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING

from gyroscope.gateway._cache import accept_encoding, cache_key, request_cacheable, response_ttl
from gyroscope.gateway._compress import choose_encoding, compressible, make_compressor
from gyroscope.gateway._limits import usage_tokens

if TYPE_CHECKING:
    from gyroscope.gateway._cache import CachedResponse
    from gyroscope.gateway._endpoint import Endpoint
    from gyroscope.gateway._exchange import Exchange

__all__ = [
    "admit",
    "cached_answer",
    "client_key",
    "complete_extras",
    "log_access",
    "prepare_extras",
]

Headers = list[tuple[bytes, bytes]]

access_log = logging.getLogger("gyroscope.gateway.access")


def admit(ex: Exchange) -> bool:
    """Rate limits, then the cache, before a request goes to a replica. False when it has been
    answered here: 429 over a limit, or a cache hit."""
    route, gw = ex.route, ex.gw
    limiter = route.limiter
    if limiter is not None:
        ex.client_key = client_key(ex)
        verdict = limiter.admit(ex.client_key, ex.started)
        if not verdict.allowed:
            counts = route.counters.rate_limited
            counts[verdict.reason] = counts.get(verdict.reason, 0) + 1
            ex.local(429, f"rate limit exceeded ({verdict.reason})", verdict.retry_after)
            return False
    if route.cache is not None and request_cacheable(ex.method, ex.headers):
        ex.cache_key = key = cache_key(ex.method, ex.url, ex.headers)
        hit = route.cache.get(key, gw.clock(), accept_encoding(ex.headers))
        if hit is not None:
            route.counters.cache_hits += 1
            ex.answer_cached(hit, gw.clock() - hit.stored_at)
            return False
        route.counters.cache_misses += 1
    return True


def prepare_extras(
    ex: Exchange,
    status: int,
    headers: list[tuple[bytes, bytes]],
    content_length: bytes | None,
    content_type: bytes | None,
    encoded: bool,
    no_body: bool,
) -> str | None:
    """Arm the cache copy, the usage tail and a compressor; the chosen encoding, if any."""
    route = ex.route
    if no_body:
        return None
    if ex.cache_key is not None and route.cache is not None:
        ex.cache_ttl = response_ttl(status, headers, route.cache_default_ttl)
        if ex.cache_ttl > 0:
            ex.cache_body = []
    if route.limiter is not None and route.limiter.counts_tokens:
        ex.tail = b""
    comp = route.compression
    if (
        comp is not None
        and ex.accept_encoding is not None
        and status == 200
        and not encoded
        and compressible(content_type)
        and (content_length is None or int(content_length or b"0") >= comp.min_bytes)
    ):
        encoding = choose_encoding(ex.accept_encoding, route.encodings)
        if encoding is not None:
            ex.compressor = make_compressor(encoding, comp.level)
            return encoding
    return None


def complete_extras(ex: Exchange, now: float) -> None:
    """Store the cached copy and charge the tokens the response used."""
    if ex.cache_body is not None and ex.route.cache is not None and ex.cache_key:
        headers = ex.cache_headers or []
        # A body the replica encoded suits only clients that accept what this one accepted.
        encoded = any(name == b"content-encoding" for name, _ in headers)
        ex.route.cache.put(
            ex.cache_key,
            ex.status,
            headers,
            b"".join(ex.cache_body),
            ex.cache_ttl,
            now,
            vary=accept_encoding(ex.headers) if encoded else None,
        )
    if ex.tail is not None and ex.route.limiter is not None and ex.client_key:
        ex.route.limiter.charge_tokens(ex.client_key, usage_tokens(ex.tail), now)


def cached_answer(ex: Exchange, hit: CachedResponse) -> tuple[Headers, bytes]:
    """A cache hit as this client gets it: compressed as a miss would be, with its Vary."""
    route, comp = ex.route, ex.route.compression
    headers, body = hit.headers, hit.body
    if comp is None or route.cache is None or hit.status != 200 or len(body) < comp.min_bytes:
        return headers, body
    content_type = None
    varies = False
    for name, value in headers:
        if name == b"content-encoding":
            return headers, body  # the replica's own encoding, stored for this Accept-Encoding
        if name == b"content-type":
            content_type = value
        elif name == b"vary":
            varies = True  # only ever Accept-Encoding (see response_ttl)
    if not compressible(content_type):
        return headers, body
    out = headers if varies else [*headers, (b"vary", b"accept-encoding")]
    encoding = choose_encoding(ex.accept_encoding, route.encodings) if ex.accept_encoding else None
    if encoding is None or ex.cache_key is None:
        return out, body
    level = comp.level

    def compress(data: bytes) -> bytes:
        compressor = make_compressor(encoding, level)
        return compressor.compress(data) + compressor.finish()

    data = route.cache.encoded(ex.cache_key, hit, encoding, compress)
    return [*out, (b"content-encoding", encoding.encode())], data


def log_access(ex: Exchange, ep: Endpoint | None) -> None:
    """One JSON line per request on ``gyroscope.gateway.access`` (never a credential)."""
    access_log.info(
        json.dumps(
            {
                "ts": ex.gw.wall(),
                "request_id": ex.request_id.decode("latin-1"),
                "client": ex.client.peer_ip,
                "method": ex.method.decode("latin-1"),
                "path": _loggable_path(ex.url)[:512],
                "route": ex.route.name,
                "backend": ep.name if ep is not None else None,
                "status": ex.status,
                "attempts": ex.attempts + 1,
                "duration_ms": round((ex.gw.clock() - ex.started) * 1000, 3),
            },
            separators=(",", ":"),
        )
    )


def client_key(ex: Exchange) -> str:
    """Whom a rate limit counts: the client IP, or a digest of its API key."""
    limiter_key = ex.route.limiter_key
    if limiter_key == "api_key":
        for name, value in ex.headers:
            if name in (b"authorization", b"x-api-key"):
                # keyed by a digest: the key itself is a secret and never kept or logged
                return "k:" + hashlib.blake2b(value, digest_size=12).hexdigest()
    return ex.client.peer_ip


def _loggable_path(url: bytes) -> str:
    """The path with query parameter names but not their values: a query may carry an API key.

    >>> _loggable_path(b"/v1/models?api_key=s3cret&limit=5&flag")
    '/v1/models?api_key=…&limit=…&flag'
    """
    path, _, query = url.decode("latin-1").partition("?")
    if not query:
        return path
    names = [part.split("=", 1)[0] + ("=…" if "=" in part else "") for part in query.split("&")]
    return f"{path}?{'&'.join(names)}"
