"""Pack files: many sealed blobs in one file, with a sealed header at the end.

``[blob][blob]...[sealed header][header length, 4 bytes LE]``. The header lists every blob (kind,
id, offset, length, plain length), so a pack describes itself: when a crash leaves a pack that no
index names, the next backup reads its header and indexes it instead of uploading the data again.
A pack's name is the BLAKE3 of its bytes, so ``check --read-data`` can verify a pack as a whole.
"""

from __future__ import annotations

import mmap
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

    Thread-safe: workers call ``add`` concurrently; a full pack is written outside the lock. Packs
    are assembled in anonymous memory maps of a fixed size that are used again for the next packs:
    a fresh 16 MiB buffer per pack cost a page fault per 4 KiB of it (~4k per pack), a good part of
    a backup's system time. A map's pages are only touched as blobs arrive, so a small backup still
    uses little memory.
    """

    def __init__(self, repo: Repository, *, target_size: int | None = None) -> None:
        self.repo = repo
        self.target_size = target_size or TARGET_PACK_SIZE
        # Room for a full pack, the blob that tips it over the target and the header.
        self._capacity = self.target_size + 2 * (repo.chunk_sizes["max"] + 4096)
        self._lock = threading.Lock()
        self._spare: list[mmap.mmap] = []
        self._buf: mmap.mmap | bytearray = self._new_buffer()
        self._used = 0
        self._blobs: list[list[Any]] = []
        self._unindexed: list[tuple[str, list[list[Any]]]] = []
        self.bytes_written = 0
        self.packs_written = 0

    def _new_buffer(self) -> mmap.mmap:
        return self._spare.pop() if self._spare else mmap.mmap(-1, self._capacity)

    def add(self, kind: str, blob_id: bytes, sealed: tuple[bytes, ...], raw_length: int) -> None:
        """Add one sealed blob, given as its parts (nonce, ciphertext) to spare a copy."""
        length = sum(len(part) for part in sealed)
        with self._lock:
            if self._used + length > len(self._buf):  # only a blob larger than any chunk
                grown = bytearray(self._used + length)
                grown[: self._used] = self._buf[: self._used]
                self._buf = grown
            self._blobs.append([kind, blob_id.hex(), self._used, length, raw_length])
            for part in sealed:
                end = self._used + len(part)
                self._buf[self._used : end] = part
                self._used = end
            if self._used < self.target_size:
                return
            taken = self._take()
        self._write_pack(*taken)

    def _take(self) -> tuple[mmap.mmap | bytearray, int, list[list[Any]]]:
        taken = self._buf, self._used, self._blobs
        self._buf, self._used, self._blobs = self._new_buffer(), 0, []
        return taken

    def _write_pack(self, buf: mmap.mmap | bytearray, used: int, blobs: list[list[Any]]) -> None:
        header = self.repo.key.seal(compress(encode_rows(blobs)), HEADER_AAD)
        tail = header + struct.pack("<I", len(header))
        size = used + len(tail)
        with memoryview(buf) as view:
            if size <= len(buf):
                view[used:size] = tail
                pack: bytes | memoryview = view[:size]
            else:  # a header larger than the room left (a pack of very many tiny blobs)
                pack = b"".join((view[:used], tail))
            pack_id = blake3.blake3(pack).hexdigest()
            self.repo.backend.write(pack_name(pack_id), pack)
            del pack
        # Only now, with the pack durable, may anything point at its blobs.
        self.repo.add_to_index(pack_id, blobs)
        with self._lock:
            if isinstance(buf, mmap.mmap) and len(self._spare) < 2:
                self._spare.append(buf)
            self.bytes_written += size
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
            buf, used, blobs = self._take()
        if blobs:
            self._write_pack(buf, used, blobs)
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
