"""Backing up: walk the sources, chunk what changed, store new chunks, commit a snapshot.

Unchanged files (same size, mtime, ctime and inode as in the parent snapshot, and every chunk still
indexed) are taken from the parent without being read: that is the files cache, and it is the
repository itself, so it can never disagree with what is stored. ``full=True`` reads everything.

Files are read and chunked by a pool of threads (hashing, zstd and AES-GCM release the GIL); the
tree keeps walk order. A path that vanishes between the directory listing and the read is left out
of the snapshot with a warning; the snapshot of everything else is still committed.
"""

from __future__ import annotations

import getpass
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from gyroscope.backup._errors import MissingDataError, SourceError
from gyroscope.backup._locks import RepoLock
from gyroscope.backup._pack import PackWriter, index_orphan_packs
from gyroscope.backup._repo import Repository
from gyroscope.backup._tree import (
    Entry,
    Snapshot,
    encode_tree,
    entry_from_stat,
    list_snapshots,
    now_utc,
    save_snapshot,
)
from gyroscope.backup._walk import Walk, walk_tree

__all__ = ["BackupResult", "BackupStats", "backup"]

log = logging.getLogger(__name__)

# Reading is CPU-bound (FastCDC, BLAKE3, zstd, AES-GCM release the GIL): more threads than cores
# only add GIL hand-offs (a 1 GB full backup on 2 cores used ~30% more CPU with 4 than with 2).
READ_THREADS = max(2, min(8, os.cpu_count() or 2))
SMALL_FILE = 64 << 10
SMALL_BATCH = 64


@dataclass(slots=True)
class BackupStats:
    """Counters of one backup; ``progress`` callbacks receive it while it runs."""

    files: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    bytes_total: int = 0
    bytes_read: int = 0
    chunks_new: int = 0
    bytes_new: int = 0
    bytes_stored: int = 0
    duration: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def dedup_ratio(self) -> float:
        """Bytes in the snapshot per byte newly stored (higher is better). A snapshot that stored
        nothing new (its tree too was already there) counts as one stored byte, not as 1.0, which
        would read as "no deduplication at all"."""
        return self.bytes_total / max(self.bytes_stored, 1) if self.bytes_total else 1.0

    def as_dict(self) -> dict[str, object]:
        doc = asdict(self)
        doc["dedup_ratio"] = round(self.dedup_ratio, 3)
        return doc


@dataclass(frozen=True, slots=True)
class BackupResult:
    snapshot: Snapshot
    stats: BackupStats


Progress = Callable[[BackupStats], None]


class _Session:
    """State shared by the worker threads of one backup."""

    def __init__(self, repo: Repository, stats: BackupStats) -> None:
        self.repo = repo
        self.stats = stats
        self.chunker = repo.chunker()
        self.writer = PackWriter(repo)
        self.lock = threading.Lock()
        self.reserved: set[bytes] = set()

    def store(self, kind: str, data: bytes | memoryview) -> str:
        blob_id = self.repo.key.chunk_id(data)
        with self.lock:
            fresh = blob_id not in self.repo.index and blob_id not in self.reserved
            if fresh:
                self.reserved.add(blob_id)
        if fresh:
            nonce, ciphertext = self.repo.seal_blob(blob_id, data)
            self.writer.add(kind, blob_id, (nonce, ciphertext), len(data))
            with self.lock:
                self.stats.chunks_new += 1
                self.stats.bytes_new += len(data)
        return blob_id.hex()

    def store_file(self, path: str, size: int) -> list[str]:
        with open(path, "rb", buffering=0) as fh:
            if size <= self.chunker.min_size:
                data = fh.read()
                ids = [self.store("d", data)] if data else []
                read = len(data)
            else:
                ids, read = [], 0
                for chunk in self.chunker.cut_stream(fh):
                    ids.append(self.store("d", chunk))
                    read += len(chunk)
        with self.lock:
            self.stats.files_read += 1
            self.stats.bytes_read += read
        return ids


def _unchanged(entry: Entry, old: Entry, repo: Repository) -> bool:
    """The files cache: same size, mtime, ctime and inode, and every chunk still indexed."""
    if not (
        old.get("t") == "f"
        and old.get("s") == entry["s"]
        and old.get("mt") == entry["mt"]
        and old.get("ct") == entry["ct"]
        and old.get("i") == entry["i"]
    ):
        return False
    return all(map(repo.index.__contains__, map(bytes.fromhex, old.get("c", ()))))


