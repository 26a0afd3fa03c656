"""Forgetting snapshots and pruning the data no snapshot needs any more.

Prune holds an exclusive lock (refused while backups hold live shared locks; locks of dead
processes expire). Its memory is bounded by the number of chunks, never by the amount of data:
trees are read one snapshot at a time into a set of used chunk IDs, and packs are rewritten one at
a time by copying their still-used sealed blobs verbatim (no decryption) into new packs.

Order, so that a crash at any point leaves a valid repository: new packs, then an index covering
every pack that stays, then the old index files are removed, then the packs. Safety margins:
packs younger than ``min_pack_age`` are never touched (a backup that is still running, or whose lock
went stale because its process was frozen, may be about to reference them), and if a snapshot or a
live backup appeared while prune ran, nothing is deleted this time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gyroscope.backup._errors import AppendOnlyError, RepositoryError
from gyroscope.backup._locks import RepoLock, live_locks, remove_stale_locks
from gyroscope.backup._pack import PackWriter
from gyroscope.backup._repo import IndexEntry, Repository, pack_name
from gyroscope.backup._retention import RetentionPolicy, SnapshotRef, apply_retention
from gyroscope.backup._tree import Snapshot, list_snapshots

__all__ = ["PruneStats", "forget", "prune"]

log = logging.getLogger(__name__)


def _refuse_append_only(repo: Repository, what: str) -> None:
    if repo.append_only:
        raise AppendOnlyError(
            f"{what} refused: the repository is append-only (nothing can be deleted); "
            "run it from a host with full access to the repository",
            location=repo.location,
        )


def forget(
    repo: Repository,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    paths: list[str] | None = None,
) -> tuple[list[Snapshot], list[Snapshot], dict[str, list[str]]]:
    """Apply ``policy`` per (host, paths) group; delete the snapshots it does not keep.

    ``paths`` limits it to snapshots of exactly those paths (a scheduled job forgets only its own).
    """
    _refuse_append_only(repo, "forget")
    if policy.empty:
        raise RepositoryError(
            "forget needs a policy (e.g. --keep-daily 7); refusing to remove every snapshot",
            location=repo.location,
        )
    groups: dict[tuple[str, tuple[str, ...]], list[Snapshot]] = {}
    for snap in list_snapshots(repo):
        if paths is not None and sorted(snap.paths) != sorted(paths):
            continue
        groups.setdefault((snap.host, tuple(sorted(snap.paths))), []).append(snap)
    keep: list[Snapshot] = []
    remove: list[Snapshot] = []
    reasons: dict[str, list[str]] = {}
    for snaps in groups.values():
        by_id = {s.id: s for s in snaps}
        refs = [SnapshotRef(s.id, s.time, frozenset(s.tags)) for s in snaps]
        kept, removed, why = apply_retention(refs, policy)
        keep += [by_id[r.id] for r in kept]
        remove += [by_id[r.id] for r in removed]
        reasons.update(why)
    if not dry_run:
        for snap in remove:
            repo.backend.delete(f"snapshots/{snap.id}")
    return keep, remove, reasons


@dataclass(slots=True)
class PruneStats:
    packs_deleted: int = 0
    packs_rewritten: int = 0
    packs_kept_young: int = 0
    bytes_freed: int = 0
    chunks_removed: int = 0
    deferred: bool = False
    notes: list[str] = field(default_factory=list)


def _used_chunks(repo: Repository, snaps: list[Snapshot]) -> set[bytes]:
    used: set[bytes] = set()
    for snap in snaps:
        used.update(bytes.fromhex(t) for t in snap.tree)
        for entry in snap.entries(repo):
            used.update(bytes.fromhex(c) for c in entry.get("c", ()))
    return used


def prune(
    repo: Repository,
    *,
    min_pack_age: float = 3600.0,
    max_unused: float = 0.1,
    clock: Callable[[], float] = time.time,
) -> PruneStats:
    """Delete packs no snapshot uses; rewrite packs that are more than ``max_unused`` unused."""
    _refuse_append_only(repo, "prune")
    stats = PruneStats()
    remove_stale_locks(repo, now=clock())
    with RepoLock(repo, "exclusive", clock=clock) as lock:
        repo.load_index()
        snaps = list_snapshots(repo)
        used = _used_chunks(repo, snaps)
        by_pack: dict[str, list[tuple[bytes, IndexEntry]]] = {}
        for blob_id, entry in repo.index.items():
            by_pack.setdefault(entry.pack, []).append((blob_id, entry))
        ages = {i.name.rsplit("/", 1)[-1]: clock() - i.mtime for i in repo.backend.list("data")}
        old_index = set(repo.index_files)
        writer = PackWriter(repo)
        keep: list[tuple[str, list[list[Any]]]] = []
        drop: list[str] = []
        for pack, blobs in by_pack.items():
            live = [(b, e) for b, e in blobs if b in used]
            dead_bytes = sum(e.length for b, e in blobs if b not in used)
            total = sum(e.length for _, e in blobs) or 1
            if not dead_bytes or ages.get(pack, 0.0) < min_pack_age:
                stats.packs_kept_young += bool(dead_bytes)
                keep.append((pack, [_row(b, e) for b, e in blobs]))
            elif live and dead_bytes / total <= max_unused:
                keep.append((pack, [_row(b, e) for b, e in blobs]))
            else:
                _copy_live(repo, writer, pack, live)
                stats.packs_rewritten += bool(live)
                stats.packs_deleted += not live
                stats.chunks_removed += len(blobs) - len(live)
                stats.bytes_freed += dead_bytes
                drop.append(pack)
        writer.finish()
        new_files = set(repo.index_files) - old_index
        if keep:
            repo.write_index(keep)
        lock.ensure_fresh()
        if _someone_arrived(repo, snaps, lock.name, clock()):
            # A backup started or committed meanwhile: it may reference dropped packs.
            if drop:
                repo.write_index([(p, [_row(b, e) for b, e in by_pack[p]]) for p in drop])
            stats.deferred = True
            stats.packs_deleted = stats.packs_rewritten = stats.bytes_freed = (
                stats.chunks_removed
            ) = 0
            stats.notes.append("a backup ran during prune; nothing deleted (prune again later)")
            return stats
        for name in old_index - new_files:
            repo.backend.delete(name)
        for pack in drop:
            repo.backend.delete(pack_name(pack))
        _remove_old_temporaries(repo, min_pack_age, clock())
    repo.load_index()
    log.info("prune: %s packs deleted, %s rewritten", stats.packs_deleted, stats.packs_rewritten)
    return stats


def _row(blob_id: bytes, e: IndexEntry) -> list[Any]:
    return [e.kind, blob_id.hex(), e.offset, e.length, e.raw_length]


def _copy_live(
    repo: Repository, writer: PackWriter, pack: str, live: list[tuple[bytes, IndexEntry]]
) -> None:
    for blob_id, entry in live:
        sealed = repo.backend.read_range(pack_name(pack), entry.offset, entry.length)
        writer.add(entry.kind, blob_id, (sealed,), entry.raw_length)


def _someone_arrived(repo: Repository, snaps: list[Snapshot], own_lock: str, now: float) -> bool:
    known = {s.id for s in snaps}
    current = {i.name.rsplit("/", 1)[-1] for i in repo.backend.list("snapshots")}
    others = [lock for lock in live_locks(repo, now=now) if lock.name != own_lock]
    return bool(current - known) or bool(others)


def _remove_old_temporaries(repo: Repository, min_age: float, now: float) -> None:
    for info in repo.backend.list("data") + repo.backend.list("index"):
        if info.name.rsplit("/", 1)[-1].startswith(".tmp-") and now - info.mtime >= min_age:
            repo.backend.delete(info.name)
