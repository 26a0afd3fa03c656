"""Binary encodings of pack headers and index files (sealed and compressed by their callers).

A row describes one blob: kind (``d`` data, ``t`` tree), 32-byte ID, offset in its pack, sealed
length, plain length (45 bytes, little-endian). An index file is a sequence of
``pack id (32 bytes) | row count (u32) | rows``. Binary rows keep the metadata small: a repository
of many small files holds one row per file in a pack header and again in an index.

>>> rows = [["d", "ab" * 32, 0, 100, 70]]
>>> decode_rows(encode_rows(rows)) == rows
True
>>> decode_index(encode_index([("cd" * 32, rows)])) == [("cd" * 32, rows)]
True
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["decode_index", "decode_rows", "encode_index", "encode_rows", "iter_index"]

ROW = struct.Struct("<c32sIII")
COUNT = struct.Struct("<I")

Row = list[Any]
RawRow = tuple[bytes, bytes, int, int, int]


def encode_rows(rows: Iterable[Row]) -> bytes:
    return b"".join(ROW.pack(k.encode(), bytes.fromhex(i), o, n, r) for k, i, o, n, r in rows)


def decode_rows(data: bytes | memoryview) -> list[Row]:
    if len(data) % ROW.size:
        raise ValueError("truncated row table")
    return [[k.decode(), i.hex(), o, n, r] for k, i, o, n, r in ROW.iter_unpack(data)]


def encode_index(packs: Iterable[tuple[str, list[Row]]]) -> bytes:
    parts = []
    for pack, rows in packs:
        parts += [bytes.fromhex(pack), COUNT.pack(len(rows)), encode_rows(rows)]
    return b"".join(parts)


def iter_index(data: bytes) -> list[tuple[str, Iterator[RawRow]]]:
    """Each pack's rows as unpacked (kind, id, offset, length, plain length), bytes not hex: loading
    the index of every backup builds one entry per chunk, and the hex round trip was most of it."""
    view, pos, packs = memoryview(data), 0, []
    while pos < len(view):
        if pos + 36 > len(view):
            raise ValueError("truncated index")
        pack = bytes(view[pos : pos + 32]).hex()
        (count,) = COUNT.unpack_from(view, pos + 32)
        start = pos + 36
        pos = start + count * ROW.size
        if pos > len(view):
            raise ValueError("truncated index")
        packs.append((pack, ROW.iter_unpack(view[start:pos])))
    return packs


def decode_index(data: bytes) -> list[tuple[str, list[Row]]]:
    return [
        (pack, [[k.decode(), i.hex(), o, n, r] for k, i, o, n, r in rows])
        for pack, rows in iter_index(data)
    ]
