"""Keys and the sealed-blob format.

A repository has one random *master key*: 32 bytes for AES-256-GCM, 32 bytes for the keyed BLAKE3
that names chunks, and the FastCDC gear-table seed derived from it. Keying both the chunk IDs and
the chunk boundaries per repository means stored IDs and chunk sizes reveal nothing about content
to someone who can read the repository but has no key (a known file cannot be recognised by its
hash or by its chunk lengths).

The master key is stored in ``keys/<id>`` encrypted with a key-encryption key derived from the
password with Argon2id, or from a key file. Every sealed object is ``nonce(12) || AES-GCM(..)`` with
associated data that binds it to its role (its chunk ID, "index", "snapshot"), so a blob cannot be
swapped for another without the swap being detected.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gyroscope.backup._kdf import argon2id

__all__ = [
    "KdfParams",
    "MasterKey",
    "compress",
    "decompress",
    "kek_from_keyfile",
    "kek_from_password",
]

NONCE = 12
_local = threading.local()
RAW, ZSTD = 0, 1
SAMPLE = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class KdfParams:
    """Argon2id cost: ``time`` passes over ``memory_kib`` KiB with ``parallelism`` lanes."""

    time: int = 2
    memory_kib: int = 65536
    parallelism: int = 2

    def __post_init__(self) -> None:
        if self.time < 1 or self.parallelism < 1 or self.memory_kib < 8 * self.parallelism:
            raise ValueError(
                "Argon2id needs time >= 1, parallelism >= 1 and memory_kib >= 8 x parallelism"
            )


def kek_from_password(password: bytes, salt: bytes, params: KdfParams) -> bytes:
    """The key-encryption key for ``password`` (Argon2id, 32 bytes)."""
    return argon2id(password, salt, params.time, params.memory_kib, params.parallelism)


def kek_from_keyfile(data: bytes) -> bytes:
    """The key-encryption key for a key file's contents (which must already be high-entropy)."""
    return blake3.blake3(data, derive_key_context="gyroscope backup key file v1").digest()


class MasterKey:
    """The repository's secret: encryption key, chunk-ID key and chunker seed.

    >>> k = MasterKey.generate()
    >>> k.open(k.seal(b"hi", b"ctx"), b"ctx")
    b'hi'
    """

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 64:
            raise ValueError("master key must be 64 bytes")
        self.raw = raw
        self._aead = AESGCM(raw[:32])
        self.id_key = raw[32:]
        seed_bytes = blake3.blake3(
            self.id_key, derive_key_context="gyroscope chunker seed"
        ).digest()
        self.chunker_seed = (int.from_bytes(seed_bytes[:8], "little") & ((1 << 63) - 1)) or 1

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(64))

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        """The keyed BLAKE3 of a chunk: its ID in the repository."""
        return blake3.blake3(data, key=self.id_key).digest()

    def seal(self, plain: bytes | memoryview, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def seal_parts(self, plain: bytes | memoryview, aad: bytes) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext)``: stored back to back, without copying a large ciphertext once more."""
        nonce = os.urandom(NONCE)
        return nonce, self._aead.encrypt(nonce, plain, aad)

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes:
        """Decrypt and authenticate; raises ``InvalidTag`` when anything was altered."""
        if len(sealed) < NONCE + 16:
            raise InvalidTag
        view = memoryview(sealed)
        return self._aead.decrypt(bytes(view[:NONCE]), view[NONCE:], aad)

    def seal_json(self, obj: Any, aad: bytes) -> bytes:
        return self.seal(compress(json.dumps(obj, separators=(",", ":")).encode()), aad)

    def open_json(self, sealed: bytes, aad: bytes) -> Any:
        return json.loads(decompress(self.open(sealed, aad)))


def wrap_key(master: MasterKey, kek: bytes) -> str:
    nonce = os.urandom(NONCE)
    return base64.b64encode(nonce + AESGCM(kek).encrypt(nonce, master.raw, b"master key")).decode()


def unwrap_key(wrapped: str, kek: bytes) -> MasterKey:
    """Raises ``InvalidTag`` for a wrong password / key file."""
    sealed = base64.b64decode(wrapped)
    return MasterKey(AESGCM(kek).decrypt(sealed[:NONCE], sealed[NONCE:], b"master key"))


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    pair: tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor] | None = getattr(
        _local, "zstd", None
    )
    if pair is None:
        pair = (zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor())
        _local.zstd = pair
    return pair


def compress(data: bytes | memoryview) -> bytes:
    """One flag byte, then zstd data, or the raw bytes when compression would not shrink them."""
    packed = _zstd()[0].compress(data)
    if len(packed) < len(data):
        return b"\x01" + packed
    return b"\x00" + bytes(data)


def compress_blob(data: bytes | memoryview) -> bytes | memoryview:
    """zstd when it shrinks the chunk, else the chunk itself (no flag: the index records the plain
    length, and a stored length equal to it means "not compressed"). A 64 KiB sample is tried first
    so that random data (model weights, archives) is not compressed in vain."""
    compressor = _zstd()[0]
    if len(data) > 4 * SAMPLE and len(compressor.compress(data[:SAMPLE])) > SAMPLE * 0.97:
        return data
    packed = compressor.compress(data)
    return packed if len(packed) < len(data) else data


def decompress_blob(plain: bytes, raw_length: int) -> bytes:
    if len(plain) == raw_length:
        return plain
    return _zstd()[1].decompress(plain, max_output_size=raw_length)


def decompress(data: bytes) -> bytes:
    if data[:1] == b"\x01":
        return _zstd()[1].decompress(data[1:])
    if data[:1] == b"\x00":
        return data[1:]
    raise ValueError("unknown compression flag")


InvalidTagError = InvalidTag
