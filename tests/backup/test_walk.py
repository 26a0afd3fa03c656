"""The background listing: order, batching, vanished sources, and no thread left behind."""

from __future__ import annotations

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
