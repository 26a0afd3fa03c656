"""Loki protobuf push (Promtail / Alloy default), encoded by the official protobuf runtime as oracle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest

from gyroscope.logs import BadInputError, LogsConfig, LogServer
from gyroscope.logs._lokipb import parse_loki_protobuf

pb = pytest.importorskip("google.protobuf")


def push_request_class() -> Any:
    """logproto.PushRequest built from a descriptor (the shape of Loki's push.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FileDescriptorProto(
        name="push_test.proto", package="logproto", syntax="proto3"
    )
    T = descriptor_pb2.FieldDescriptorProto

    def msg(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        m = f.message_type.add(name=name)
        for fname, num, ftype, label, tname in fields:
            fd = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                fd.type_name = tname

    opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    msg("Timestamp", [("seconds", 1, T.TYPE_INT64, opt, ""), ("nanos", 2, T.TYPE_INT32, opt, "")])
    msg("LabelPair", [("name", 1, T.TYPE_STRING, opt, ""), ("value", 2, T.TYPE_STRING, opt, "")])
    msg(
        "Entry",
        [
            ("timestamp", 1, T.TYPE_MESSAGE, opt, ".logproto.Timestamp"),
            ("line", 2, T.TYPE_STRING, opt, ""),
            ("structuredMetadata", 3, T.TYPE_MESSAGE, rep, ".logproto.LabelPair"),
        ],
    )
    msg(
        "Stream",
        [
            ("labels", 1, T.TYPE_STRING, opt, ""),
            ("entries", 2, T.TYPE_MESSAGE, rep, ".logproto.Entry"),
            ("hash", 3, T.TYPE_UINT64, opt, ""),
        ],
    )
    msg("PushRequest", [("streams", 1, T.TYPE_MESSAGE, rep, ".logproto.Stream")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


def body(streams: list[tuple[str, list[tuple[int, int, str]]]]) -> bytes:
    req = push_request_class()()
    for labels, entries in streams:
        s = req.streams.add(labels=labels, hash=12345)
        for sec, nanos, line in entries:
            e = s.entries.add(line=line)
            e.timestamp.seconds, e.timestamp.nanos = sec, nanos
            e.structuredMetadata.add(name="trace_id", value="abc")
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def test_decodes_what_the_protobuf_runtime_encodes() -> None:
    data = body(
        [
            (
                '{job="promtail", host="h1"}',
                [(1_700_000_000, 5, "first ✓"), (1_700_000_001, 0, "second")],
            ),
            ('{job="alloy"}', [(1, 999_999_999, "x" * 1000)]),
        ]
    )
    entries = parse_loki_protobuf(data)
    assert [(e.labels, e.ts_ns, e.line[:9]) for e in entries] == [
        ('{host="h1",job="promtail"}', 1_700_000_000_000_000_005, "first ✓".encode()),
        ('{host="h1",job="promtail"}', 1_700_000_001_000_000_000, b"second"),
        ('{job="alloy"}', 1_999_999_999, b"xxxxxxxxx"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not snappy at all", "not snappy"),
        (
            bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a\x03{a")),
            "runs past the end|invalid label set",
        ),
        (bytes(cramjam.snappy.compress_raw(b"\x0a\x80")), "truncated varint"),
    ],
)
def test_malformed_bodies_are_one_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        parse_loki_protobuf(data)


def test_bad_labels_name_the_stream() -> None:
    with pytest.raises(BadInputError, match=r"streams\[0\].labels: invalid label"):
        parse_loki_protobuf(body([('{9x="1"}', [(1, 0, "l")])]))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LogServer]:
    srv = LogServer(
        LogsConfig(listen="127.0.0.1:0", checkpoint_seconds=0, scrub_seconds=0), tmp_path
    )
    await srv.start()
    yield srv
    await srv.stop(1.0)


async def test_push_endpoint_accepts_protobuf(server: LogServer) -> None:
    async with httpx.AsyncClient(base_url=server.http.url) as client:
        resp = await client.post(
            "/loki/api/v1/push",
            content=body([('{job="promtail"}', [(5, 0, "hi")])]),
            headers={"content-type": "application/x-protobuf"},
        )
        assert resp.status_code == 204
        resp = await client.get(
            "/loki/api/v1/query_range", params={"query": '{job="promtail"}', "start": 0, "end": 10}
        )
        assert resp.json()["data"]["result"][0]["values"] == [["5000000000", "hi"]]
