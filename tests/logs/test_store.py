"""The segment store: durable appends, recovery, damage reporting, de-duplication."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gyroscope.logs import Entry, LogStore, LogStoreError, StoreLockedError, canonical, verify_store
from gyroscope.logs._merkle import leaf_hash as _unused  # noqa: F401 - import check
from gyroscope.logs._merkle import root
from gyroscope.logs._record import encode

from .conftest import entries


def reopen(store: LogStore) -> LogStore:
    store.close()
    return LogStore(store.path, segment_bytes=store.segment_bytes, checkpoint_every=50).open()


def everything(store: LogStore) -> list[bytes]:
    return [r.line for r in store.select(lambda _l: True, backward=False)]


def test_append_rotate_reopen_keeps_every_record(store: LogStore) -> None:
    for k in range(10):
        store.append(entries(20, start=k * 20))
    assert len(store.segments) > 3  # 4 KiB segments rotate often
    before = everything(store)
    assert len(before) == 200
    assert before[0].startswith(b"line 0 ") and before[-1].startswith(b"line 199 ")
    root_before = store.merkle.root()
    store = reopen(store)
    assert everything(store) == before
    assert store.next_seq == 200
    assert store.merkle.root() == root_before
    assert verify_store(store).ok
    store.close()


def test_select_filters_streams_time_and_substrings(store: LogStore) -> None:
    store.append(entries(30, labels={"service": "api", "level": "error"}))
    store.append(entries(30, start=100, labels={"service": "web", "level": "info"}))
    api = canonical({"service": "api", "level": "error"})
    got = list(store.select(lambda s: s == api, needles=[b"line 1"], backward=False))
    assert {r.labels for r in got} == {api}
    exact = [r.line.split()[1] for r in got if b"line 1" in r.line]  # needles only pre-filter
    assert exact == [b"1"] + [str(i).encode() for i in range(10, 20)]
    timed = list(store.select(lambda _s: True, start_ns=1_000_000_105, end_ns=1_000_000_108))
    assert [r.ts_ns for r in timed] == [1_000_000_107, 1_000_000_106, 1_000_000_105]


def test_torn_tail_is_cut_to_the_last_complete_batch(store: LogStore) -> None:
    store.append(entries(5))
    seg = store.segments[-1].path
    store.close()
    lab = canonical({"service": "api"}).encode()
    partial_batch = encode(5, 1, lab, b"unacked 1", batch_end=False) + encode(
        6, 1, lab, b"unacked 2", batch_end=False
    )
    torn = encode(7, 1, lab, b"torn record")[:-4]
    with open(seg, "ab") as fh:
        fh.write(partial_batch + torn)
    store = LogStore(store.path, segment_bytes=4096).open()
    assert store.next_seq == 5
    assert [r.line for r in store.select(lambda _s: True, backward=False)][-1].startswith(b"line 4")
    assert store.damage == []
    assert store.append(entries(1, start=5)).first == 5
    assert verify_store(store).ok
    store.close()


def test_flipped_bit_is_reported_with_offset_and_the_rest_is_served(store: LogStore) -> None:
    for k in range(6):
        store.append(entries(10, start=k * 10))
    victim = store.segments[0]
    offset = victim.offsets[3]
    store.close()
    data = bytearray(victim.path.read_bytes())
    data[offset + 30] ^= 0x01
    victim.path.write_bytes(bytes(data))
    victim.idx_path.unlink()  # force a rescan, as after a crash without an index
    store = LogStore(store.path, segment_bytes=4096).open()
    assert len(store.damage) == 1
    assert store.damage[0].offset == offset
    assert "CRC32C" in store.damage[0].reason
    lines = everything(store)
    assert len(lines) == 59  # everything except the damaged record
    with pytest.raises(LogStoreError, match=r"missing|offset"):
        store.get(3)
    report = verify_store(store)
    assert not report.ok
    assert any(p.kind == "corrupt" and p.offset == offset for p in report.problems)
    store.close()


def test_damage_found_by_a_query_is_reported(store: LogStore) -> None:
    store.append(entries(10))
    seg = store.segments[-1]
    offset = seg.offsets[4]
    with open(seg.path, "r+b") as fh:  # corrupt behind the running store's back
        fh.seek(offset + 20)
        byte = fh.read(1)
        fh.seek(offset + 20)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert len(everything(store)) == 9
    assert [d.offset for d in store.damage] == [offset]


def test_batch_key_deduplicates_across_restarts(store: LogStore) -> None:
    first = store.append(entries(3), key=b"file:0:120")
    again = store.append(entries(3), key=b"file:0:120")
    assert again.duplicate and again.first == first.first
    store = reopen(store)
    assert store.append(entries(3), key=b"file:0:120").duplicate
    assert store.next_seq == 3
    store.close()


def test_damaged_index_is_rebuilt(store: LogStore) -> None:
    for k in range(4):
        store.append(entries(20, start=k * 20))
    store.wait_indexed()
    sealed = store.segments[0]
    store.close()
    sealed.idx_path.write_bytes(b"not an index")
    store = LogStore(store.path, segment_bytes=4096).open()
    assert len(everything(store)) == 80
    store.close()


def test_second_writer_is_refused_readers_are_not(store: LogStore, tmp_path: Path) -> None:
    store.append(entries(2))
    with pytest.raises(StoreLockedError, match="another process"):
        LogStore(store.path).open()
    reader = LogStore(store.path).open(readonly=True)
    assert [r.line for r in reader.select(lambda _s: True, backward=False)] == everything(store)
    with pytest.raises(LogStoreError, match="read-only"):
        reader.append(entries(1))
    reader.close()


def test_leaves_are_rebuilt_after_losing_their_tail(store: LogStore) -> None:
    store.append(entries(40))
    expected = root([r.leaf for r in store.select(lambda _s: True, backward=False)])
    store.close()
    leaves = store.path / "leaves"
    os.truncate(leaves, 32 * 10 + 7)  # unsynced leaf hashes lost in a crash
    store = LogStore(store.path).open()
    assert store.merkle.size == 40
    assert store.merkle.root() == expected
    store.close()


def test_oversized_line_is_refused_and_nothing_written(store: LogStore) -> None:
    big = Entry(canonical({"job": "a"}), b"x" * (300 * 1024), 1)
    with pytest.raises(LogStoreError, match="exceeds"):
        store.append([*entries(2), big])
    assert store.next_seq == 0
    assert everything(store) == []


def test_queries_while_appending_never_see_damage_or_errors(store: LogStore) -> None:
    import threading

    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                lines = [r.line for r in store.select(lambda _s: True, needles=[b"line 1"])]
                assert all(line.startswith(b"line ") for line in lines)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for k in range(150):
        store.append(entries(7, start=k * 7))
    done.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert store.damage == []
    assert len(everything(store)) == 1050


def test_get_of_a_damaged_record_names_file_and_offset(store: LogStore) -> None:
    from gyroscope.logs import CorruptRecordError

    store.append(entries(3))
    seg = store.segments[-1]
    with open(seg.path, "r+b") as fh:
        fh.seek(seg.offsets[1] + 25)
        fh.write(b"\x00\x00")
    with pytest.raises(CorruptRecordError) as info:
        store.get(1)
    assert info.value.offset == seg.offsets[1] and info.value.path == str(seg.path)
    assert "CRC32C mismatch" in str(info.value)


def test_batch_framing_equals_record_by_record_encoding() -> None:
    """The batch hot loop writes exactly the bytes (and leaf hashes) of ``encode``/``leaf_hash``
    record by record, with the batch-end flag and key on the last record only."""
    import random

    from gyroscope.logs._record import decode, encode, frame_batch, leaf_hash, leaf_hashes

    rng = random.Random(5)
    for _ in range(50):
        n = rng.randint(1, 40)
        ts = [rng.randint(-(2**62), 2**62) for _ in range(n)]
        labels = [rng.choice([b'{a="b"}', b'{c="d",e="f"}']) for _ in range(n)]
        lines = [rng.randbytes(rng.randint(0, 300)) for _ in range(n)]
        key = rng.choice([b"", b"file:1:2"])
        data, sizes = frame_batch(9, ts, labels, lines, key)
        expected = [
            encode(
                9 + i, ts[i], labels[i], lines[i], key if i == n - 1 else b"", batch_end=i == n - 1
            )
            for i in range(n)
        ]
        assert data == b"".join(expected)
        assert sizes == [len(e) for e in expected]
        leaves = leaf_hashes(ts, labels, lines)
        assert leaves == [leaf_hash(ts[i], labels[i], lines[i]) for i in range(n)]
        assert decode(data, len(data) - sizes[-1]).record.leaf == leaves[-1]
