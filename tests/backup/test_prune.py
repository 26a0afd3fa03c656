"""forget + prune: frees space, keeps every remaining snapshot restorable, never races a backup."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from gyroscope.backup import (
    RepoLock,
    Repository,
    RepositoryLockedError,
    RetentionPolicy,
    Secret,
    backup,
    check,
    forget,
    list_snapshots,
    live_locks,
    prune,
    remove_stale_locks,
    restore,
)

from .conftest import snapshot_of


def _repo_bytes(repo: Repository) -> int:
    return sum(i.size for i in repo.backend.list("data"))


def test_forget_and_prune_free_space_and_keep_the_rest_restorable(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    states = {}
    for i in range(4):
        for old in src.iterdir():
            old.unlink()
        (src / f"v{i}").write_bytes(os.urandom(1_000_000))
        (src / "common").write_text("same in every snapshot")
        states[backup(repo, [str(src)]).snapshot.id] = snapshot_of(src)
    size_before = _repo_bytes(repo)
    keep, removed, _ = forget(repo, RetentionPolicy(last=2))
    assert len(keep) == 2 and len(removed) == 2
    stats = prune(repo, min_pack_age=0)
    assert stats.bytes_freed >= 1_900_000
    assert _repo_bytes(repo) < size_before - 1_900_000
    assert check(repo, read_data=True).ok
    for snap in list_snapshots(repo):
        out = tmp_path / snap.id
        assert restore(repo, snap, out).errors == []
        assert snapshot_of(out / str(src).lstrip("/")) == states[snap.id]
    again = backup(repo, [str(src)])  # the index is consistent after prune: dedup still works
    assert again.stats.bytes_stored < 10_000


def test_young_packs_are_never_pruned(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(500_000))
    backup(repo, [str(src)])
    (src / "a").write_bytes(os.urandom(500_000))
    backup(repo, [str(src)])
    forget(repo, RetentionPolicy(last=1))
    stats = prune(repo)  # default margin: an hour
    assert stats.packs_deleted == 0 and stats.packs_kept_young >= 1
    assert check(repo, read_data=True).ok


def test_prune_refuses_while_a_backup_holds_a_live_lock(repo: Repository) -> None:
    with (
        RepoLock(repo, "shared"),
        pytest.raises(RepositoryLockedError, match="run again when they finish"),
    ):
        prune(repo, min_pack_age=0)
    assert live_locks(repo) == []


def test_a_stale_lock_blocks_nothing(repo: Repository, tmp_path: Path) -> None:
    doc = {"kind": "exclusive", "host": "gone", "pid": 1, "refreshed": time.time() - 3600}
    repo.backend.write("locks/deadbeef", json.dumps(doc).encode())
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    backup(repo, [str(src)])  # backups never wait for locks
    prune(repo, min_pack_age=0)  # the dead prune's lock expired: removed, not waited for
    assert not repo.backend.exists("locks/deadbeef")
    assert remove_stale_locks(repo) == 0


def test_forget_without_policy_is_refused(repo: Repository) -> None:
    from gyroscope.backup import RepositoryError

    with pytest.raises(RepositoryError, match="needs a policy"):
        forget(repo, RetentionPolicy())


def test_prune_defers_when_a_snapshot_appears_meanwhile(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gyroscope.backup import _prune

    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(300_000))
    snap = backup(repo, [str(src)]).snapshot
    name = f"snapshots/{snap.id}"
    saved = repo.backend.read(name)
    repo.backend.delete(name)  # forgotten: its chunks look unused to prune
    original = _prune._someone_arrived

    def backup_commits_meanwhile(*args: object) -> bool:
        repo.backend.write(name, saved)  # a concurrent backup reusing those chunks commits now
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_prune, "_someone_arrived", backup_commits_meanwhile)
    stats = prune(repo, min_pack_age=0)
    assert stats.deferred and stats.packs_deleted == 0
    assert check(repo, read_data=True).ok
    assert restore(repo, list_snapshots(repo)[0], tmp_path / "out").errors == []


def test_concurrent_backups_do_not_block_each_other(repo: Repository, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from gyroscope.backup import Secret

    from .conftest import PASSWORD, make_tree

    sources = [make_tree(tmp_path / f"src{i}", seed=i) for i in range(3)]
    repos = [Repository.open(repo.location, Secret(password=PASSWORD)) for _ in sources]
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(lambda pair: backup(pair[0], [str(pair[1])]), zip(repos, sources, strict=True))
        )
    assert len({r.snapshot.id for r in results}) == 3
    assert live_locks(repo) == []
    assert check(repo, read_data=True).ok
    for result, src in zip(results, sources, strict=True):
        out = tmp_path / f"out-{result.snapshot.short_id}"
        assert restore(repo, result.snapshot, out).errors == []
        assert snapshot_of(out / str(src).lstrip("/")) == snapshot_of(src)


def test_prune_refused_while_a_frozen_backup_holds_its_lock(
    repo: Repository, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from .conftest import PASSWORD

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}").write_bytes(os.urandom(2 << 20))
    script = (
        "import sys, time\n"
        "from gyroscope.backup import Repository, Secret, backup\n"
        "repo = Repository.open(sys.argv[1], Secret(password=sys.argv[3].encode()))\n"
        "write = repo.backend.write\n"
        "def slow(name, data):\n"
        "    time.sleep(0.3)\n"
        "    write(name, data)\n"
        "repo.backend.write = slow\n"
        "backup(repo, [sys.argv[2]])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, repo.location, str(src), PASSWORD.decode()]
    )
    try:
        deadline = time.monotonic() + 60
        while not live_locks(repo):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGSTOP)  # frozen mid-backup: its lock is still fresh
        with pytest.raises(RepositoryLockedError):
            prune(repo, min_pack_age=0)
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert check(repo, read_data=True).ok
    assert len(list_snapshots(repo)) == 1


def test_forget_limited_to_one_set_of_paths(repo: Repository, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        d.mkdir()
        (d / "f").write_text(d.name)
    for _ in range(3):
        backup(repo, [str(one)])
        backup(repo, [str(two)])
    _, removed, _ = forget(repo, RetentionPolicy(last=1), paths=[str(one)])
    assert len(removed) == 2
    left = list_snapshots(repo)
    assert sum(s.paths == [str(one)] for s in left) == 1
    assert sum(s.paths == [str(two)] for s in left) == 3


def test_backup_whose_lock_went_stale_does_not_commit_chunks_a_prune_removed(
    repo: Repository, secret: Secret, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backups take no exclusive lock: a backup frozen past ``stale_after`` loses its lock and a
    prune may delete chunks it reuses. It must notice before committing and leave no snapshot
    that points at missing data; the next run stores the data again."""
    from gyroscope.backup import MissingDataError, _archiver

    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(300_000))
    (src / "b").write_bytes(os.urandom(300_000))
    first = backup(repo, [str(src)]).snapshot
    (src / "b").write_bytes(os.urandom(300_000))
    original = _archiver._revalidate

    def prune_while_frozen(*args: Any) -> None:
        other = Repository.open(repo.location, secret)
        other.backend.delete(f"snapshots/{first.id}")  # forgotten meanwhile
        later = time.time() + 3600  # the frozen backup's lock is long stale by then
        stats = prune(other, min_pack_age=0, clock=lambda: later)
        assert stats.packs_deleted >= 1 and not stats.deferred
        original(*args)

    monkeypatch.setattr(_archiver, "_revalidate", prune_while_frozen)
    with pytest.raises(MissingDataError, match="concurrent prune removed"):
        backup(repo, [str(src)])  # "a" is unchanged: its chunk was reused, then pruned
    monkeypatch.undo()
    assert list_snapshots(repo) == []
    repo.load_index()
    again = backup(repo, [str(src)]).snapshot
    out = tmp_path / "out"
    assert restore(repo, again, out).errors == []
    assert snapshot_of(out / str(src).lstrip("/")) == snapshot_of(src)
    assert check(repo, read_data=True).ok


def test_a_killed_prunes_fresh_lock_never_blocks_a_backup(repo: Repository, tmp_path: Path) -> None:
    """A prune killed with -9 leaves an exclusive lock that still looks live: backups go on at
    once; the next prune waits only until the lock is stale, then removes it."""
    doc = {"kind": "exclusive", "host": "elsewhere", "pid": 4242, "refreshed": time.time()}
    repo.backend.write("locks/0badc0de", json.dumps(doc).encode())
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(100_000))
    assert backup(repo, [str(src)]).snapshot  # no wait, no error
    with pytest.raises(RepositoryLockedError, match="expire after 300 s"):
        prune(repo, min_pack_age=0)
    later = time.time() + 301
    prune(repo, min_pack_age=0, clock=lambda: later)
    assert not repo.backend.exists("locks/0badc0de")
    assert live_locks(repo) == []
