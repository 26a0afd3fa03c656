"""The Merkle module against RFC 6962 test vectors (certificate-transparency) and pymerkle."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.logs import _merkle as m
from gyroscope.logs._tree import MerkleLog

# The leaves and roots used by the certificate-transparency reference implementations' tests.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION_0_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]
CT_CONSISTENCY = {
    (1, 8): CT_INCLUSION_0_8,
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
LEAVES = [m.leaf_hash(d) for d in CT_LEAVES]


def h(lo: int, hi: int) -> bytes:
    return m.root(LEAVES[lo:hi])


def test_roots_match_rfc6962_vectors() -> None:
    assert [m.root(LEAVES[:n]).hex() for n in range(1, 9)] == CT_ROOTS
    assert m.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_inclusion_and_consistency_match_vectors() -> None:
    assert [x.hex() for x in m.inclusion_path(0, 8, h)] == CT_INCLUSION_0_8
    for (old, new), expected in CT_CONSISTENCY.items():
        assert [x.hex() for x in m.consistency_path(old, new, h)] == expected
        path = m.consistency_path(old, new, h)
        assert m.verify_consistency(old, new, h(0, old), h(0, new), path)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_against_pymerkle(entries: list[bytes], data: st.DataObject) -> None:
    pymerkle = pytest.importorskip("pymerkle")
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for e in entries:
        tree.append_entry(e)
    leaves = [m.leaf_hash(e) for e in entries]
    n = len(entries)
    hh = lambda lo, hi: m.root(leaves[lo:hi])  # noqa: E731
    assert m.root(leaves) == tree.get_root(n)
    i = data.draw(st.integers(0, n - 1))
    ours = m.inclusion_path(i, n, hh)
    theirs = tree.prove_inclusion(i + 1, n).serialize()["path"]
    assert [x.hex() for x in ours] == theirs[1:]  # pymerkle puts the leaf itself first
    assert m.verify_inclusion(i, n, leaves[i], ours, tree.get_root(n))
    old = data.draw(st.integers(1, n))
    proof = m.consistency_path(old, n, hh)
    assert m.verify_consistency(old, n, tree.get_root(old), tree.get_root(n), proof)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 40), st.data())
def test_tampered_proofs_fail(n: int, data: st.DataObject) -> None:
    leaves = [m.leaf_hash(bytes([i])) for i in range(n)]
    hh = lambda lo, hi: m.root(leaves[lo:hi])  # noqa: E731
    root = m.root(leaves)
    i = data.draw(st.integers(0, n - 1))
    path = m.inclusion_path(i, n, hh)
    other = (i + 1) % n
    assert not m.verify_inclusion(i, n, leaves[other], path, root)
    assert not m.verify_inclusion(other, n, leaves[i], path, root) or leaves[i] == leaves[other]
    if path:
        k = data.draw(st.integers(0, len(path) - 1))
        bad = list(path)
        bad[k] = bytes(32)
        assert not m.verify_inclusion(i, n, leaves[i], bad, root)
    old = data.draw(st.integers(1, n - 1))
    proof = m.consistency_path(old, n, hh)
    assert not m.verify_consistency(old, n, m.root([*leaves[: old - 1], bytes(32)]), root, proof)


def test_merkle_log_file_matches_pure_tree() -> None:
    with tempfile.TemporaryDirectory() as d:
        log = MerkleLog(Path(d) / "leaves")
        log.open()
        leaves = [m.leaf_hash(i.to_bytes(4, "big")) for i in range(3000)]
        for k in range(0, 3000, 7):
            log.append(leaves[k : k + 7])
        assert log.root() == m.root(leaves)
        assert log.range_hash(1024, 2048) == m.root(leaves[1024:2048])
        assert log.root(1500) == m.root(leaves[:1500])
        log.close()
        again = MerkleLog(Path(d) / "leaves")
        again.open()  # the compact range is rebuilt from the file
        assert again.root() == m.root(leaves)
        again.truncate(100)
        assert again.root() == m.root(leaves[:100])
        again.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 70), min_size=1, max_size=40))
def test_batched_appends_of_any_size_keep_the_root(chunks: list[int]) -> None:
    """The level-by-level batch update equals the pure tree after every batch, whatever sizes
    the batches have (empty, one leaf, odd, crossing powers of two)."""
    with tempfile.TemporaryDirectory() as d:
        log = MerkleLog(Path(d) / "leaves")
        log.open()
        leaves: list[bytes] = []
        for size in chunks:
            batch = [m.leaf_hash(len(leaves).to_bytes(4, "big") + bytes([i])) for i in range(size)]
            stack = log.prepare(batch)
            assert log.size == len(leaves)  # prepare changes nothing
            log.append(batch, stack)
            leaves.extend(batch)
            assert log.root() == m.root(leaves)
        log.close()
