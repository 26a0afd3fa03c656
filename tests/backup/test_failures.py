"""Bad input and damage: each gives one clear error; the repository stays consistent."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gyroscope.backup import (
    AppendOnlyError,
    CorruptDataError,
    LocalBackend,
    Repository,
    RepositoryNotFound,
    RepositoryVersionError,
    RetentionPolicy,
    Secret,
    SourceError,
    StorageFullError,
    WrongPasswordError,
    backup,
    check,
    forget,
    list_snapshots,
    prune,
    restore,
)
from gyroscope.backup._repo import pack_name

from .conftest import FAST_KDF, make_tree, snapshot_of


def test_wrong_password_is_rejected(repo: Repository) -> None:
    with pytest.raises(WrongPasswordError, match="wrong password"):
        Repository.open(repo.location, Secret(password=b"not it"))


def test_key_file_repository(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    repo = Repository.init(str(tmp_path / "r"), Secret(key_file=key))
    assert Repository.open(repo.location, Secret(key_file=key)).id == repo.id
    other = tmp_path / "other"
    other.write_bytes(os.urandom(32))
    with pytest.raises(WrongPasswordError):
        Repository.open(repo.location, Secret(key_file=other))
    with pytest.raises(WrongPasswordError, match="key file"):
        Repository.open(repo.location, Secret(password=b"x"))


def test_missing_and_newer_repository(repo: Repository, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match="gyro backup init"):
        Repository.open(str(tmp_path / "nothing"), Secret(password=b"x"))
    config = Path(repo.location) / "config"
    doc = json.loads(config.read_text())
    doc["gyroscope_backup"] = 99
    config.write_text(json.dumps(doc))
    with pytest.raises(RepositoryVersionError, match="newer"):
        Repository.open(repo.location, Secret(password=b"anything"))


def _pack_of(repo: Repository, snap_file: Path) -> str:
    """The pack holding the (single) chunk of a small file of the latest snapshot."""
    snap = list_snapshots(repo)[-1]
    entry = next(e for e in snap.entries(repo) if e["p"] == str(snap_file).lstrip("/"))
    return repo.index[bytes.fromhex(entry["c"][0])].pack


def test_corrupt_pack_is_named_and_unaffected_files_restore(
    repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "x").write_bytes(os.urandom(200_000))
    first = backup(repo, [str(src)]).snapshot
    (src / "y").write_bytes(os.urandom(200_000))
    second = backup(repo, [str(src)]).snapshot
    bad = _pack_of(repo, src / "y")
    assert bad != _pack_of_first(repo, first, src / "x")
    path = Path(repo.location) / pack_name(bad)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))

    report = check(repo, read_data=True)
    assert not report.ok
    assert any(bad[:16] in e for e in report.errors)

    stats = restore(repo, second, tmp_path / "out")
    base = tmp_path / "out" / str(src).lstrip("/")
    assert (base / "x").read_bytes() == (src / "x").read_bytes()
    assert (
        len(stats.errors) == 1
        and "y" in stats.errors[0]
        and "fails authentication" in stats.errors[0]
    )
    assert not (base / "y").exists()
    assert restore(repo, first, tmp_path / "out1").errors == []


def _pack_of_first(repo: Repository, snap: object, path: Path) -> str:
    entry = next(e for e in snap.entries(repo) if e["p"] == str(path).lstrip("/"))  # type: ignore[attr-defined]
    return repo.index[bytes.fromhex(entry["c"][0])].pack


def test_missing_pack_is_named_by_structure_check(repo: Repository, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    backup(repo, [str(src)])
    pack = next(iter({e.pack for e in repo.index.values()}))
    (Path(repo.location) / pack_name(pack)).unlink()
    report = check(repo)
    assert any(f"pack {pack[:16]} is missing" in e for e in report.errors)


def test_source_path_missing_at_start(repo: Repository, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        backup(repo, [str(tmp_path / "nope")])
    assert list_snapshots(repo) == []


def test_file_vanishing_mid_backup_is_a_warning(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gyroscope.backup import _archiver

    src = make_tree(tmp_path / "src")
    original = _archiver._Session.store_file

    def vanish_first(self: object, path: str, size: int) -> list[str]:
        if path.endswith("big.bin"):
            os.unlink(path)  # deleted after the directory listing, before the read
        return original(self, path, size)  # type: ignore[arg-type]

    monkeypatch.setattr(_archiver._Session, "store_file", vanish_first)
    result = backup(repo, [str(src)])
    assert any("big.bin: vanished during backup" in w for w in result.stats.warnings)
    monkeypatch.undo()
    out = tmp_path / "out"
    assert restore(repo, result.snapshot, out).errors == []
    assert snapshot_of(out / str(src).lstrip("/")) == snapshot_of(src)
    assert check(repo, read_data=True).ok


def test_symlink_vanishing_mid_backup_is_a_warning(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link removed between the listing and reading its target (a scheduled backup running
    while a tree is deleted) is left out with a warning; the run still commits."""
    from gyroscope.backup import _archiver

    src = make_tree(tmp_path / "src")
    real_readlink = os.readlink

    def vanish(path: str) -> str:
        if str(path).endswith("dangling"):
            os.unlink(path)
        return real_readlink(path)

    monkeypatch.setattr(_archiver.os, "readlink", vanish)
    result = backup(repo, [str(src)])
    monkeypatch.undo()
    assert any("dangling: vanished during backup" in w for w in result.stats.warnings)
    out = tmp_path / "out"
    assert restore(repo, result.snapshot, out).errors == []
    assert snapshot_of(out / str(src).lstrip("/")) == snapshot_of(src)