def backup(
    repo: Repository,
    paths: list[str],
    *,
    tags: list[str] | tuple[str, ...] = (),
    full: bool = False,
    extra: Sequence[tuple[str, str]] = (),
    threads: int = READ_THREADS,
    progress: Progress | None = None,
    host: str | None = None,
    walk: Walk | None = None,
) -> BackupResult:
    """Back up ``paths`` (and ``extra`` (archive path, real path) files, e.g. database dumps).

    ``walk``: a ``Walk(paths)`` started earlier (before unlocking the repository, so that listing
    the sources overlaps the key derivation); it is closed here either way.
    """
    try:
        for path in paths:
            if not os.path.lexists(path):
                raise SourceError("does not exist (check the path)", source=path)
        if walk is None:
            walk = Walk(paths)
        elif walk.paths != list(paths):
            raise ValueError("walk was started for other paths")
        return _backup(repo, paths, tags, full, extra, threads, progress, host, walk)
    finally:
        if walk is not None:
            walk.close()


def _backup(
    repo: Repository,
    paths: list[str],
    tags: list[str] | tuple[str, ...],
    full: bool,
    extra: Sequence[tuple[str, str]],
    threads: int,
    progress: Progress | None,
    host: str | None,
    walk: Walk,
) -> BackupResult:
    started = time.monotonic()
    stats = BackupStats()
    host = host or os.uname().nodename
    all_paths = [os.path.abspath(p) for p in paths] + [a for a, _ in extra]
    with RepoLock(repo, "shared") as lock:
        index_orphan_packs(repo)  # what an interrupted run stored is reused, not uploaded again
        index_files_at_start = set(repo.index_files)
        parent = None if full else _find_parent(repo, host, all_paths)
        old = {} if parent is None else {e["p"]: e for e in parent.entries(repo)}
        log.debug(
            "backup: parent %s loaded after %.3f s",
            parent and parent.short_id,
            time.monotonic() - started,
        )
        session = _Session(repo, stats)
        entries = _collect(session, walk, extra, old, threads, progress)
        log.debug(
            "backup: %d entries walked and read after %.3f s",
            len(entries),
            time.monotonic() - started,
        )
        tree = [session.store("t", chunk) for chunk in session.chunker.cut(encode_tree(entries))]
        session.writer.finish()
        log.debug("backup: tree and packs written after %.3f s", time.monotonic() - started)
        stats.bytes_stored = session.writer.bytes_written
        lock.ensure_fresh()
        _revalidate(repo, index_files_at_start, entries, tree)
        stats.duration = time.monotonic() - started
        doc = {
            "time": now_utc().isoformat(),
            "host": host,
            "user": getpass.getuser(),
            "paths": all_paths,
            "tags": list(tags),
            "tree": tree,
            "parent": parent.id if parent else None,
            "stats": stats.as_dict(),
        }
        snap_id = save_snapshot(repo, doc)
    log.info("snapshot %s saved: %s files, %s new bytes", snap_id[:8], stats.files, stats.bytes_new)
    return BackupResult(Snapshot.from_dict(snap_id, doc), stats)


def _find_parent(repo: Repository, host: str, paths: list[str]) -> Snapshot | None:
    same = [s for s in list_snapshots(repo) if s.host == host and sorted(s.paths) == sorted(paths)]
    return same[-1] if same else None


