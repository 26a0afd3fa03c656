"""Inclusion and consistency proofs as documents a third party can check offline.

The proof fields follow RFC 6962's JSON API (``leaf_index``, ``audit_path`` and ``consistency`` as
base64 hashes); each document also carries the signed checkpoint it is anchored to and the public
key, so ``verify_proof`` needs nothing but the document (and, ideally, a public key obtained out of
band: pass ``public_pem`` to refuse documents signed by any other key).
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gyroscope.logs._checkpoint import Checkpoint
from gyroscope.logs._errors import ProofError
from gyroscope.logs._merkle import (
    consistency_path,
    inclusion_path,
    verify_consistency,
    verify_inclusion,
)
from gyroscope.logs._store import LogStore

__all__ = ["consistency_proof", "inclusion_proof", "verify_proof"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _anchor(store: LogStore, needed: int) -> Checkpoint:
    """The newest signed checkpoint covering ``needed`` records (taking a new one if allowed)."""
    cp = store.checkpoints.latest()
    if cp is None or cp.size < needed:
        if store.readonly:
            raise ProofError(
                f"no signed checkpoint covers record {needed - 1} yet; ask the running server "
                "(its API signs one on demand) or wait for the next checkpoint"
            )
        cp = store.checkpoint()
    return cp


def inclusion_proof(store: LogStore, seq: int) -> dict[str, Any]:
    """Proof that record ``seq`` is in the log, anchored to a signed checkpoint."""
    if not 0 <= seq < store.merkle.size:
        raise ProofError(f"record {seq} does not exist (the log has {store.merkle.size} records)")
    cp = _anchor(store, seq + 1)
    path = inclusion_path(seq, cp.size, store.merkle.range_hash)
    return {
        "type": "inclusion",
        "leaf_index": seq,
        "tree_size": cp.size,
        "leaf_hash": _b64(store.merkle.leaf(seq)),
        "audit_path": [_b64(h) for h in path],
        "checkpoint": cp.as_dict(),
        "public_key": store.checkpoints.public_pem(),
    }


def consistency_proof(store: LogStore, old: int, new: int | None = None) -> dict[str, Any]:
    """Proof that the log of ``old`` records is a prefix of the log at a signed checkpoint."""
    cp = _anchor(store, new or store.merkle.size)
    size = new or cp.size
    if not 0 < old <= size <= store.merkle.size:
        raise ProofError(f"no consistency proof from {old} to {size} records")
    return {
        "type": "consistency",
        "first": old,
        "second": size,
        "first_root": _b64(store.merkle.root(old)),
        "second_root": _b64(store.merkle.root(size)),
        "consistency": [_b64(h) for h in consistency_path(old, size, store.merkle.range_hash)],
        "checkpoint": cp.as_dict() if cp.size == size else None,
        "public_key": store.checkpoints.public_pem(),
    }


def _check_signature(doc: dict[str, Any], public_pem: str | None) -> Checkpoint:
    pem = public_pem or doc.get("public_key")
    if not pem:
        raise ProofError("the proof has no public key; pass one")
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ProofError("the public key is not an Ed25519 key")
    cp = Checkpoint.from_dict(doc["checkpoint"])
    try:
        key.verify(cp.signature, Checkpoint(cp.size, cp.root, cp.ts_ns, b"").body())
    except InvalidSignature as exc:
        raise ProofError("the checkpoint signature does not verify") from exc
    return cp


def verify_proof(
    doc: dict[str, Any], *, public_pem: str | None = None, line_leaf: bytes | None = None
) -> str:
    """Check a proof document; returns a one-line summary or raises ``ProofError`` saying why not."""
    try:
        if doc.get("type") == "inclusion":
            cp = _check_signature(doc, public_pem)
            leaf = base64.b64decode(doc["leaf_hash"])
            if line_leaf is not None and line_leaf != leaf:
                raise ProofError("the record given does not hash to the proof's leaf")
            path = [base64.b64decode(h) for h in doc["audit_path"]]
            if cp.size != doc["tree_size"] or not verify_inclusion(
                doc["leaf_index"], cp.size, leaf, path, cp.root
            ):
                raise ProofError(f"record {doc['leaf_index']} is NOT included in the signed tree")
            return f"record {doc['leaf_index']} is included in the signed tree of {cp.size} records"
        if doc.get("type") == "consistency":
            old_root = base64.b64decode(doc["first_root"])
            new_root = base64.b64decode(doc["second_root"])
            if doc.get("checkpoint"):
                cp = _check_signature(doc, public_pem)
                if cp.root != new_root or cp.size != doc["second"]:
                    raise ProofError("the second root is not the signed one")
            path = [base64.b64decode(h) for h in doc["consistency"]]
            if not verify_consistency(doc["first"], doc["second"], old_root, new_root, path):
                raise ProofError(
                    f"the log of {doc['first']} records is NOT a prefix of the later log"
                )
            return f"the log of {doc['first']} records is a prefix of the log of {doc['second']}"
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"malformed proof document: {exc}") from exc
    raise ProofError("not a proof document (type must be inclusion or consistency)")
