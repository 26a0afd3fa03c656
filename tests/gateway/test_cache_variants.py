"""The response cache's key (method + Host + URL), Vary handling and compressed copies (pure)."""

from __future__ import annotations

import gzip

from gyroscope.gateway._cache import (
    ResponseCache,
    accept_encoding,
    cache_key,
    response_ttl,
)


def test_the_key_separates_hosts_and_methods_and_ignores_host_case():
    a = cache_key(b"GET", b"/v1/models", [(b"host", b"a.example")])
    b = cache_key(b"GET", b"/v1/models", [(b"host", b"b.example")])
    assert a != b
    assert a == cache_key(b"GET", b"/v1/models", [(b"host", b"A.Example ")])
    assert a != cache_key(b"HEAD", b"/v1/models", [(b"host", b"a.example")])
    assert a != cache_key(b"GET", b"/v1/models?x=1", [(b"host", b"a.example")])
    assert cache_key(b"GET", b"/", []) != cache_key(b"GET", b"/", [(b"host", b"x")])


def test_accept_encoding_is_normalised():
    assert accept_encoding([(b"accept-encoding", b"gzip, br")]) == b"br,gzip"
    assert accept_encoding([(b"accept-encoding", b"GZIP;q=0.5 ,br")]) == b"br,gzip;q=0.5"
    assert accept_encoding([]) == b""
    assert accept_encoding([(b"accept-encoding", b"gzip")]) != accept_encoding(
        [(b"accept-encoding", b"br")]
    )


def test_vary_star_or_on_other_headers_is_never_stored():
    ok = [(b"cache-control", b"max-age=60")]
    assert response_ttl(200, ok, 0) == 60
    assert response_ttl(200, [*ok, (b"vary", b"Accept-Encoding")], 0) == 60
    assert response_ttl(200, [*ok, (b"vary", b"*")], 0) == 0
    assert response_ttl(200, [*ok, (b"vary", b"User-Agent")], 0) == 0
    assert response_ttl(200, [*ok, (b"vary", b"accept-encoding, cookie")], 0) == 0
    assert response_ttl(200, [*ok, (b"vary", b"accept-encoding"), (b"vary", b"origin")], 0) == 0


def test_an_entry_limited_to_one_accept_encoding_serves_only_that():
    cache = ResponseCache(max_bytes=1000, max_entry_bytes=500)
    cache.put(b"k", 200, [(b"content-encoding", b"gzip")], b"zz", ttl=10, now=0, vary=b"gzip")
    assert cache.get(b"k", 1, b"gzip") is not None
    assert cache.get(b"k", 1, b"") is None
    assert cache.get(b"k", 1) is None
    assert len(cache) == 1  # a variant miss keeps the entry
    cache.put(b"k", 200, [], b"plain", ttl=10, now=1)  # the identity answer replaces it
    hit = cache.get(b"k", 2, b"")
    assert hit is not None and hit.body == b"plain"
    assert cache.get(b"k", 2, b"gzip") is not None  # identity suits every client
    assert cache.size == 5


def test_compressed_copies_are_made_once_and_counted_in_the_budget():
    cache = ResponseCache(max_bytes=10_000, max_entry_bytes=5_000)
    body = b"gyroscope " * 300
    cache.put(b"k", 200, [], body, ttl=10, now=0)
    entry = cache.get(b"k", 1)
    assert entry is not None
    calls = []

    def compress(data: bytes) -> bytes:
        calls.append(data)
        return gzip.compress(data)

    first = cache.encoded(b"k", entry, "gzip", compress)
    assert gzip.decompress(first) == body
    assert cache.encoded(b"k", entry, "gzip", compress) is first
    assert len(calls) == 1
    assert cache.size == len(body) + len(first)
    cache.put(b"other", 200, [], b"x" * 4000, ttl=10, now=1)
    cache.put(b"more", 200, [], b"y" * 4000, ttl=10, now=1)
    assert cache.get(b"k", 2) is None  # evicted as the oldest, copy and all
    assert cache.size == 8000


def test_a_compressed_copy_of_a_replaced_entry_is_not_kept():
    cache = ResponseCache(max_bytes=10_000, max_entry_bytes=5_000)
    cache.put(b"k", 200, [], b"old " * 100, ttl=10, now=0)
    old = cache.get(b"k", 1)
    assert old is not None
    cache.put(b"k", 200, [], b"new " * 100, ttl=10, now=1)
    data = cache.encoded(b"k", old, "gzip", gzip.compress)
    assert gzip.decompress(data) == b"old " * 100  # still answers the request that holds it
    assert cache.size == 400 and not old.encoded
