"""Restore drills: prove a snapshot restores, not just that its bytes exist.

A drill restores the snapshot into a temporary directory with verification (every restored file is
re-read and its chunk IDs compared with the snapshot), then compares the tree: every file, link and
directory present with the recorded size, mode and link target. The temporary copy is removed.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gyroscope.backup._repo import Repository
from gyroscope.backup._restore import restore
from gyroscope.backup._tree import find_snapshot

__all__ = ["DrillResult", "restore_drill"]


@dataclass(slots=True)
class DrillResult:
    snapshot: str
    files: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def restore_drill(
    repo: Repository, ref: str = "latest", *, workdir: Path | None = None
) -> DrillResult:
    """Restore ``ref`` into a temporary directory, verify and compare, then clean up."""
    snap = find_snapshot(repo, ref)
    result = DrillResult(snap.id)
    with tempfile.TemporaryDirectory(prefix="gyro-drill-", dir=workdir) as tmp:
        stats = restore(repo, snap, Path(tmp), verify=True)
        result.files, result.bytes = stats.files, stats.bytes
        result.problems += stats.errors
        for entry in snap.entries(repo):
            problem = _compare(Path(tmp) / entry["p"], entry)
            if problem:
                result.problems.append(f"{entry['p']}: {problem}")
    return result


def _compare(path: Path, entry: dict[str, Any]) -> str | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing after restore"
    if entry["t"] == "l":
        return None if os.readlink(path) == entry["l"] else "symlink target differs"
    if entry["t"] == "f":
        if st.st_size != entry["s"]:
            return f"size {st.st_size}, expected {entry['s']}"
        if stat.S_IMODE(st.st_mode) != stat.S_IMODE(entry["m"]):
            return "mode differs"
    return None
