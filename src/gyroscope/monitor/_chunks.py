"""Compressed chunks of samples: delta-of-delta timestamps, delta or XOR values, byte-shuffled, zstd.

Regular scrapes give timestamps whose second difference is ~0 and counters whose second difference
is small; floats that are not integers are XORed with their predecessor (Gorilla's idea). Each
column is byte-shuffled (all first bytes, then all second bytes, ...) so zstd sees long runs of
zeros. The zstd frame carries a checksum, so a corrupt chunk is detected on read.

>>> import numpy as np
>>> ts, vs = np.arange(0, 120_000, 1000, dtype=np.int64), np.arange(120, dtype=np.float64)
>>> t2, v2 = decode_chunk(encode_chunk(ts, vs))
>>> bool((t2 == ts).all() and (v2 == vs).all())
True
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt
import zstandard

__all__ = ["STALE_NAN", "decode_chunk", "encode_chunk", "is_stale"]

# Prometheus's staleness marker: a NaN with a specific payload, distinct from a real NaN.
STALE_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_BITS))[0]

_HEADER = struct.Struct("<IB")
_INT_VALUES, _XOR_VALUES = 0, 1
_compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
_decompressor = zstandard.ZstdDecompressor()


def is_stale(values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    found: npt.NDArray[np.bool_] = values.view(np.uint64) == np.uint64(STALE_BITS)
    return found


def _dod(column: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    first = np.diff(column, prepend=np.int64(0))
    return np.diff(first, prepend=np.int64(0))


def _undod(column: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.cumsum(np.cumsum(column, dtype=np.int64), dtype=np.int64)


def _shuffle(column: npt.NDArray[np.int64] | npt.NDArray[np.uint64]) -> bytes:
    return column.view(np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffle(raw: bytes, count: int) -> npt.NDArray[np.uint8]:
    return np.frombuffer(raw, dtype=np.uint8).reshape(8, count).T.copy()


def encode_chunk(ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> bytes:
    """Encode equally long, time-ordered ``ts`` (ms) and ``values``."""
    count = len(ts)
    integral = bool(np.isfinite(values).all()) and bool((values == np.round(values)).all())
    integral = integral and bool((np.abs(values) < 2**53).all())
    if integral:
        kind, vcol = _INT_VALUES, _shuffle(_dod(values.astype(np.int64)))
    else:
        bits = values.view(np.uint64)
        xor = bits ^ np.concatenate((np.zeros(1, np.uint64), bits[:-1]))
        kind, vcol = _XOR_VALUES, _shuffle(xor)
    body = _shuffle(_dod(ts.astype(np.int64))) + vcol
    return _HEADER.pack(count, kind) + _compressor.compress(body)


def decode_chunk(blob: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Inverse of ``encode_chunk``; raises ``zstandard.ZstdError`` or ``ValueError`` when corrupt."""
    count, kind = _HEADER.unpack_from(blob)
    body = _decompressor.decompress(blob[_HEADER.size :])
    if len(body) != 16 * count:
        raise ValueError("chunk length does not match its header")
    ts = _undod(_unshuffle(body[: 8 * count], count).view(np.int64).ravel())
    vraw = _unshuffle(body[8 * count :], count)
    if kind == _INT_VALUES:
        values = _undod(vraw.view(np.int64).ravel()).astype(np.float64)
    else:
        values = np.bitwise_xor.accumulate(vraw.view(np.uint64).ravel()).view(np.float64)
    return ts, values
