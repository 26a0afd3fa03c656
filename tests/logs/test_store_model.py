"""A hypothesis state machine: the store behaves like a plain list, across restarts and redactions."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gyroscope.logs import Entry, LogStore, _select, canonical, redact, verify_store
from gyroscope.logs._merkle import root
from gyroscope.logs._record import leaf_hash

STREAMS = [
    canonical({"service": s, "level": lv}) for s in ("api", "web") for lv in ("info", "error")
]
entry = st.builds(
    Entry,
    st.sampled_from(STREAMS),
    st.binary(min_size=0, max_size=120).filter(lambda b: b"\n" not in b),
    st.integers(0, 10**12),
)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="gyro-logs-model-"))
        self.store = self._open()
        self.model: list[tuple[str, bytes, int, bool]] = []
        self.leaves: list[bytes] = []
        self.keys: dict[bytes, int] = {}
        # always take the lazy substring search (other tests cover the decode-all path)
        self._threshold, _select._SCAN_ALL_BELOW = _select._SCAN_ALL_BELOW, 0

    def _open(self) -> LogStore:
        return LogStore(self.dir, segment_bytes=2048, checkpoint_every=17, bloom=False).open()

    @rule(
        batch=st.lists(entry, min_size=1, max_size=12),
        key=st.sampled_from([b"", b"", b"k1", b"k2", b"k3"]),
    )
    def append(self, batch: list[Entry], key: bytes) -> None:
        result = self.store.append(batch, key=key)
        if key and key in self.keys:
            assert result.duplicate
            return
        assert not result.duplicate
        assert result.first == len(self.model)
        self.model.extend((e.labels, e.line, e.ts_ns, False) for e in batch)
        self.leaves.extend(leaf_hash(e.ts_ns, e.labels.encode(), e.line) for e in batch)
        if key:
            self.keys[key] = result.first

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def redact_one(self, data: st.DataObject) -> None:
        seq = data.draw(st.integers(0, len(self.model) - 1))
        redact(self.store, seq)
        labels, _line, ts, _ = self.model[seq]
        self.model[seq] = (labels, b"", ts, True)

    @rule(stream=st.sampled_from(STREAMS), needle=st.binary(min_size=1, max_size=3))
    def query_matches_model(self, stream: str, needle: bytes) -> None:
        got = [
            r.seq
            for r in self.store.select(lambda s: s == stream, needles=[needle], backward=False)
            if needle in r.line and not r.redacted
        ]
        back = [
            r.seq
            for r in self.store.select(lambda s: s == stream, needles=[needle], backward=True)
            if needle in r.line and not r.redacted
        ]
        assert back == got[::-1]
        want = [
            i
            for i, (lab, line, _, red) in enumerate(self.model)
            if lab == stream and needle in line and not red
        ]
        assert got == want

    @invariant()
    def same_records_and_root(self) -> None:
        records = list(self.store.select(lambda _s: True, backward=False))
        assert [(r.labels, r.line, r.ts_ns, r.redacted) for r in records] == self.model
        # redacted records keep the leaf hash of the line they replaced
        assert [r.leaf for r in records] == self.leaves
        assert self.store.merkle.size == len(self.model)
        assert self.store.merkle.root() == root(self.leaves)

    def teardown(self) -> None:
        try:
            assert verify_store(self.store).ok
            deep = verify_store(self.store, deep=True)
            assert deep.ok and deep.records == len(self.model)
        finally:
            _select._SCAN_ALL_BELOW = self._threshold
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestStoreModel = StoreMachine.TestCase
