"""Restoring: a whole snapshot, a subtree or one file, to any directory, or ``dump`` to a stream.

Every chunk is decrypted, authenticated and its keyed hash re-checked as it is read. Files are
restored by a pool of threads (many small files restore in parallel). Restoring over existing
files, each is written to a fresh temporary name beside its target and renamed into place, so an
interrupted in-place restore never leaves a half-written file under the real name; into an empty
target, files are written directly. A file whose existing content already matches the snapshot
(same chunk IDs) is not rewritten. Directory metadata is applied last, deepest first, so writing
children does not disturb the parents' times. A failing file (corrupt or missing chunk) is reported
and skipped; the others are still restored.

The target may hold files others can write (restoring in place, or into a shared directory), so
nothing under the target is followed: directories are entered one component at a time with
``O_NOFOLLOW`` relative to their parent's descriptor, a symlink met on the way is an error for
that entry (never a detour to wherever it points), every file is created with ``O_EXCL |
O_NOFOLLOW`` under an unpredictable name and renamed over its final name (a rename replaces a
symlink there, not its target), and metadata is applied to the descriptor or without following
links. Names in the snapshot are checked too: ``..`` or an absolute name (a crafted repository)
is refused.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gyroscope.backup._backend import AppendOnly, LocalBackend
from gyroscope.backup._chunker import Chunker
from gyroscope.backup._errors import SnapshotNotFound
from gyroscope.backup._repo import Repository
from gyroscope.backup._tree import Entry, Snapshot
from gyroscope.errors import BackupError

__all__ = ["RestoreStats", "default_threads", "dump", "file_chunk_ids", "restore"]

IS_ROOT = os.geteuid() == 0
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _fd_chunk_ids(repo, chunker, fd)
    finally:
        os.close(fd)


def _fd_chunk_ids(repo: Repository, chunker: Chunker, fd: int) -> list[str]:
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", buffering=0, closefd=False) as fh:
        if os.fstat(fd).st_size <= chunker.min_size:
            data = fh.read()
            return [repo.key.chunk_id(data).hex()] if data else []
        return [repo.key.chunk_id(c).hex() for c in chunker.cut_stream(fh)]


def _selected(path: str, include: list[str]) -> bool:
    if not include:
        return True
    return any(
        path == inc or path.startswith(inc + "/") or inc.startswith(path + "/") for inc in include
    )


def _parts(name: object, *, root_ok: bool = False) -> list[str]:
    """The components of a snapshot path; ``..``, absolute and empty names are refused (only a
    crafted repository has them). ``.`` is the target itself (a backup of ``/``).

    >>> _parts("./srv/data/a.txt")
    ['srv', 'data', 'a.txt']
    """
    if not isinstance(name, str) or name.startswith("/") or "\0" in name:
        raise BackupError(f"unsafe name {name!r} in the snapshot (absolute or not text); skipped")
    parts = [p for p in name.split("/") if p != "."]
    if "" in parts or ".." in parts or not (parts or root_ok):
        raise BackupError(f"unsafe name {name!r} in the snapshot ('..' or empty part); skipped")
    return parts


class _Target:
    """The restore target as a directory descriptor; entries are reached without following links."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the user's choice

    def close(self) -> None:
        os.close(self.fd)

    def open_dir(self, parts: list[str], *, create: bool, mode: int = 0o777) -> int:
        """A new ``O_PATH`` descriptor of the directory ``parts``; missing directories are created
        if asked (the last with ``mode``, the others 0777 less the umask). The caller closes it.

        A component that is a symlink or not a directory is a BackupError.
        """
        fd = os.dup(self.fd)
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                nxt = self._enter(
                    fd, part, parts[: i + 1], create=create, mode=mode if last else 0o777
                )
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _enter(self, fd: int, part: str, so_far: list[str], *, create: bool, mode: int) -> int:
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            raise self._not_a_dir(fd, part, so_far, exc) from None
        with contextlib.suppress(FileExistsError):  # another thread made it meanwhile
            os.mkdir(part, mode, dir_fd=fd)
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise self._not_a_dir(fd, part, so_far, exc) from None

    def _not_a_dir(self, fd: int, part: str, so_far: list[str], exc: OSError) -> Exception:
        where = self.path.joinpath(*so_far)
        try:
            st = os.stat(part, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return exc
        if stat.S_ISLNK(st.st_mode):
            return BackupError(
                f"{where} is a symlink; restore does not write through symlinks in the target "
                "(remove it, or restore to another --target)"
            )
        if not stat.S_ISDIR(st.st_mode):
            return BackupError(f"{where} exists and is not a directory (remove it and retry)")
        return exc

    @contextlib.contextmanager
    def parent(
        self, name: str, *, create: bool = True, root_ok: bool = False
    ) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent directory, last component) of a snapshot path."""
        parts = _parts(name, root_ok=root_ok)
        fd = self.open_dir(parts[:-1], create=create)
        try:
            yield fd, parts[-1] if parts else "."
        finally:
            os.close(fd)


def _tmp_name() -> str:
    return f".gyro-restore-{secrets.token_hex(8)}"


def _apply_meta_at(dir_fd: int, name: str, entry: Entry, *, symlink: bool = False) -> None:
    """Owner, mode and times of ``name`` in ``dir_fd``, never through a symlink."""
    if IS_ROOT:
        with contextlib.suppress(OSError):
            os.chown(name, entry["u"], entry["g"], dir_fd=dir_fd, follow_symlinks=False)
    if not symlink:
        try:
            os.chmod(name, stat.S_IMODE(entry["m"]), dir_fd=dir_fd, follow_symlinks=False)
        except (ValueError, NotImplementedError):  # what Python raises for a symlink there
            raise BackupError("replaced by a symlink during the restore; not changed") from None
    os.utime(name, ns=(entry["at"], entry["mt"]), dir_fd=dir_fd, follow_symlinks=False)


def _apply_meta_fd(fd: int, entry: Entry) -> None:
    if IS_ROOT:
        with contextlib.suppress(OSError):
            os.fchown(fd, entry["u"], entry["g"])
    os.fchmod(fd, stat.S_IMODE(entry["m"]))
    os.utime(fd, ns=(entry["at"], entry["mt"]))


def _write_file(
    repo: Repository,
    entry: Entry,
    dir_fd: int,
    name: str,
    verify: bool,
    chunker: Chunker,
    *,
    direct: bool = False,
) -> int:
    """Write one file; via a fresh temporary name unless ``direct`` (a target that was empty)."""
    sparse = bool(entry.get("sp"))
    tmp = name if direct else _tmp_name()
    fd = os.open(tmp, _NEW_FILE, 0o600, dir_fd=dir_fd)  # never an existing file or a link
    written = 0
    try:
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
            if verify and _fd_chunk_ids(repo, chunker, fd) != list(entry.get("c", ())):
                raise BackupError("restored content does not match the snapshot")
            _apply_meta_fd(fd, entry)
        finally:
            os.close(fd)
        if not direct:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    return written


def _same_content(repo: Repository, chunker: Chunker, dir_fd: int, name: str, entry: Entry) -> bool:
    """True (and the metadata applied) if ``name`` is already a regular file with this content."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.get("s"):
        return False
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        return False  # changed meanwhile: rewrite it
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        if _fd_chunk_ids(repo, chunker, fd) != list(entry.get("c", ())):
            return False
        _apply_meta_fd(fd, entry)
        return True
    finally:
        os.close(fd)


