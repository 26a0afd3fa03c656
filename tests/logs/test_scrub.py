"""verify/scrub: a flipped bit, truncation, deletion, reordering and forged edits are all found, with
the file and byte offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from gyroscope.logs import LogStore, verify_store
from gyroscope.logs._record import decode, encode

from .conftest import entries


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Path, list[Path]]:
    store = LogStore(tmp_path / "logs", segment_bytes=2048, checkpoint_every=25).open()
    for k in range(8):
        store.append(entries(10, start=k * 10))
    store.checkpoint()
    paths = [s.path for s in store.segments if s.size]
    store.close()
    return tmp_path / "logs", paths


def check(path: Path, *, deep: bool = False) -> list[tuple[str, str, int | None, int | None]]:
    store = LogStore(path).open(readonly=True)
    try:
        report = verify_store(store, deep=deep)
    finally:
        store.close()
    return [(p.kind, Path(p.path).name, p.offset, p.seq) for p in report.problems]


def frames(path: Path) -> list[tuple[int, int, int]]:
    data = path.read_bytes()
    out, off = [], 0
    while off < len(data):
        f = decode(data, off)
        out.append((f.offset, f.end, f.record.seq))
        off = f.end
    return out


def test_clean_store_verifies_fast_by_seals_and_deep(sealed: tuple[Path, list[Path]]) -> None:
    assert check(sealed[0]) == []
    assert check(sealed[0], deep=True) == []
    store = LogStore(sealed[0]).open(readonly=True)
    fast, deep = verify_store(store), verify_store(store, deep=True)
    store.close()
    assert fast.sealed == len(sealed[1]) - 1  # all but the active segment
    assert deep.sealed == 0
    assert fast.records == deep.records == 80


def test_flipped_bit(sealed: tuple[Path, list[Path]]) -> None:
    root, segs = sealed
    off, _, _ = frames(segs[1])[2]
    data = bytearray(segs[1].read_bytes())
    data[off + 40] ^= 0x10
    segs[1].write_bytes(bytes(data))
    problems = check(root)
    assert ("corrupt", segs[1].name, off, None) in problems


def test_truncation_inside_a_record(sealed: tuple[Path, list[Path]]) -> None:
    root, segs = sealed
    off, end, _ = frames(segs[2])[-1]
    with open(segs[2], "r+b") as fh:
        fh.truncate(end - 5)
    problems = check(root)
    assert ("truncated", segs[2].name, off, None) in problems


def test_truncation_of_the_last_segment_at_a_record_boundary(
    sealed: tuple[Path, list[Path]],
) -> None:
    root, segs = sealed
    last = segs[-1]
    cut = frames(last)[-3]
    with open(last, "r+b") as fh:
        fh.truncate(cut[0])
    kinds = {p[0] for p in check(root)}
    assert "truncated" in kinds  # the signed checkpoint covers records that are gone


def test_deleted_record(sealed: tuple[Path, list[Path]]) -> None:
    root, segs = sealed
    off, end, seq = frames(segs[1])[3]
    data = segs[1].read_bytes()
    segs[1].write_bytes(data[:off] + data[end:])
    problems = check(root)
    assert ("deleted", segs[1].name, off, seq) in problems


def test_reordered_records(sealed: tuple[Path, list[Path]]) -> None:
    root, segs = sealed
    fr = frames(segs[1])
    (a0, a1, _sa), (b0, b1, sb) = fr[1], fr[2]
    data = segs[1].read_bytes()
    segs[1].write_bytes(data[:a0] + data[b0:b1] + data[a0:a1] + data[b1:])
    problems = check(root)
    assert ("reordered", segs[1].name, a0, sb) in problems


def test_deleted_segment(sealed: tuple[Path, list[Path]]) -> None:
    root, segs = sealed
    segs[2].unlink()
    segs[2].with_suffix(".idx").unlink(missing_ok=True)
    kinds = [p[0] for p in check(root)]
    assert "deleted" in kinds


def test_edit_with_a_recomputed_crc_is_caught_by_the_merkle_leaf(
    sealed: tuple[Path, list[Path]],
) -> None:
    root, segs = sealed
    off, end, seq = frames(segs[1])[4]
    data = segs[1].read_bytes()
    rec = decode(data, off).record
    forged = encode(rec.seq, rec.ts_ns, rec.labels.encode(), rec.line.replace(b"x", b"y"))
    segs[1].write_bytes(data[:off] + forged + data[end:])
    assert ("tampered", segs[1].name, off, seq) in check(root)


def test_rewritten_leaves_file_is_caught_by_the_signed_checkpoint(
    sealed: tuple[Path, list[Path]],
) -> None:
    root, segs = sealed
    off, end, seq = frames(segs[1])[4]
    data = segs[1].read_bytes()
    rec = decode(data, off).record
    forged = encode(rec.seq, rec.ts_ns, rec.labels.encode(), b"all is well")
    segs[1].write_bytes(data[:off] + forged + data[end:])
    leaves = bytearray((root / "leaves").read_bytes())
    leaves[seq * 32 : seq * 32 + 32] = decode(forged, 0).record.leaf
    (root / "leaves").write_bytes(bytes(leaves))
    problems = check(root)
    # the segment's signed seal names the file; the signed checkpoint catches the leaves file
    assert [(p[0], p[1]) for p in problems] == [("tampered", segs[1].name), ("tampered", "")]


def test_forged_checkpoint_signature(sealed: tuple[Path, list[Path]]) -> None:
    root, _ = sealed
    log = root / "checkpoints" / "checkpoints.log"
    lines = log.read_text().splitlines()
    lines[-1] = lines[-1].replace('"size": ', '"size": 1')  # claim a different size
    log.write_text("\n".join(lines) + "\n")
    kinds = [p[0] for p in check(root)]
    assert "checkpoint" in kinds