class _Collector:
    """Walks the sources in order, deciding per entry: reuse from the parent, or read."""

    def __init__(
        self, session: _Session, old: dict[str, Entry], pool: ThreadPoolExecutor, threads: int
    ) -> None:
        self.session = session
        self.stats = session.stats
        self.old = old
        self.pool = pool
        self.entries: list[Entry] = []
        self.pending: list[tuple[list[Entry], Future[list[list[str] | OSError]]]] = []
        self.batch: list[tuple[Entry, str, int]] = []
        self.batch_bytes = 0
        self.links: dict[tuple[int, int], str] = {}
        self.slots = threading.Semaphore(threads * 8)  # bounds how far the walk runs ahead

    def _read_many(self, files: list[tuple[Entry, str, int]]) -> list[list[str] | OSError]:
        out: list[list[str] | OSError] = []
        try:
            for _, real, size in files:
                try:
                    out.append(self.session.store_file(real, size))
                except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
                    out.append(exc)
            return out
        finally:
            self.slots.release()

    def _queue_read(self, entry: Entry, real: str, size: int) -> None:
        """Small files go to the readers in batches: one task (a queue hand-off and a thread
        wake-up) per file cost more CPU than reading a 5 KB file."""
        self.batch.append((entry, real, size))
        self.batch_bytes += size
        if size > SMALL_FILE or len(self.batch) >= SMALL_BATCH or self.batch_bytes >= 1 << 20:
            self._flush()

    def _flush(self) -> None:
        if not self.batch:
            return
        files, self.batch, self.batch_bytes = self.batch, [], 0
        self.slots.acquire()
        self.pending.append(([e for e, _, _ in files], self.pool.submit(self._read_many, files)))

    def visit_many(self, batch: list[tuple[str, str, os.stat_result]]) -> None:
        """``visit`` each entry, with the files cache's fast path inlined: an incremental backup
        runs it for every unchanged file, and the per-call overhead was most of its cost."""
        old_get, reuse = self.old.get, self.entries.append
        indexed, fromhex, is_reg = self.session.repo.index.__contains__, bytes.fromhex, stat.S_ISREG
        same = same_bytes = 0
        for real, arc, st in batch:
            # An unchanged ctime means mode, owner and content are unchanged too, so the parent's
            # entry is taken whole (its atime may be older); its chunks must still be indexed.
            prev = old_get(arc) if st.st_nlink == 1 and is_reg(st.st_mode) else None
            if (
                prev is not None
                and prev.get("mt") == st.st_mtime_ns
                and prev.get("s") == st.st_size
                and prev.get("ct") == st.st_ctime_ns
                and prev.get("i") == st.st_ino
                and prev.get("t") == "f"
                and all(map(indexed, map(fromhex, prev.get("c", ()))))
            ):
                reuse(prev)
                same += 1
                same_bytes += st.st_size
            else:
                self.visit(real, arc, st)
        self.stats.files += same
        self.stats.files_unchanged += same
        self.stats.bytes_total += same_bytes

    def visit(self, real: str, arc: str, st: os.stat_result) -> None:
        entry = entry_from_stat(arc, st)
        kind = entry["t"]
        if kind == "d":
            self.stats.dirs += 1
        elif kind == "l":
            try:
                entry["l"] = os.readlink(real)
            except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
                # Gone since the walk's lstat: left out with a warning, like a vanished file.
                self.stats.warnings.append(f"{arc}: {_why(exc)} (not in this snapshot)")
                return
        elif kind == "f":
            entry = self._file(real, entry, st)
        elif not stat.S_ISFIFO(st.st_mode):
            return  # sockets and devices are not backed up
        self.entries.append(entry)

    def _file(self, real: str, entry: Entry, st: os.stat_result) -> Entry:
        self.stats.files += 1
        self.stats.bytes_total += st.st_size
        if st.st_nlink > 1:
            first = self.links.setdefault((st.st_dev, st.st_ino), entry["p"])
            if first != entry["p"]:
                entry = {**entry, "t": "h", "l": first}
                entry.pop("s", None)
                return entry
        prev = self.old.get(entry["p"])
        if prev is not None and _unchanged(entry, prev, self.session.repo):
            entry["c"] = prev["c"]
            self.stats.files_unchanged += 1
        else:
            self._queue_read(entry, real, st.st_size)
        return entry

    def finish(self) -> list[Entry]:
        self._flush()
        for entries, future in self.pending:
            for entry, result in zip(entries, future.result(), strict=True):
                if not isinstance(result, OSError):
                    entry["c"] = result
                    continue
                entry["t"] = "gone"
                self.stats.warnings.append(f"{entry['p']}: {_why(result)} (not in this snapshot)")
        return [e for e in self.entries if e["t"] != "gone"]


def _why(exc: OSError) -> str:
    return "permission denied" if isinstance(exc, PermissionError) else "vanished during backup"


def _collect(
    session: _Session,
    walk: Walk,
    extra: Sequence[tuple[str, str]],
    old: dict[str, Entry],
    threads: int,
    progress: Progress | None,
) -> list[Entry]:
    last_report = 0.0
    warnings = session.stats.warnings
    with ThreadPoolExecutor(threads, thread_name_prefix="backup") as pool:
        collector = _Collector(session, old, pool, threads)
        for batch in _batches(walk, extra, warnings.append):
            collector.visit_many(batch)
            if progress and time.monotonic() - last_report > 0.25:
                last_report = time.monotonic()
                progress(session.stats)
        entries = collector.finish()
    warnings[:0] = walk.warnings
    if progress:
        progress(session.stats)
    return entries


def _batches(
    walk: Walk, extra: Sequence[tuple[str, str]], warn: Callable[[str], None]
) -> Iterator[list[tuple[str, str, os.stat_result]]]:
    """The sources' listing from ``walk``, then the extra (database dump) files."""
    yield from walk
    for arc, real in extra:
        try:
            yield list(walk_tree(real, arc, warn))
        except FileNotFoundError:
            raise SourceError(
                "vanished during the backup; nothing was committed (run again)", source=real
            ) from None


def _revalidate(
    repo: Repository, at_start: set[str], entries: list[Entry], tree: list[str]
) -> None:
    """Before committing: if a prune rewrote the index meanwhile, every chunk must still exist."""
    current = {info.name for info in repo.backend.list("index")}
    if at_start <= current:
        return
    repo.load_index()
    needed = {c for e in entries for c in e.get("c", ())} | set(tree)
    missing = [c for c in needed if bytes.fromhex(c) not in repo.index]
    if missing:
        raise MissingDataError(
            f"a concurrent prune removed {len(missing)} chunk(s) this backup reuses; run the backup "
            "again (data already stored is reused)",
            location=repo.location,
        )