class FullDisk(LocalBackend):
    """Fault injection: the disk fills after ``budget`` more bytes of packs."""

    def __init__(self, root: Path, budget: int) -> None:
        super().__init__(root)
        self.budget = budget

    def write(self, name: str, data: bytes | bytearray | memoryview) -> None:
        if name.startswith("data/"):
            self.budget -= len(data)
            if self.budget < 0:
                from gyroscope.backup._backend import map_os_error

                raise map_os_error(
                    OSError(errno.ENOSPC, "No space left on device"), self.location, name
                )
        super().write(name, data)


def test_full_disk_keeps_earlier_snapshots(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gyroscope.backup import _pack

    monkeypatch.setattr(_pack, "TARGET_PACK_SIZE", 1 << 20)
    src = make_tree(tmp_path / "src")
    first = backup(repo, [str(src)]).snapshot
    expected = snapshot_of(src)
    for i in range(4):
        (src / f"new{i}").write_bytes(os.urandom(1_500_000))
    repo.backend = FullDisk(Path(repo.location), budget=2_500_000)
    with pytest.raises(StorageFullError, match="no space left"):
        backup(repo, [str(src)])
    reopened = Repository.open(repo.location, Secret(password=b"correct horse battery staple"))
    assert len(list_snapshots(reopened)) == 1
    assert check(reopened, read_data=True).ok
    restore(reopened, first, tmp_path / "out")
    assert snapshot_of(tmp_path / "out" / str(src).lstrip("/")) == expected
    again = backup(reopened, [str(src)])  # space is back: the rerun reuses the packs already stored
    assert again.stats.bytes_stored < 6_000_000 - 1_000_000


def test_append_only_refuses_deletes_and_prune(tmp_path: Path, secret: Secret) -> None:
    repo = Repository.init(str(tmp_path / "r"), secret, kdf=FAST_KDF, append_only=True)
    src = make_tree(tmp_path / "src")
    backup(repo, [str(src)])
    backup(repo, [str(src)])
    reopened = Repository.open(repo.location, secret)
    assert reopened.append_only
    with pytest.raises(AppendOnlyError, match="append-only"):
        forget(reopened, RetentionPolicy(last=1))
    with pytest.raises(AppendOnlyError, match="append-only"):
        prune(reopened, min_pack_age=0)
    snap_file = reopened.backend.list("snapshots")[0].name
    with pytest.raises(AppendOnlyError):
        reopened.backend.delete(snap_file)
    with pytest.raises(AppendOnlyError):
        reopened.backend.write(snap_file, b"garbage")
    assert len(list_snapshots(reopened)) == 2
    assert check(reopened, read_data=True).ok


def test_tampered_snapshot_is_reported(repo: Repository, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    backup(repo, [str(src)])
    name = repo.backend.list("snapshots")[0].name
    path = Path(repo.location) / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="fails authentication"):
        list_snapshots(repo)
    assert not check(repo).ok


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MB tmpfs (needs root, which the test machines have)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip(
            "mounting a tmpfs needs root; test_full_disk_keeps_earlier_snapshots covers this"
        )
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_real_full_disk(tiny_disk: Path, tmp_path: Path, secret: Secret) -> None:
    repo = Repository.init(str(tiny_disk / "repo"), secret, kdf=FAST_KDF)
    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_bytes(os.urandom(1_000_000))
    first = backup(repo, [str(src)]).snapshot
    (src / "large").write_bytes(os.urandom(12_000_000))
    with pytest.raises(StorageFullError, match="no space left"):
        backup(repo, [str(src)])
    reopened = Repository.open(repo.location, secret)
    assert [s.id for s in list_snapshots(reopened)] == [first.id]
    assert check(reopened, read_data=True).ok
    out = tmp_path / "out"
    assert restore(reopened, first, out).errors == []
    assert (out / str(src).lstrip("/") / "small").read_bytes() == (src / "small").read_bytes()


def test_secrets_stay_out_of_reprs_and_process_lists() -> None:
    from gyroscope.backup._sources import PostgresSource, RedisSource, _without_password

    assert "hunter2" not in repr(Secret(password=b"hunter2"))
    assert "hunter2" not in repr(PostgresSource("db", "postgresql://u:hunter2@127.0.0.1/db"))
    assert "hunter2" not in repr(RedisSource("cache", "redis://:hunter2@127.0.0.1:6379/0"))
    assert _without_password("redis://:hunter2@127.0.0.1:6379/0") == (
        "redis://127.0.0.1:6379/0",
        "hunter2",
    )


def test_truncated_index_file_is_named(repo: Repository, secret: Secret, tmp_path: Path) -> None:
    """An index whose rows end early (authentic, but cut short by a bug or an old writer) is named;
    it does not load half a pack's entries."""
    from gyroscope.backup._crypto import compress, decompress

    backup(repo, [str(make_tree(tmp_path / "src"))])
    name = sorted(repo.index_files)[0]
    plain = decompress(repo.key.open(repo.backend.read(name), b"index"))
    repo.backend.write("index/" + "0" * 64, repo.key.seal(compress(plain[:-7]), b"index"))
    with pytest.raises(CorruptDataError, match="truncated"):
        Repository.open(repo.location, secret)
