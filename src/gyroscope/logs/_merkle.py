"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification. Pure, no I/O.

Leaves hash as ``SHA-256(0x00 || data)``, interior nodes as ``SHA-256(0x01 || left || right)``, and the
tree over ``n`` leaves splits at the largest power of two smaller than ``n`` (RFC 9162 section 2.1.1).
Proofs are lists of 32-byte hashes in the order RFC 9162 sections 2.1.3 and 2.1.4 produce them.

>>> leaves = [leaf_hash(bytes([i])) for i in range(5)]
>>> h = lambda lo, hi: root(leaves[lo:hi])
>>> verify_inclusion(2, 5, leaves[2], inclusion_path(2, 5, h), root(leaves))
True
>>> verify_consistency(3, 5, root(leaves[:3]), root(leaves), consistency_path(3, 5, h))
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "RangeHash",
    "consistency_path",
    "inclusion_path",
    "leaf_hash",
    "node_hash",
    "root",
    "split",
    "verify_consistency",
    "verify_inclusion",
]

RangeHash = Callable[[int, int], bytes]
"""``h(lo, hi)`` = the Merkle tree hash of leaves ``lo .. hi-1``."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves, bottom-up (equal to the recursive definition)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        nxt = [
            _sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])  # an odd node is promoted: the RFC's unbalanced right edge
        level = nxt
    return level[0]


def inclusion_path(index: int, size: int, h: RangeHash) -> list[bytes]:
    """PATH(m, D[n]) for leaf ``index`` in a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index < lo + k:
            path.append(h(lo + k, hi))
            hi = lo + k
        else:
            path.append(h(lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def consistency_path(old: int, new: int, h: RangeHash) -> list[bytes]:
    """PROOF(m, D[n]) that the tree of size ``old`` is a prefix of the tree of size ``new``."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to {new}")
    return _subproof(old, 0, new, True, h)


def _subproof(m: int, lo: int, hi: int, complete: bool, h: RangeHash) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if complete else [h(lo, hi)]
    k = split(n)
    if m <= k:
        return [*_subproof(m, lo, lo + k, complete, h), h(lo + k, hi)]
    return [*_subproof(m - k, lo + k, hi, False, h), h(lo, lo + k)]


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root_: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if old > new or old == 0:
        return False
    if old == new:
        return not path and old_root == new_root
    proof = list(path)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        proof.insert(0, old_root)
    if not proof:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
