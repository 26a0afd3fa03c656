"""The Merkle log over the store: a file of leaf hashes, range hashing with a cache, the current root.

``leaves`` holds 32 bytes per record in sequence order. It is derived data: it is rebuilt from the
segments after a crash, and it outlives segments dropped by retention, so proofs for old positions
still work. The current root is kept incrementally (a compact range of perfect subtrees), so
appending costs O(log n) hashes and taking a checkpoint costs nothing extra.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gyroscope.logs._merkle import EMPTY_ROOT, node_hash, root, split

__all__ = ["MerkleLog"]

HASH = 32
_CACHE_MIN = 1024  # perfect aligned subtrees at least this large are remembered


class MerkleLog:
    """Leaf hashes in a file plus the tree over them.

    >>> import tempfile
    >>> log = MerkleLog(Path(tempfile.mkdtemp()) / "leaves"); log.open()
    >>> log.append([b"\\x00" * 32, b"\\x01" * 32]); log.size
    2
    >>> log.root() == log.range_hash(0, 2)
    True
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._fd = -1
        self._stack: list[
            tuple[int, bytes]
        ] = []  # (leaf count, hash) of perfect subtrees, left to right
        self._cache: dict[tuple[int, int], bytes] = {}

    def open(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        length = os.fstat(self._fd).st_size
        if length % HASH:
            os.ftruncate(self._fd, length - length % HASH)  # a torn final hash is recomputed later
        self.size = length // HASH
        self._rebuild_stack()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def truncate(self, size: int) -> None:
        """Forget leaves from ``size`` on (used by crash recovery only)."""
        if size < self.size:
            os.ftruncate(self._fd, size * HASH)
            self.size = size
            self._cache = {k: v for k, v in self._cache.items() if k[1] <= size}
            self._rebuild_stack()

    def append(self, hashes: list[bytes], stack: list[tuple[int, bytes]] | None = None) -> None:
        """Add leaf hashes; ``stack`` is ``prepare(hashes)`` when the caller computed it already."""
        os.pwrite(self._fd, b"".join(hashes), self.size * HASH)
        self._stack = self.prepare(hashes) if stack is None else stack
        self.size += len(hashes)

    def prepare(self, hashes: list[bytes]) -> list[tuple[int, bytes]]:
        """The compact range after appending ``hashes`` (no state changes: the store computes it
        while its fsync is in flight, and commits it only once the fsync succeeded).

        Level by level: the leftmost node of a level is the stack's subtree of that width (when
        there is one), nodes pair up left to right into the next level, and an odd last node stays
        on the stack. One list comprehension per level instead of a Python loop per leaf.
        """
        sha = hashlib.sha256
        stack = list(self._stack)
        rest: list[tuple[int, bytes]] = []  # the new odd nodes, lowest level first
        level, width = hashes, 1
        while level:
            if stack and stack[-1][0] == width:
                level = [stack.pop()[1], *level]
            if len(level) % 2:
                rest.append((width, level[-1]))
            # zip stops at the shorter half: an odd last node is not paired (it went to ``rest``)
            level = [
                sha(b"\x01" + left + right).digest()
                for left, right in zip(level[::2], level[1::2], strict=False)
            ]
            width *= 2
        stack.extend(reversed(rest))
        return stack

    def sync(self) -> None:
        os.fsync(self._fd)

    def leaf(self, index: int) -> bytes:
        return os.pread(self._fd, HASH, index * HASH)

    def leaf_bytes(self, lo: int, hi: int) -> bytes:
        """Leaves ``lo .. hi-1`` as one string of 32-byte hashes (no per-leaf objects)."""
        return os.pread(self._fd, max(hi - lo, 0) * HASH, lo * HASH)

    def leaves(self, lo: int, hi: int) -> list[bytes]:
        data = os.pread(self._fd, (hi - lo) * HASH, lo * HASH)
        return [data[i : i + HASH] for i in range(0, len(data), HASH)]

    def root(self, size: int | None = None) -> bytes:
        """The root now, or of the first ``size`` leaves."""
        if size is not None and size != self.size:
            return self.range_hash(0, size) if size else EMPTY_ROOT
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH of leaves ``lo .. hi-1``; large perfect subtrees are cached."""
        n = hi - lo
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:
            if n < _CACHE_MIN:
                return root(self.leaves(lo, hi))
            cached = self._cache.get((lo, hi))
            if cached is None:
                cached = self._cache[(lo, hi)] = node_hash(
                    self.range_hash(lo, lo + n // 2), self.range_hash(lo + n // 2, hi)
                )
            return cached
        k = split(n)
        return node_hash(self.range_hash(lo, lo + k), self.range_hash(lo + k, hi))

    def _rebuild_stack(self) -> None:
        self._stack = []
        lo = 0
        for bit in reversed(range(self.size.bit_length())):
            width = 1 << bit
            if self.size & width:
                self._stack.append((width, self.range_hash(lo, lo + width)))
                lo += width
