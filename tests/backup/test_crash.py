"""kill -9 at random points of a backup, many times: check stays clean, every snapshot restores."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from gyroscope.backup import Repository, Secret, backup, check, list_snapshots, restore

from .conftest import FAST_KDF, PASSWORD, snapshot_of

SCRIPT = """
import sys, time
from gyroscope.backup import Repository, Secret, backup, _pack
_pack.TARGET_PACK_SIZE = 256 << 10  # many small packs: more points to be killed between
repo = Repository.open(sys.argv[1], Secret(password=sys.argv[3].encode()))
write = repo.backend.write
def slow_write(name, data):  # a slow disk, so that kills land between the steps of a backup
    time.sleep(float(sys.argv[4]))
    write(name, data)
repo.backend.write = slow_write
backup(repo, [sys.argv[2]])
"""


def _start(repo: Path, src: Path, delay: float = 0.05) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(repo), str(src), PASSWORD.decode(), str(delay)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _packs(repo: Path) -> int:
    data = repo / "data"
    return sum(len(files) for _, _, files in os.walk(data)) if data.exists() else 0


def _complete_bytes(repo: Path) -> int:
    """Bytes in complete packs (``.tmp-*`` files are half-written ones)."""
    total = 0
    for dirpath, _, files in os.walk(repo / "data"):
        for name in files:
            if not name.startswith("."):  # a complete pack is only ever added, never removed
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def _kill_after_packs(proc: subprocess.Popen[bytes], repo: Path, before: int, wanted: int) -> None:
    deadline = time.monotonic() + 60
    while proc.poll() is None and _packs(repo) - before < wanted and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_kill_9_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("GYRO_TEST_SEED", "8")))
    repo_path = tmp_path / "repo"
    Repository.init(str(repo_path), Secret(password=PASSWORD), kdf=FAST_KDF)
    src = tmp_path / "src"
    src.mkdir()
    expected: dict[str, dict[str, tuple[object, ...]]] = {}
    interrupted = leftovers = 0
    for i in range(10):
        (src / f"new{i}.bin").write_bytes(rng.randbytes(rng.randint(1, 4) << 20))
        (src / f"note{i % 3}.txt").write_text(f"iteration {i}\n" * 100)
        state = snapshot_of(src)
        before = _packs(repo_path)
        proc = _start(repo_path, src)
        if i % 2:
            time.sleep(rng.uniform(0.05, 1.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        else:
            _kill_after_packs(proc, repo_path, before, rng.randint(0, 4))
        repo = Repository.open(str(repo_path), Secret(password=PASSWORD))
        report = check(repo, read_data=True)
        assert report.ok, (i, report.errors)
        leftovers += bool(report.warnings)
        interrupted += len(list_snapshots(repo)) == len(expected)
        for snap in list_snapshots(repo):
            expected.setdefault(snap.id, state)
        if expected:
            newest = list_snapshots(repo)[-1]
            out = tmp_path / f"out{i}"
            assert restore(repo, newest, out).errors == []
            assert snapshot_of(out / str(src).lstrip("/")) == expected[newest.id]
    # The kills must really have landed inside backups, some after packs were already written.
    assert interrupted >= 3 and leftovers >= 1, (interrupted, leftovers)
    repo = Repository.open(str(repo_path), Secret(password=PASSWORD))
    final = backup(repo, [str(src)])
    expected[final.snapshot.id] = snapshot_of(src)
    assert check(repo, read_data=True).ok
    for n, snap in enumerate(list_snapshots(repo)):
        out = tmp_path / f"final{n}"
        assert restore(repo, snap, out).errors == []
        assert snapshot_of(out / str(src).lstrip("/")) == expected[snap.id]


def test_rerun_after_kill_reuses_stored_packs(tmp_path: Path) -> None:
    repo_path = tmp_path / "repo"
    Repository.init(str(repo_path), Secret(password=PASSWORD), kdf=FAST_KDF)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}").write_bytes(os.urandom(2 << 20))
    proc = _start(repo_path, src, delay=0.25)  # slow enough to be killed well before the end
    deadline = time.monotonic() + 60
    while proc.poll() is None and _complete_bytes(repo_path) < 4 << 20:
        assert time.monotonic() < deadline, "the backup stored nothing within 60 s"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stored = _complete_bytes(repo_path)
    assert stored > 3 << 20, "the backup finished or died before it stored enough to test"
    repo = Repository.open(str(repo_path), Secret(password=PASSWORD))
    assert list_snapshots(repo) == []
    result = backup(repo, [str(src)])
    assert result.stats.bytes_stored < (12 << 20) - stored + (1 << 20)
    assert check(repo, read_data=True).ok
