"""Streaming response compression (zstd, brotli, gzip) negotiated by Accept-Encoding.

Never for SSE (each event must leave at once), never for bodies already encoded, small bodies
or types that do not compress (images, archives).

>>> choose_encoding(b"gzip, br;q=0.5", ["zstd", "br", "gzip"])
'gzip'
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Protocol

__all__ = ["Compressor", "choose_encoding", "compressible", "make_compressor"]

_TYPES = (b"text/", b"application/json", b"application/javascript", b"application/xml", b"+json")


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


def choose_encoding(accept: bytes, offered: Sequence[str]) -> str | None:
    """The first of ``offered`` (server preference) that the client accepts with q > 0."""
    accepted: dict[str, float] = {}
    for part in accept.decode("latin-1").lower().split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        accepted[name.strip()] = q
    for encoding in offered:
        q = accepted.get(encoding, accepted.get("*", 0.0))
        if q > 0:
            return encoding
    return None


def compressible(content_type: bytes | None) -> bool:
    if content_type is None or b"event-stream" in content_type:
        return False
    return any(t in content_type for t in _TYPES)


class _Gzip:
    def __init__(self, level: int) -> None:
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()


class _Zstd:
    def __init__(self, level: int) -> None:
        import zstandard

        self._z = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._z.compress(data)
        return out

    def finish(self) -> bytes:
        out: bytes = self._z.flush()
        return out


class _Brotli:
    def __init__(self, level: int) -> None:
        import brotli  # type: ignore[import-untyped]

        self._z = brotli.Compressor(quality=min(level + 1, 11))

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._z.process(data)
        return out

    def finish(self) -> bytes:
        out: bytes = self._z.finish()
        return out


def make_compressor(encoding: str, level: int) -> Compressor:
    if encoding == "zstd":
        return _Zstd(level)
    if encoding == "br":
        return _Brotli(level)
    return _Gzip(level)


def available_encodings(wanted: Sequence[str]) -> list[str]:
    """Drop encodings whose package is not installed (zstandard, brotli are optional)."""
    out = []
    for encoding in wanted:
        module = {"zstd": "zstandard", "br": "brotli"}.get(encoding)
        if module is not None:
            try:
                __import__(module)
            except ImportError:
                continue
        out.append(encoding)
    return out
