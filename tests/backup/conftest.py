"""Fixtures for backup tests: a fast-KDF repository and a source tree with every kind of entry."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from gyroscope.backup import KdfParams, Repository, Secret

FAST_KDF = KdfParams(time=1, memory_kib=8192, parallelism=1)
PASSWORD = b"correct horse battery staple"


@pytest.fixture
def secret() -> Secret:
    return Secret(password=PASSWORD)


@pytest.fixture
def repo(tmp_path: Path, secret: Secret) -> Repository:
    return Repository.init(str(tmp_path / "repo"), secret, kdf=FAST_KDF)


def make_tree(root: Path, *, big: int = 3_000_000, seed: int = 1) -> Path:
    """A source tree: text, random binary, empty file, nested dirs, symlink, hard link, sparse file."""
    rng = __import__("random").Random(seed)
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("hello\n" * 1000)
    (root / "docs" / "deep" / "b.txt").write_text("nested\n")
    (root / "empty").write_bytes(b"")
    (root / "big.bin").write_bytes(rng.randbytes(big))
    (root / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "exec.sh", 0o750)
    os.symlink("docs/a.txt", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "docs" / "a.txt", root / "hard")
    with open(root / "sparse", "wb") as fh:
        fh.seek(4 << 20)
        fh.write(b"tail")
    for i in range(50):
        (root / "docs" / f"small{i:02}.txt").write_text(f"small file {i}\n" * (i + 1))
    os.utime(root / "docs" / "deep", ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    return root


def snapshot_of(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a byte-identical restore must preserve, keyed by relative path."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if os.path.islink(path):
                out[rel] = ("l", os.readlink(path), st.st_mode)
            elif path.is_dir():
                out[rel] = ("d", st.st_mode, st.st_mtime_ns, st.st_uid, st.st_gid)
            else:
                out[rel] = (
                    "f",
                    path.read_bytes(),
                    st.st_mode,
                    st.st_mtime_ns,
                    st.st_uid,
                    st.st_gid,
                    st.st_nlink,
                )
    return out


def race_inits(location: str, *, racers: int = 4, deletable: bool = True) -> None:
    """``racers`` threads run ``Repository.init`` on ``location`` at once (two hosts' first
    scheduled runs): exactly one creates the repository, the others are told it exists, and every
    opener afterwards reads what the winner writes. Losers take their keys back unless the storage
    refuses deletes (append-only); a reader then skips those keys by the config's key check."""
    from concurrent.futures import ThreadPoolExecutor

    from gyroscope.backup import RepositoryExists

    start = threading.Barrier(racers)
    secret = Secret(password=b"racing first runs")

    def init(_: int) -> Repository | None:
        start.wait()
        try:
            return Repository.init(location, secret, kdf=FAST_KDF)
        except RepositoryExists:
            return None

    with ThreadPoolExecutor(racers) as pool:
        made = [r for r in pool.map(init, range(racers)) if r is not None]
    assert len(made) == 1
    (winner,) = made
    blob = winner.key.chunk_id(b"written by the winner")
    try:
        for _ in range(3):
            reader = Repository.open(location, secret)
            try:
                assert reader.config["id"] == winner.config["id"]
                assert reader.key.chunk_id(b"written by the winner") == blob
                keys = len(reader.backend.list("keys"))
                # a racer that arrives after the winner's config never writes a key at all
                assert keys == 1 if deletable else 1 <= keys <= racers
            finally:
                reader.close()
    finally:
        winner.close()
