"""Redaction and retention keep every proof valid; retention is per stream, by age and by size."""

from __future__ import annotations

from pathlib import Path

import pytest

from gyroscope.logs import (
    LogStore,
    LogStoreError,
    RetentionRule,
    apply_retention,
    canonical,
    inclusion_proof,
    redact,
    verify_proof,
    verify_store,
)
from gyroscope.logs._logql import parse_selector
from gyroscope.logs._query import stream_matcher
from gyroscope.logs._retention import SegmentUsage, plan_retention

from .conftest import entries

DEBUG = {"service": "api", "level": "debug"}
INFO = {"service": "api", "level": "info"}


def test_redaction_erases_the_line_but_keeps_proofs(store: LogStore) -> None:
    store.append(entries(10, labels=INFO))
    proof_before = inclusion_proof(store, 4)
    root_before = store.merkle.root()
    redact(store, 4)
    rec = store.get(4)
    assert rec.redacted and rec.line == b""
    assert b"line 4 " not in store.segment_of(4).path.read_bytes()  # type: ignore[union-attr]
    assert store.merkle.root() == root_before
    assert "included" in verify_proof(proof_before)
    assert "included" in verify_proof(inclusion_proof(store, 4))
    assert verify_store(store).ok
    with pytest.raises(LogStoreError, match="does not exist"):
        redact(store, 99)


def test_plan_retention_by_age_and_size_per_stream() -> None:
    a, b = canonical(DEBUG), canonical(INFO)
    segs = [
        SegmentUsage(0, 0, {a: (100, 10), b: (100, 10)}),
        SegmentUsage(10, 0, {a: (200, 10), b: (200, 10)}),
        SegmentUsage(20, 0, {a: (300, 10), b: (300, 10)}),
    ]
    debug_rule = RetentionRule(matches=lambda s: s == a, max_age_ns=150)
    plan = plan_retention(segs, [debug_rule], RetentionRule(max_bytes=20), now_ns=360)
    assert plan == {
        0: {a, b},
        10: {a},
    }  # debug by age (older than 210); info keeps its newest 20 bytes
    assert plan_retention(segs, [], RetentionRule(), now_ns=10**12) == {}


def test_apply_retention_drops_and_stubs_with_valid_proofs(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs", segment_bytes=1024, checkpoint_every=0).open()
    for k in range(6):
        store.append(entries(8, start=k * 8, labels=DEBUG) + entries(8, start=k * 8, labels=INFO))
    store.rotate()
    store.checkpoint()
    proof = inclusion_proof(store, 60)
    rules = [RetentionRule(matches=stream_matcher(parse_selector('{level="debug"}')), max_age_ns=1)]
    removed = apply_retention(store, rules, RetentionRule(), now_ns=10**12)
    assert removed > 0
    remaining = [r for r in store.select(lambda _s: True, backward=False) if not r.redacted]
    assert {r.labels for r in remaining} == {canonical(INFO)}
    assert len(remaining) == 48
    assert "included" in verify_proof(proof)
    assert "included" in verify_proof(inclusion_proof(store, 60))
    assert verify_store(store).ok
    everything = apply_retention(store, [], RetentionRule(max_age_ns=1), now_ns=10**12)
    assert everything > 0
    assert store.segments[0].base > 0  # whole segments were removed from the front
    assert verify_store(store).ok  # dropped ranges are known, not reported as deletions
    store.close()
    reopened = LogStore(tmp_path / "logs").open()
    assert reopened.next_seq == 96
    assert reopened.append(entries(1)).first == 96
    reopened.close()


async def test_server_applies_configured_per_stream_retention(tmp_path: Path) -> None:
    from gyroscope.logs import LogsConfig, LogServer, parse_query, run_log_query

    cfg = LogsConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "checkpoint_seconds": 0,
            "scrub_seconds": 0,
            "retention": {
                "max_age": "30d",
                "streams": [{"selector": '{level="debug"}', "max_age": "1h"}],
            },
        }
    )
    server = LogServer(cfg, tmp_path / "logs")
    await server.start()
    try:
        await server.ingest(
            entries(5, labels=DEBUG) + entries(5, labels=INFO)
        )  # timestamps in 1970
        server.store.rotate()
        await server._retention()

        def count(q: str) -> int:
            res = run_log_query(server.store, parse_query(q), start_ns=0, end_ns=2**62, limit=100)
            return len(res.lines)

        assert count('{level="debug"}') == 0
        assert count('{level="info"}') == 0  # 30 days is long past for 1970 as well
    finally:
        await server.stop(1.0)


async def test_server_keeps_what_retention_does_not_cover(tmp_path: Path) -> None:
    import time

    from gyroscope.logs import Entry, LogsConfig, LogServer, parse_query, run_log_query

    cfg = LogsConfig.model_validate(
        {
            "listen": "127.0.0.1:0",
            "checkpoint_seconds": 0,
            "scrub_seconds": 0,
            "retention": {
                "max_age": "0",
                "streams": [{"selector": '{level="debug"}', "max_age": "1h"}],
            },
        }
    )
    server = LogServer(cfg, tmp_path / "logs")
    await server.start()
    try:
        await server.ingest(entries(5, labels=DEBUG) + entries(5, labels=INFO))  # from 1970
        server.store.rotate()
        await server.ingest([Entry(canonical(DEBUG), b"fresh debug", time.time_ns())])
        server.store.rotate()
        await server._retention()
        res = run_log_query(
            server.store,
            parse_query('{service="api"}'),
            start_ns=0,
            end_ns=2**62,
            limit=100,
            backward=False,
        )
        kept = [(ln.labels["level"], ln.line.split(" x")[0]) for ln in res.lines]
        assert kept == [("info", f"line {i}") for i in range(5)] + [("debug", "fresh debug")]
    finally:
        await server.stop(1.0)
