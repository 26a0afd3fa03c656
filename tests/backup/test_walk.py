"""The background listing: order, batching, vanished sources, and no thread left behind."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from gyroscope.backup import Repository, SourceError, Walk, backup
from gyroscope.backup import _walk as walk_module


def _listing(walk: Walk) -> list[str]:
    return [arc for batch in walk for _, arc, _ in batch]


def _walk_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "backup-walk"]


def test_listing_is_sorted_parents_first_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walk_module, "BATCH", 7)  # many batches, and more than the queue holds
    monkeypatch.setattr(walk_module, "AHEAD", 2)
    for d in ("b", "a", "a/z"):
        (tmp_path / d).mkdir()
    for i in range(30):
        (tmp_path / "a" / "z" / f"f{i:02}").write_text("x")
    (tmp_path / "b" / "g").write_text("y")
    walk = Walk([str(tmp_path)])
    arcs = _listing(walk)
    walk.close()
    root = str(tmp_path).lstrip("/")
    rel = [a[len(root) :] for a in arcs]
    assert rel[:4] == ["", "/a", "/a/z", "/a/z/f00"]
    assert rel[-2:] == ["/b", "/b/g"]
    assert len(rel) == 1 + 3 + 30 + 1
    assert not _walk_threads()


def test_close_before_consuming_stops_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walk_module, "BATCH", 1)
    monkeypatch.setattr(walk_module, "AHEAD", 1)
    for i in range(20):
        (tmp_path / f"f{i}").write_text("x")
    walk = Walk([str(tmp_path)])  # blocks on the full queue: nobody reads
    walk.close()
    assert not _walk_threads()


def test_missing_source_is_one_clear_error(tmp_path: Path) -> None:
    walk = Walk([str(tmp_path / "nope")])
    with pytest.raises(SourceError, match="vanished"):
        _listing(walk)
    walk.close()


def test_backup_with_a_walk_for_other_paths_is_refused(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    walk = Walk([str(tmp_path)])
    with pytest.raises(ValueError, match="other paths"):
        backup(repo, [str(tmp_path / "a")], walk=walk)
    assert not _walk_threads()


def test_prestarted_walk_gives_the_same_snapshot(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("content")
    first = backup(repo, [str(src)]).snapshot
    second = backup(repo, [str(src)], walk=Walk([str(src)])).snapshot
    strip = lambda snap: [{k: v for k, v in e.items() if k != "at"} for e in snap.entries(repo)]  # noqa: E731
    assert strip(first) == strip(second)
    assert not _walk_threads()


def test_names_that_are_not_utf8_round_trip(repo: Repository, tmp_path: Path) -> None:
    from gyroscope.backup import restore

    src = tmp_path / "src"
    src.mkdir()
    names = [b"caf\xe9.txt", "café-utf8.txt".encode()]  # Latin-1 bytes, then valid UTF-8
    for raw in names:
        with open(os.path.join(os.fsencode(src), raw), "wb") as fh:
            fh.write(raw)
    snap = backup(repo, [str(src)]).snapshot
    again = backup(repo, [str(src)]).snapshot  # the tree is read back as the parent
    assert again.stats["files_unchanged"] == 2
    out = tmp_path / "out"
    restore(repo, again, out)
    restored = out / str(src).lstrip("/")
    assert sorted(os.listdir(os.fsencode(restored))) == sorted(names)
    for raw in names:
        with open(os.path.join(os.fsencode(restored), raw), "rb") as fh:
            assert fh.read() == raw
    assert snap.id != again.id
