"""The on-disk record: a length and a CRC32C around every record, checked on every read.

Frame layout (little endian)::

    u32 length | u32 crc32c(payload) | payload
    payload = u8 flags | u64 seq | i64 ts_ns | u16 labels_len | u16 key_len | labels | key | body

``body`` is the log line, or for a redacted record the 32-byte Merkle leaf hash of the line it
replaced, so that the tree (and every proof) stays verifiable after redaction. ``key`` is the
optional de-duplication key a shipper sends with a batch.

The Merkle leaf of a record is ``SHA-256(0x00 || ts_ns || labels_len || labels || line)``
(RFC 6962 leaf prefix); the sequence number is the leaf's position, so it is not hashed twice.
"""

from __future__ import annotations

import hashlib
import struct
from typing import NamedTuple

import crc32c

__all__ = [
    "FLAG_BATCH_END",
    "FLAG_REDACTED",
    "FRAME",
    "MAX_LINE_BYTES",
    "PAYLOAD",
    "Frame",
    "FrameError",
    "Record",
    "decode",
    "encode",
    "encode_batch",
    "frame_batch",
    "leaf_hash",
    "leaf_hashes",
]

FRAME = struct.Struct("<II")
PAYLOAD = struct.Struct("<BQqHH")
FLAG_REDACTED = 1
FLAG_BATCH_END = 2  # the last record of an append batch; recovery keeps whole batches only
MAX_LINE_BYTES = 256 * 1024
MAX_FRAME = MAX_LINE_BYTES + 64 * 1024
_TS_LABELS = struct.Struct("<qH")
_LEAF = struct.Struct("<BqH")  # the 0x00 leaf prefix, ts_ns, labels_len
_sha256 = hashlib.sha256


class Record(NamedTuple):
    """One stored log line (``line`` is empty and ``redacted`` true after redaction).

    A named tuple rather than a dataclass: the scrubber builds millions of these per second.
    """

    seq: int
    ts_ns: int
    labels: str
    line: bytes
    leaf: bytes
    key: bytes = b""
    redacted: bool = False
    batch_end: bool = True


class FrameError(Exception):
    """Why the bytes at an offset are not a valid record (torn, corrupt, impossible length)."""

    def __init__(self, reason: str, offset: int) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(f"offset {offset}: {reason}")


class Frame(NamedTuple):
    """A decoded frame and where the next one starts."""

    record: Record
    offset: int
    end: int


def leaf_hash(ts_ns: int, labels: bytes, line: bytes) -> bytes:
    """RFC 6962 leaf hash of one record."""
    return _sha256(b"\x00" + _TS_LABELS.pack(ts_ns, len(labels)) + labels + line).digest()


def encode(
    seq: int,
    ts_ns: int,
    labels: bytes,
    line: bytes,
    key: bytes = b"",
    *,
    leaf: bytes = b"",
    batch_end: bool = True,
) -> bytes:
    """One framed record; pass ``leaf`` (and an empty line) to write a redacted record."""
    flags = (FLAG_REDACTED if leaf else 0) | (FLAG_BATCH_END if batch_end else 0)
    payload = PAYLOAD.pack(flags, seq, ts_ns, len(labels), len(key)) + labels + key + (leaf or line)
    return FRAME.pack(len(payload), crc32c.crc32c(payload)) + payload


def frame_batch(
    first: int, ts: list[int], labels: list[bytes], lines: list[bytes], key: bytes
) -> tuple[bytes, list[int]]:
    """Frame a whole batch: (bytes, frame sizes). The last record carries the batch-end flag and
    ``key``. This is the ingest hot loop: one header pack, one CRC and one join per record."""
    pack, pack_frame, crc = PAYLOAD.pack, FRAME.pack, crc32c.crc32c
    parts: list[bytes] = []
    sizes: list[int] = []
    add, size = parts.append, sizes.append
    seq = first
    last = len(ts) - 1
    for t, lab, line in zip(ts[:last], labels[:last], lines[:last], strict=True):
        payload = pack(0, seq, t, len(lab), 0) + lab + line
        n = len(payload)
        add(pack_frame(n, crc(payload)))
        add(payload)
        size(n + 8)
        seq += 1
    if last >= 0:
        lab = labels[last]
        payload = pack(FLAG_BATCH_END, seq, ts[last], len(lab), len(key)) + lab + key + lines[last]
        add(pack_frame(len(payload), crc(payload)))
        add(payload)
        size(len(payload) + 8)
    return b"".join(parts), sizes


def leaf_hashes(ts: list[int], labels: list[bytes], lines: list[bytes]) -> list[bytes]:
    """RFC 6962 leaf hashes of a batch (``leaf_hash`` for each record, as one comprehension)."""
    pack, sha = _LEAF.pack, _sha256
    return [
        sha(pack(0, t, len(lab)) + lab + line).digest()
        for t, lab, line in zip(ts, labels, lines, strict=True)
    ]


def encode_batch(
    first: int, items: list[tuple[int, bytes, bytes]], key: bytes
) -> tuple[bytes, list[bytes], list[int]]:
    """Frame a whole batch: (bytes, leaf hashes, frame sizes). ``items`` are (ts_ns, labels, line)."""
    ts = [t for t, _, _ in items]
    labels = [lab for _, lab, _ in items]
    lines = [line for _, _, line in items]
    data, sizes = frame_batch(first, ts, labels, lines, key)
    return data, leaf_hashes(ts, labels, lines), sizes


def decode(buf: bytes | memoryview, offset: int, *, with_leaf: bool = True) -> Frame:
    """Decode and CRC-check the record at ``offset``; raise ``FrameError`` when it is not valid."""
    if offset + FRAME.size > len(buf):
        raise FrameError("truncated frame header", offset)
    length, crc = FRAME.unpack_from(buf, offset)
    start = offset + FRAME.size
    end = start + length
    if length < PAYLOAD.size or length > MAX_FRAME:
        raise FrameError(f"impossible record length {length}", offset)
    if end > len(buf):
        raise FrameError("truncated record", offset)
    payload = bytes(buf[start:end])
    if crc32c.crc32c(payload) != crc:
        raise FrameError("CRC32C mismatch", offset)
    flags, seq, ts_ns, labels_len, key_len = PAYLOAD.unpack_from(payload, 0)
    pos = PAYLOAD.size
    labels = payload[pos : pos + labels_len]
    key = payload[pos + labels_len : pos + labels_len + key_len]
    body = payload[pos + labels_len + key_len :]
    last = bool(flags & FLAG_BATCH_END)
    if flags & FLAG_REDACTED:
        record = Record(seq, ts_ns, labels.decode(), b"", body, key, True, last)
    else:
        leaf = leaf_hash(ts_ns, labels, body) if with_leaf else b""
        record = Record(seq, ts_ns, labels.decode(), body, leaf, key, False, last)
    return Frame(record, offset, end)
