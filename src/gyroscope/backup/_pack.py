"""Pack files: many sealed blobs in one file, with a sealed header at the end.

``[blob][blob]...[sealed header][header length, 4 bytes LE]``. The header lists every blob (kind,
id, offset, length, plain length), so a pack describes itself: when a crash leaves a pack that no
index names, the next backup reads its header and indexes it instead of uploading the data again.
A pack's name is the BLAKE3 of its bytes, so ``check --read-data`` can verify a pack as a whole.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import blake3

from gyroscope.backup._codec import decode_rows, encode_rows
from gyroscope.backup._crypto import InvalidTagError, compress, decompress
from gyroscope.backup._errors import CorruptDataError
from gyroscope.backup._repo import Repository, pack_name

__all__ = ["PackWriter", "index_orphan_packs", "read_pack_header"]

HEADER_AAD = b"pack header"
TARGET_PACK_SIZE = 16 << 20
CHECKPOINT_PACKS = 8


class PackWriter:
    """Collects sealed blobs into packs; writes each pack, then (every few packs) an index.

    Thread-safe: workers call ``add`` concurrently; a full pack is written outside the lock.
    """

    def __init__(self, repo: Repository, *, target_size: int | None = None) -> None:
        self.repo = repo
        self.target_size = target_size or TARGET_PACK_SIZE
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._blobs: list[list[Any]] = []
        self._unindexed: list[tuple[str, list[list[Any]]]] = []
        self.bytes_written = 0
        self.packs_written = 0

    def add(self, kind: str, blob_id: bytes, sealed: tuple[bytes, ...], raw_length: int) -> None:
        """Add one sealed blob, given as its parts (nonce, ciphertext) to spare a copy."""
        length = sum(len(part) for part in sealed)
        with self._lock:
            self._blobs.append([kind, blob_id.hex(), len(self._buf), length, raw_length])
            for part in sealed:
                self._buf += part
            if len(self._buf) < self.target_size:
                return
            buf, blobs = self._take()
        self._write_pack(buf, blobs)

    def _take(self) -> tuple[bytearray, list[list[Any]]]:
        buf, blobs = self._buf, self._blobs
        self._buf, self._blobs = bytearray(), []
        return buf, blobs

    def _write_pack(self, buf: bytearray, blobs: list[list[Any]]) -> None:
        header = self.repo.key.seal(compress(encode_rows(blobs)), HEADER_AAD)
        buf += header
        buf += struct.pack("<I", len(header))
        pack_id = blake3.blake3(buf).hexdigest()
        self.repo.backend.write(pack_name(pack_id), buf)
        # Only now, with the pack durable, may anything point at its blobs.
        self.repo.add_to_index(pack_id, blobs)
        with self._lock:
            self.bytes_written += len(buf)
            self.packs_written += 1
            self._unindexed.append((pack_id, blobs))
            due = len(self._unindexed) >= CHECKPOINT_PACKS
        if due:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write an index file for every pack written so far that no index names yet."""
        with self._lock:
            packs, self._unindexed = self._unindexed, []
        if packs:
            self.repo.write_index(packs)

    def finish(self) -> None:
        """Write the last partial pack and the index for everything written."""
        with self._lock:
            buf, blobs = self._take()
        if blobs:
            self._write_pack(buf, blobs)
        self.checkpoint()


def read_pack_header(repo: Repository, name: str, size: int) -> list[list[Any]]:
    """The blob list of a pack, read from its tail."""
    if size < 4:
        raise CorruptDataError(f"{name} is truncated", location=repo.location)
    (length,) = struct.unpack("<I", repo.backend.read_range(name, size - 4, 4))
    if length + 4 > size:
        raise CorruptDataError(f"{name} has a broken header length", location=repo.location)
    sealed = repo.backend.read_range(name, size - 4 - length, length)
    try:
        blobs = decode_rows(decompress(repo.key.open(sealed, HEADER_AAD)))
    except (InvalidTagError, ValueError) as exc:
        raise CorruptDataError(
            f"{name}: header fails authentication", location=repo.location
        ) from exc
    return blobs


def index_orphan_packs(repo: Repository) -> int:
    """Index packs that an interrupted backup wrote but never indexed; returns how many."""
    known = {entry.pack for entry in repo.index.values()}
    found: list[tuple[str, list[list[Any]]]] = []
    for info in repo.backend.list("data"):
        pack_id = info.name.rsplit("/", 1)[-1]
        if pack_id.startswith(".") or pack_id in known:
            continue
        try:
            blobs = read_pack_header(repo, info.name, info.size)
        except CorruptDataError:
            continue  # check reports it; a backup must not fail because of it
        found.append((pack_id, blobs))
        repo.add_to_index(pack_id, blobs)
    if found:
        repo.write_index(found)
    return len(found)