def restore(
    repo: Repository,
    snapshot: Snapshot,
    target: Path,
    *,
    include: list[str] | tuple[str, ...] = (),
    threads: int | None = None,
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
    target.mkdir(parents=True, exist_ok=True)
    fresh = not any(target.iterdir())  # nothing there yet: no file can already be identical
    root = _Target(target)
    try:
        dirs = _make_dirs(root, [e for e in entries if e["t"] == "d"], stats)
        files = [e for e in entries if e["t"] == "f"]
        _restore_files(
            repo,
            root,
            files,
            stats,
            fresh=fresh,
            threads=threads or default_threads(repo),
            verify=verify,
            progress=progress,
        )
        by_path = {e["p"]: e for e in everything if e["t"] == "f"}  # hard-link targets
        chunker = repo.chunker()
        for entry in entries:
            if entry["t"] not in ("d", "f"):
                _restore_special(repo, entry, root, by_path, stats, chunker)
        for entry in sorted(dirs, key=lambda e: e["p"].count("/"), reverse=True):
            try:
                with root.parent(entry["p"], create=False, root_ok=True) as (dir_fd, name):
                    _apply_meta_at(dir_fd, name, entry)
            except (BackupError, OSError) as exc:
                stats.errors.append(f"{entry['p']}: {exc}")
    finally:
        root.close()
    return stats


def default_threads(repo: Repository) -> int:
    """One thread per core when the repository is a local directory: restoring is then CPU-bound
    (decrypting, and the kernel creating and filling files), and more threads than cores only
    contend for the GIL (measured: 14% slower with two per core). Over SFTP or HTTP a read waits
    on the network, so two per core. At most 8 either way."""
    cores = os.cpu_count() or 2
    backend = repo.backend
    inner = backend.inner if isinstance(backend, AppendOnly) else backend
    return min(8, cores if isinstance(inner, LocalBackend) else 2 * cores)


def _make_dirs(root: _Target, dirs: list[Entry], stats: RestoreStats) -> list[Entry]:
    """Create the snapshot's directories (parents first); returns those that now exist."""
    made = []
    for entry in dirs:
        try:
            # 0700 until the snapshot's metadata is applied at the end
            os.close(root.open_dir(_parts(entry["p"], root_ok=True), create=True, mode=0o700))
        except (BackupError, OSError) as exc:
            stats.errors.append(f"{entry['p']}: {exc}")
            continue
        made.append(entry)
        stats.dirs += 1
    return made


def _restore_files(
    repo: Repository,
    root: _Target,
    files: list[Entry],
    stats: RestoreStats,
    *,
    fresh: bool,
    threads: int,
    verify: bool,
    progress: Callable[[RestoreStats], None] | None,
) -> None:
    chunker = repo.chunker()
    lock = threading.Lock()

    def one(entry: Entry, dir_fd: int, name: str) -> None:
        if not fresh and _same_content(repo, chunker, dir_fd, name, entry):
            with lock:
                stats.files_skipped += 1
            return
        size = _write_file(repo, entry, dir_fd, name, verify, chunker, direct=fresh)
        with lock:
            stats.files += 1
            stats.bytes += size

    def run_batch(batch: list[Entry]) -> None:
        # Consecutive files mostly share a directory: enter it once for all of them.
        current: tuple[str, int] | None = None
        try:
            for entry in batch:
                try:
                    parts = _parts(entry["p"])
                    parent = "/".join(parts[:-1])
                    if current is None or current[0] != parent:
                        if current is not None:
                            os.close(current[1])
                            current = None
                        current = (parent, root.open_dir(parts[:-1], create=True))
                    one(entry, current[1], parts[-1])
                except (BackupError, OSError) as exc:
                    with lock:
                        stats.errors.append(f"{entry['p']}: {exc}")
                if progress:
                    progress(stats)
        finally:
            if current is not None:
                os.close(current[1])

    with ThreadPoolExecutor(threads, thread_name_prefix="restore") as pool:
        for _ in pool.map(run_batch, _batches(files)):
            pass


def _batches(files: list[Entry], *, count: int = 32, size: int = 8 << 20) -> list[list[Entry]]:
    """Files in batches of one directory each, interleaved across directories.

    One future per file costs more than restoring a tiny file, hence batches. Creating a file holds
    its directory's lock, so threads filling one directory mostly wait for each other: handing out
    the batches round-robin over directories keeps concurrent threads in different ones.
    """
    by_dir: dict[str, list[list[Entry]]] = {}
    filled: dict[str, int] = {}  # bytes in each directory's last batch
    for entry in files:
        parent = entry["p"].rpartition("/")[0]
        batches = by_dir.setdefault(parent, [[]])
        if len(batches[-1]) >= count or filled.get(parent, 0) >= size:
            batches.append([])
            filled[parent] = 0
        batches[-1].append(entry)
        filled[parent] = filled.get(parent, 0) + entry.get("s", 0)
    return [batch for row in itertools.zip_longest(*by_dir.values()) for batch in row if batch]


def _restore_special(
    repo: Repository,
    entry: Entry,
    root: _Target,
    by_path: dict[str, Entry],
    stats: RestoreStats,
    chunker: Chunker,
) -> None:
    try:
        with root.parent(entry["p"]) as (dir_fd, name):
            if entry["t"] == "l":
                _replace_with(dir_fd, name, lambda tmp: os.symlink(entry["l"], tmp, dir_fd=dir_fd))
                _apply_meta_at(dir_fd, name, entry, symlink=True)
                stats.links += 1
            elif entry["t"] == "h":
                _restore_hard_link(repo, entry, root, dir_fd, name, by_path, stats, chunker)
            elif entry["t"] == "o" and stat.S_ISFIFO(entry["m"]):
                _replace_with(dir_fd, name, lambda tmp: os.mkfifo(tmp, 0o600, dir_fd=dir_fd))
                _apply_meta_at(dir_fd, name, entry)
    except (BackupError, OSError) as exc:
        stats.errors.append(f"{entry['p']}: {exc}")


def _replace_with(dir_fd: int, name: str, make: Callable[[str], None]) -> None:
    """Make a new entry under a fresh temporary name, then rename it over ``name``."""
    tmp = _tmp_name()
    make(tmp)
    try:
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _restore_hard_link(
    repo: Repository,
    entry: Entry,
    root: _Target,
    dir_fd: int,
    name: str,
    by_path: dict[str, Entry],
    stats: RestoreStats,
    chunker: Chunker,
) -> None:
    first_parts = _parts(entry["l"])
    try:
        first_dir = root.open_dir(first_parts[:-1], create=False)
    except FileNotFoundError:
        first_dir = -1
    try:
        if first_dir >= 0 and _is_file(first_dir, first_parts[-1]):
            _replace_with(
                dir_fd,
                name,
                lambda tmp: os.link(
                    first_parts[-1],
                    tmp,
                    src_dir_fd=first_dir,
                    dst_dir_fd=dir_fd,
                    follow_symlinks=False,
                ),
            )
            stats.links += 1
        elif entry["l"] in by_path:  # its first name is outside the selection: restore a copy
            copy = {**by_path[entry["l"]], "p": entry["p"]}
            stats.bytes += _write_file(repo, copy, dir_fd, name, False, chunker)
            stats.files += 1
    finally:
        if first_dir >= 0:
            os.close(first_dir)


def _is_file(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


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
