"""Restoring: a whole snapshot, a subtree or one file, to any directory, or ``dump`` to a stream.

Every chunk is decrypted, authenticated and its keyed hash re-checked as it is read. Files are
restored by a pool of threads (many small files restore in parallel). Restoring over existing
files, each is written to a temporary name beside its target and renamed into place, so an
interrupted in-place restore never leaves a half-written file under the real name; into an empty
target, files are written directly. A file whose existing content already matches the snapshot
(same chunk IDs) is not rewritten. Directory metadata is applied last, deepest first, so writing
children does not disturb the parents' times. A failing file (corrupt or missing chunk) is reported
and skipped; the others are still restored.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gyroscope.backup._chunker import Chunker
from gyroscope.backup._errors import SnapshotNotFound
from gyroscope.backup._repo import Repository
from gyroscope.backup._tree import Entry, Snapshot
from gyroscope.errors import BackupError

__all__ = ["RestoreStats", "dump", "file_chunk_ids", "restore"]

IS_ROOT = os.geteuid() == 0


@dataclass(slots=True)
class RestoreStats:
    files: int = 0
    files_skipped: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


def file_chunk_ids(repo: Repository, chunker: Chunker, path: Path) -> list[str]:
    """The chunk IDs a file would get if backed up now (used to skip or verify restored files)."""
    with open(path, "rb", buffering=0) as fh:
        if os.fstat(fh.fileno()).st_size <= chunker.min_size:
            data = fh.read()
            return [repo.key.chunk_id(data).hex()] if data else []
        return [repo.key.chunk_id(c).hex() for c in chunker.cut_stream(fh)]


def _selected(path: str, include: list[str]) -> bool:
    if not include:
        return True
    return any(
        path == inc or path.startswith(inc + "/") or inc.startswith(path + "/") for inc in include
    )


def _apply_meta(path: Path, entry: Entry, *, symlink: bool = False) -> None:
    if IS_ROOT:
        with contextlib.suppress(OSError):
            os.lchown(path, entry["u"], entry["g"])
    if not symlink:
        os.chmod(path, stat.S_IMODE(entry["m"]))
    os.utime(path, ns=(entry["at"], entry["mt"]), follow_symlinks=not symlink)


def _write_file(
    repo: Repository,
    entry: Entry,
    dest: Path,
    verify: bool,
    chunker: Chunker,
    *,
    direct: bool = False,
) -> int:
    """Write one file; via a temporary name unless ``direct`` (a fresh target nobody else uses)."""
    sparse = bool(entry.get("sp"))
    tmp = dest if direct else dest.with_name(f".{dest.name}.gyro-restore")
    written = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            for chunk_hex in entry.get("c", ()):
                data = repo.read_blob(bytes.fromhex(chunk_hex))
                if sparse and data.count(0) == len(data):
                    os.lseek(fd, len(data), os.SEEK_CUR)  # a hole stays a hole
                else:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                written += len(data)
            if sparse:
                os.ftruncate(fd, written)
            _apply_meta_fd(fd, entry)
        finally:
            os.close(fd)
        if verify and file_chunk_ids(repo, chunker, tmp) != list(entry.get("c", ())):
            raise BackupError(f"{dest}: restored content does not match the snapshot")
        if not direct:
            os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return written


def _apply_meta_fd(fd: int, entry: Entry) -> None:
    if IS_ROOT:
        with contextlib.suppress(OSError):
            os.fchown(fd, entry["u"], entry["g"])
    os.fchmod(fd, stat.S_IMODE(entry["m"]))
    os.utime(fd, ns=(entry["at"], entry["mt"]))


def _same_content(repo: Repository, chunker: Chunker, dest: Path, entry: Entry) -> bool:
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.get("s"):
        return False
    return file_chunk_ids(repo, chunker, dest) == list(entry.get("c", ()))


def restore(
    repo: Repository,
    snapshot: Snapshot,
    target: Path,
    *,
    include: list[str] | tuple[str, ...] = (),
    threads: int = 8,
    verify: bool = False,
    progress: Callable[[RestoreStats], None] | None = None,
) -> RestoreStats:
    """Restore ``snapshot`` (or the ``include`` paths of it) under ``target``."""
    inc = [p.strip("/") for p in include]
    everything = list(snapshot.entries(repo))
    entries = [e for e in everything if _selected(e["p"], inc)]
    if inc and not any(e["p"] == p or e["p"].startswith(p + "/") for e in entries for p in inc):
        raise SnapshotNotFound(f"snapshot {snapshot.short_id} has no path {', '.join(include)}")
    stats = RestoreStats()
    chunker = repo.chunker()
    lock = threading.Lock()
    target.mkdir(parents=True, exist_ok=True)
    fresh = not any(target.iterdir())  # nothing there yet: no file can already be identical
    dirs = [e for e in entries if e["t"] == "d"]
    for entry in dirs:
        (target / entry["p"]).mkdir(parents=True, exist_ok=True)
        stats.dirs += 1
    by_path = {e["p"]: e for e in everything if e["t"] == "f"}  # hard-link targets

    def one(entry: Entry) -> None:
        dest = target / entry["p"]
        try:
            if not fresh and _same_content(repo, chunker, dest, entry):
                _apply_meta(dest, entry)
                with lock:
                    stats.files_skipped += 1
                return
            size = _write_file(repo, entry, dest, verify, chunker, direct=fresh)
            with lock:
                stats.files += 1
                stats.bytes += size
        except (BackupError, OSError) as exc:
            with lock:
                stats.errors.append(f"{entry['p']}: {exc}")
        if progress:
            progress(stats)

    files = [e for e in entries if e["t"] == "f"]
    for parent in {os.path.dirname(e["p"]) for e in files} - {d["p"] for d in dirs}:
        (target / parent).mkdir(parents=True, exist_ok=True)  # e.g. @sqlite/ of database dumps
    # Hand out files in small batches: one future per file costs more than restoring a tiny file.
    batches = [files[i : i + 16] for i in range(0, len(files), 16)]

    def run_batch(batch: list[Entry]) -> None:
        for entry in batch:
            one(entry)

    with ThreadPoolExecutor(threads, thread_name_prefix="restore") as pool:
        for _ in pool.map(run_batch, batches):
            pass
    for entry in entries:
        _restore_special(repo, entry, target, by_path, stats, chunker)
    for entry in sorted(dirs, key=lambda e: e["p"].count("/"), reverse=True):
        _apply_meta(target / entry["p"], entry)
    return stats


def _restore_special(
    repo: Repository,
    entry: Entry,
    target: Path,
    by_path: dict[str, Entry],
    stats: RestoreStats,
    chunker: Chunker,
) -> None:
    dest = target / entry["p"]
    try:
        if entry["t"] == "l":
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            os.symlink(entry["l"], dest)
            _apply_meta(dest, entry, symlink=True)
            stats.links += 1
        elif entry["t"] == "h":
            first = target / entry["l"]
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            if first.exists():
                os.link(first, dest)
                stats.links += 1
            elif entry["l"] in by_path:  # its first name is outside the selection: restore a copy
                stats.bytes += _write_file(
                    repo, {**by_path[entry["l"]], "p": entry["p"]}, dest, False, chunker
                )
                stats.files += 1
        elif entry["t"] == "o" and stat.S_ISFIFO(entry["m"]):
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            os.mkfifo(dest)
            _apply_meta(dest, entry)
    except (BackupError, OSError) as exc:
        stats.errors.append(f"{entry['p']}: {exc}")


def dump(repo: Repository, snapshot: Snapshot, path: str, out: BinaryIO) -> int:
    """Write one file of ``snapshot`` to ``out``; returns the byte count."""
    wanted = path.strip("/")
    for entry in snapshot.entries(repo):
        if entry["p"] == wanted:
            if entry["t"] == "h":
                return dump(repo, snapshot, entry["l"], out)
            if entry["t"] != "f":
                raise SnapshotNotFound(f"{path} in snapshot {snapshot.short_id} is not a file")
            total = 0
            for chunk_hex in entry.get("c", ()):
                data = repo.read_blob(bytes.fromhex(chunk_hex))
                out.write(data)
                total += len(data)
            return total
    raise SnapshotNotFound(f"snapshot {snapshot.short_id} has no file {path}")
