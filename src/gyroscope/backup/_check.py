"""Verifying a repository: structure always, pack contents with ``read_data`` (all or a subset).

Structure: every index file opens, every pack an index names exists with a readable header, every
snapshot opens, its tree reads, and every chunk it references is indexed. ``read_data``: every byte
of the chosen packs is read, the pack's BLAKE3 name re-checked, and every blob authenticated and
re-hashed. Problems name the object (pack id, snapshot id, file path). Leftovers of interrupted
backups (unindexed packs, temporary files) are warnings, not errors: they break nothing.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import blake3

from gyroscope.backup._pack import read_pack_header
from gyroscope.backup._repo import Repository, pack_name
from gyroscope.backup._tree import list_snapshots
from gyroscope.errors import BackupError

__all__ = ["CheckReport", "check"]


@dataclass(slots=True)
class CheckReport:
    """What ``check`` found; ``ok`` when there are no errors."""

    snapshots: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs: int = 0
    bytes_read: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check(
    repo: Repository,
    *,
    read_data: bool = False,
    subset: float | None = None,
    progress: Callable[[CheckReport], None] | None = None,
    rng: random.Random | None = None,
) -> CheckReport:
    """Check ``repo``; ``subset`` (0-1] reads that fraction of the packs, chosen at random."""
    report = CheckReport()
    packs_indexed = _check_index(repo, report)
    on_disk = {info.name.rsplit("/", 1)[-1]: info for info in repo.backend.list("data")}
    for name, info in on_disk.items():
        if name.startswith("."):
            report.warnings.append(f"temporary file {info.name} (left by an interrupted write)")
        elif name not in packs_indexed:
            report.warnings.append(
                f"pack {name[:16]} is not indexed (left by an interrupted backup)"
            )
    for pack in sorted(packs_indexed):
        if pack not in on_disk:
            report.errors.append(
                f"pack {pack[:16]} is missing ({len(packs_indexed[pack])} chunks lost)"
            )
    report.packs = len(packs_indexed)
    _check_snapshots(repo, report)
    if read_data or subset:
        chosen = sorted(p for p in packs_indexed if p in on_disk)
        if subset is not None and subset < 1:
            count = max(1, math.ceil(len(chosen) * subset)) if chosen else 0
            chosen = sorted((rng or random.Random()).sample(chosen, count))
        for pack in chosen:
            _read_pack(repo, pack, on_disk[pack].size, packs_indexed[pack], report)
            if progress:
                progress(report)
    return report


def _check_index(repo: Repository, report: CheckReport) -> dict[str, set[bytes]]:
    packs: dict[str, set[bytes]] = {}
    for info in repo.backend.list("index"):
        if os.path.basename(info.name).startswith("."):
            continue
        try:
            for pack, blobs in repo.read_index_file(info.name):
                packs.setdefault(pack, set()).update(bytes.fromhex(b[1]) for b in blobs)
        except BackupError as exc:
            report.errors.append(f"index {info.name}: {exc}")
    if not report.errors:
        repo.load_index()
    return packs


def _check_snapshots(repo: Repository, report: CheckReport) -> None:
    try:
        snaps = list_snapshots(repo)
    except BackupError as exc:
        report.errors.append(f"snapshots: {exc}")
        return
    report.snapshots = len(snaps)
    for snap in snaps:
        try:
            entries = list(snap.entries(repo))
        except BackupError as exc:
            report.errors.append(f"snapshot {snap.short_id}: tree unreadable: {exc}")
            continue
        for entry in entries:
            missing = [c for c in entry.get("c", ()) if bytes.fromhex(c) not in repo.index]
            if missing:
                report.errors.append(
                    f"snapshot {snap.short_id}: {entry['p']}: {len(missing)} chunk(s) not in the index"
                )


def _read_pack(
    repo: Repository, pack: str, size: int, indexed: set[bytes], report: CheckReport
) -> None:
    name = pack_name(pack)
    try:
        data = repo.backend.read(name)
    except BackupError as exc:
        report.errors.append(f"pack {pack[:16]}: {exc}")
        return
    report.packs_read += 1
    report.bytes_read += len(data)
    if blake3.blake3(data).hexdigest() != pack:
        report.errors.append(f"pack {pack[:16]}: content does not match its name (damaged)")
    try:
        blobs = read_pack_header(repo, name, size)
    except BackupError as exc:
        report.errors.append(f"pack {pack[:16]}: {exc}")
        return
    bad = 0
    view = memoryview(data)
    for _kind, hex_id, offset, length, raw in blobs:
        blob_id = bytes.fromhex(hex_id)
        try:
            repo.open_blob(blob_id, view[offset : offset + length], raw, f"pack {pack[:16]}")
            report.blobs += 1
        except BackupError:
            bad += 1
    if bad:
        report.errors.append(f"pack {pack[:16]}: {bad} of {len(blobs)} chunks are damaged")
    if indexed - {bytes.fromhex(b[1]) for b in blobs}:
        report.errors.append(f"pack {pack[:16]}: the index names chunks the pack does not hold")
