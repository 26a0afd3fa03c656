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
