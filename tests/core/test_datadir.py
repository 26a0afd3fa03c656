"""The data directory lock and crash-safe writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gyroscope.core import DataDir, atomic_write
from gyroscope.errors import DataDirError, DataDirLockedError, FileWriteError


def test_second_holder_is_refused_with_pid(tmp_path: Path) -> None:
    with DataDir(tmp_path / "d"), pytest.raises(DataDirLockedError, match=f"pid {os.getpid()}"):
        DataDir(tmp_path / "d").open()


def test_lock_is_released_on_close(tmp_path: Path) -> None:
    DataDir(tmp_path / "d").open().close()
    DataDir(tmp_path / "d").open().close()


def test_lock_is_released_when_holder_is_killed(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from gyroscope.core import DataDir;"
        "DataDir(Path(sys.argv[1])).open(); print('held', flush=True); time.sleep(60)"
    )
    argv = [sys.executable, "-c", code, str(tmp_path / "d")]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(DataDirLockedError):
            DataDir(tmp_path / "d").open()
        proc.kill()
        proc.wait()
    DataDir(tmp_path / "d").open().close()


def test_unusable_path_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataDirError, match="cannot use data directory"):
        DataDir(tmp_path / "file" / "sub").open()


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, b"old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_write_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "report.json"
    # Whatever temporary name a writer might use next to the target, a planted link is not used.
    for suffix in (str(os.getpid()), *map(str, range(64))):
        (tmp_path / f".report.json.tmp-{suffix}").symlink_to(victim)
    atomic_write(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert victim.read_text() == "precious"
    assert not target.is_symlink()


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "state"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write(target, b"new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_atomic_write_into_a_missing_directory_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "nodir" / "r.json"
    with pytest.raises(FileWriteError, match="nodir does not exist") as caught:
        atomic_write(target, b"{}")
    assert isinstance(caught.value, OSError)  # callers handling OSError still do
    assert "\n" not in str(caught.value)
    assert not target.parent.exists()
