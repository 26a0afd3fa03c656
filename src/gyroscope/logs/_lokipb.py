"""Loki's protobuf push body (what Promtail and Grafana Alloy send by default), decoded by hand.

The body is a snappy block (raw snappy, no framing) of ``logproto.PushRequest``::

    PushRequest   { repeated StreamAdapter streams = 1; }
    StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    EntryAdapter  { Timestamp timestamp = 1; string line = 2; repeated LabelPair metadata = 3; }
    Timestamp     { int64 seconds = 1; int32 nanos = 2; }

Only the protobuf wire format is needed (varints and length-delimited fields), so this small reader
replaces a generated module and a protobuf runtime. Unknown fields are skipped, as protobuf requires.
Structured metadata is not stored (it is accepted and ignored).
"""

from __future__ import annotations

from collections.abc import Iterator

import cramjam

from gyroscope.logs._errors import BadInputError
from gyroscope.logs._ingest import _line
from gyroscope.logs._labels import canonical, parse_labels
from gyroscope.logs._store import Entry

__all__ = ["parse_loki_protobuf"]

_MAX_BODY = 64 * 1024 * 1024


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise BadInputError("malformed protobuf: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field of one message."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise BadInputError("malformed protobuf: field runs past the end of the message")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise BadInputError(f"malformed protobuf: unsupported wire type {wire}")
        if pos > len(buf):
            raise BadInputError("malformed protobuf: truncated field")


def _timestamp(buf: bytes) -> int:
    seconds = nanos = 0
    for number, wire, value in _fields(buf):
        if wire == 0 and number == 1:
            assert isinstance(value, int)
            seconds = value - (1 << 64) if value >= 1 << 63 else value
        elif wire == 0 and number == 2:
            assert isinstance(value, int)
            nanos = value
    return seconds * 10**9 + nanos


def _entry(buf: bytes, labels: str, where: str) -> Entry:
    ts, line = None, b""
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 2:
            assert isinstance(value, bytes)
            ts = _timestamp(value)
        elif number == 2 and wire == 2:
            assert isinstance(value, bytes)
            line = value
    if ts is None:
        raise BadInputError("entry without a timestamp", where=where)
    try:
        text = line.decode()
    except UnicodeDecodeError:
        raise BadInputError("line is not valid UTF-8", where=where) from None
    return Entry(labels, _line(text, where), ts)


def parse_loki_protobuf(body: bytes) -> list[Entry]:
    """Decode a snappy-compressed ``PushRequest``; ``BadInputError`` names the stream and entry."""
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise BadInputError(f"body is not snappy-compressed protobuf: {exc}") from None
    if len(raw) > _MAX_BODY:
        raise BadInputError("decompressed push body is larger than 64 MiB")
    entries: list[Entry] = []
    for i, (number, wire, stream) in enumerate(_fields(raw)):
        if number != 1 or wire != 2:
            continue
        assert isinstance(stream, bytes)
        where = f"streams[{i}]"
        labels_text, raw_entries = "", []
        for n, w, v in _fields(stream):
            if n == 1 and w == 2:
                assert isinstance(v, bytes)
                labels_text = v.decode("utf-8", "replace")
            elif n == 2 and w == 2:
                raw_entries.append(v)
        try:
            labels = canonical(parse_labels(labels_text))
        except BadInputError as exc:
            raise BadInputError(str(exc), where=f"{where}.labels") from None
        for j, e in enumerate(raw_entries):
            assert isinstance(e, bytes)
            entries.append(_entry(e, labels, f"{where}.entries[{j}]"))
    return entries
