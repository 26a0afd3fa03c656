"""Round trips: byte-identical content and metadata, partial restores, dump, incremental, dedup."""

from __future__ import annotations

import io
import itertools
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.backup import (
    Repository,
    SnapshotNotFound,
    backup,
    check,
    dump,
    find_snapshot,
    list_snapshots,
    restore,
)
from gyroscope.backup._restore import _batches

from .conftest import make_tree, snapshot_of


def test_round_trip_is_byte_identical_with_metadata(repo: Repository, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    snap = backup(repo, [str(src)]).snapshot
    out = tmp_path / "out"
    stats = restore(repo, snap, out)
    assert stats.errors == []
    restored = out / str(src).lstrip("/")
    assert snapshot_of(restored) == snapshot_of(src)
    assert os.lstat(restored / "hard").st_ino == os.lstat(restored / "docs" / "a.txt").st_ino
    assert os.lstat(restored / "sparse").st_blocks * 512 < os.lstat(restored / "sparse").st_size
    assert check(repo, read_data=True).ok


def test_restore_a_subtree_a_single_file_and_dump(repo: Repository, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    snap = backup(repo, [str(src)]).snapshot
    out = tmp_path / "out"
    restore(repo, snap, out, include=[f"{src}/docs/deep"])
    base = out / str(src).lstrip("/")
    assert (base / "docs" / "deep" / "b.txt").read_text() == "nested\n"
    assert not (base / "big.bin").exists()
    restore(repo, snap, out, include=[f"{src}/big.bin"])
    assert (base / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    buf = io.BytesIO()
    assert dump(repo, snap, f"{src}/docs/a.txt", buf) == 6000
    assert buf.getvalue() == (src / "docs" / "a.txt").read_bytes()
    with pytest.raises(SnapshotNotFound):
        dump(repo, snap, f"{src}/nope", io.BytesIO())
    with pytest.raises(SnapshotNotFound):
        restore(repo, snap, out, include=["/not/there"])


def test_incremental_skips_unchanged_files_and_full_rereads(
    repo: Repository, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    first = backup(repo, [str(src)]).stats
    assert first.files_read == first.files - 1  # the hard link's second name is not read again
    (src / "docs" / "a.txt").write_text("changed\n")
    second = backup(repo, [str(src)])
    assert second.stats.files_read == 1
    assert second.stats.files_unchanged == first.files - 2
    assert second.stats.bytes_stored < 100_000  # the 3 MB binary was not stored again
    full = backup(repo, [str(src)], full=True).stats
    assert full.files_read == first.files - 1
    assert full.chunks_new <= 1  # read again, but deduplicated: only the tree blob can be new
    out = tmp_path / "out"
    restore(repo, second.snapshot, out)
    assert (out / str(src).lstrip("/") / "docs" / "a.txt").read_text() == "changed\n"


def test_every_snapshot_restores_by_itself(repo: Repository, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    states = []
    for i in range(3):
        (src / "docs" / "a.txt").write_text(f"version {i}\n")
        states.append(snapshot_of(src))
        backup(repo, [str(src)])
    for i, snap in enumerate(list_snapshots(repo)):
        out = tmp_path / f"out{i}"
        restore(repo, snap, out)
        assert snapshot_of(out / str(src).lstrip("/")) == states[i]


def test_point_in_time_picks_the_last_snapshot_before(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("one")
    first = backup(repo, [str(src)]).snapshot
    time.sleep(0.01)
    (src / "f").write_text("two")
    second = backup(repo, [str(src)]).snapshot
    assert find_snapshot(repo, "latest").id == second.id
    assert find_snapshot(repo, "latest", before=first.time).id == first.id
    assert find_snapshot(repo, "latest", before=second.time + timedelta(seconds=1)).id == second.id
    with pytest.raises(SnapshotNotFound):
        find_snapshot(repo, "latest", before=datetime(2000, 1, 1, tzinfo=UTC))
    assert find_snapshot(repo, first.id[:6]).id == first.id


def test_in_place_restore_rewrites_only_what_differs(repo: Repository, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    snap = backup(repo, [str(src)]).snapshot
    expected = snapshot_of(src)
    (src / "docs" / "a.txt").write_text("ransomware was here")
    (src / "big.bin").unlink()
    stats = restore(repo, snap, Path("/"), include=[str(src)], verify=True)
    assert stats.errors == []
    assert stats.files == 2  # a.txt and big.bin
    assert stats.files_skipped > 50
    assert snapshot_of(src) == expected


def test_dedup_across_paths_and_snapshots(repo: Repository, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    payload = os.urandom(2_000_000)
    (one / "x").write_bytes(payload)
    (two / "y").write_bytes(payload)
    first = backup(repo, [str(one)]).stats
    second = backup(repo, [str(two)]).stats
    assert first.bytes_stored > 2_000_000
    assert second.bytes_stored < 10_000
    assert second.dedup_ratio > 100


def test_hard_link_restored_alone_gets_its_content(repo: Repository, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    snap = backup(repo, [str(src)]).snapshot
    out = tmp_path / "out"
    stats = restore(
        repo, snap, out, include=[f"{src}/hard"]
    )  # its first name, docs/a.txt, is not asked for
    assert stats.errors == []
    base = out / str(src).lstrip("/")
    assert (base / "hard").read_bytes() == (src / "hard").read_bytes()
    assert not (base / "docs" / "a.txt").exists()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "a/b", "c", "d/e/f"]), st.integers(0, 5 << 20)),
        max_size=300,
    )
)
def test_restore_batches_keep_one_directory_each_and_spread_threads(
    files: list[tuple[str, int]],
) -> None:
    """Every file lands in exactly one batch; a batch never mixes directories or grows past its
    bounds; and no directory's batches come two in a row while another directory has work left,
    so parallel threads do not queue on one directory's lock."""
    entries: list[dict[str, Any]] = [
        {"p": f"{d}/f{i}", "t": "f", "s": s} for i, (d, s) in enumerate(files)
    ]
    batches = _batches(entries, count=8, size=4 << 20)
    assert sorted(e["p"] for b in batches for e in b) == sorted(e["p"] for e in entries)
    for batch in batches:
        assert batch
        assert len({e["p"].rpartition("/")[0] for e in batch}) == 1
        assert len(batch) <= 8
        assert sum(e["s"] for e in batch[:-1]) < 4 << 20  # a batch closes once past its size
        # within a directory, files keep their order (consecutive files share its entry)
        order = [int(e["p"].rpartition("/f")[2]) for e in batch]
        assert order == sorted(order)
    dirs = [b[0]["p"].rpartition("/")[0] for b in batches]
    remaining = {d: dirs.count(d) for d in set(dirs)}
    for here, after in itertools.pairwise(dirs):
        remaining[here] -= 1
        if here == after:
            assert all(n == 0 for d, n in remaining.items() if d != here)


def test_restore_threads_default_to_cores_locally_and_twice_that_remotely(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gyroscope.backup._backend import AppendOnly
    from gyroscope.backup._restore import default_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_threads(repo) == 2  # CPU-bound: more threads only contend for the GIL
    local = repo.backend
    repo.backend = AppendOnly(local)  # type: ignore[assignment]
    assert default_threads(repo) == 2
    repo.backend = object()  # type: ignore[assignment]  # SFTP or HTTP: reads wait on the network
    assert default_threads(repo) == 4
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert default_threads(repo) == 8
    repo.backend = local
