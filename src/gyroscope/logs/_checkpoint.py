"""Signed checkpoints: (tree size, root hash) signed with Ed25519, kept apart from the data.

A checkpoint is the body of a C2SP ``tlog-checkpoint`` note::

    gyroscope/logs
    1234
    <base64 root hash>

signed with the store's Ed25519 key. Checkpoints are appended, one JSON object per line, to
``checkpoints.log`` in the checkpoint directory (by default ``<data>/logs/checkpoints``, which may be
put on other storage); the private key lives beside it with mode 0600 and never leaves the machine.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gyroscope.core import atomic_write
from gyroscope.logs._errors import LogStoreError

__all__ = ["ORIGIN", "Checkpoint", "CheckpointLog", "Seal"]

ORIGIN = "gyroscope/logs"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the log had ``size`` records with Merkle root ``root``."""

    size: int
    root: bytes
    ts_ns: int
    signature: bytes

    def body(self) -> bytes:
        return f"{ORIGIN}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()

    def as_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "ts_ns": self.ts_ns,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Checkpoint:
        return cls(
            int(str(data["size"])),
            bytes.fromhex(str(data["root"])),
            int(str(data["ts_ns"])),
            base64.b64decode(str(data["signature"])),
        )


@dataclass(frozen=True, slots=True)
class Seal:
    """A signed BLAKE3 digest of a sealed segment's exact bytes, taken from what the writer wrote.

    A scrub that finds a segment's digest unchanged knows every byte is as written (and so every
    record matches the leaf hash computed from the same bytes at append time) without decoding
    it; a changed digest sends the scrubber through the segment record by record to say where.
    """

    base: int
    last_seq: int
    size: int
    digest: bytes
    signature: bytes

    def body(self) -> bytes:
        return (
            f"{ORIGIN}\nsegment {self.base} {self.last_seq} {self.size} {self.digest.hex()}\n"
        ).encode()


class CheckpointLog:
    """Sign and keep checkpoints; verify them with the public key.

    >>> import tempfile
    >>> cps = CheckpointLog(Path(tempfile.mkdtemp())); cps.open()
    >>> cp = cps.sign(3, b"\\x00" * 32, 0); cps.verify(cp)
    True
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key: Ed25519PrivateKey | None = None
        self.public: Ed25519PublicKey | None = None

    @property
    def key_path(self) -> Path:
        return self.directory / "checkpoint.key"

    @property
    def log_path(self) -> Path:
        return self.directory / "checkpoints.log"

    @property
    def seal_path(self) -> Path:
        return self.directory / "seals.log"

    def seal(self, base: int, last_seq: int, size: int, digest: bytes) -> Seal:
        """Sign and durably append a segment seal (a later seal of the same segment wins)."""
        assert self._key is not None, "open() first"
        sig = self._key.sign(Seal(base, last_seq, size, digest, b"").body())
        line = {
            "last_seq": last_seq,
            "base": base,
            "size": size,
            "digest": digest.hex(),
            "signature": base64.b64encode(sig).decode(),
        }
        with open(self.seal_path, "ab") as fh:
            fh.write(json.dumps(line).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return Seal(base, last_seq, size, digest, sig)

    def seals(self) -> dict[int, Seal]:
        """The newest seal per segment whose signature verifies (others are ignored)."""
        out: dict[int, Seal] = {}
        try:
            lines = self.seal_path.read_bytes().splitlines()
        except FileNotFoundError:
            return out
        for raw in lines:
            try:
                d = json.loads(raw)
                seal = Seal(
                    int(d["base"]),
                    int(d["last_seq"]),
                    int(d["size"]),
                    bytes.fromhex(d["digest"]),
                    base64.b64decode(d["signature"]),
                )
            except (ValueError, KeyError, TypeError):
                continue
            if self._valid(seal.signature, seal.body()):
                out[seal.base] = seal
        return out

    def _valid(self, signature: bytes, body: bytes) -> bool:
        assert self.public is not None, "open() first"
        try:
            self.public.verify(signature, body)
        except InvalidSignature:
            return False
        return True

    def open(self, *, create: bool = True) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.key_path.exists():
            if not create:
                raise LogStoreError(f"{self.key_path}: no checkpoint key")
            _create_key(self.key_path)
        loaded = _load_key(self.key_path)
        self._key = loaded
        self.public = loaded.public_key()
        pub = self.directory / "checkpoint.pub"
        # The part to hand to auditors, next to the private key; an empty or torn copy (a crash
        # while an older version wrote it in place) is written again from the private key.
        if create and not _valid_public(pub):
            atomic_write(pub, self.public_pem().encode())

    def public_pem(self) -> str:
        assert self.public is not None
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def sign(self, size: int, root: bytes, ts_ns: int) -> Checkpoint:
        """Sign and durably append a checkpoint."""
        assert self._key is not None, "open() first"
        unsigned = Checkpoint(size, root, ts_ns, b"")
        cp = Checkpoint(size, root, ts_ns, self._key.sign(unsigned.body()))
        with open(self.log_path, "ab") as fh:
            fh.write(json.dumps(cp.as_dict()).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return cp

    def verify(self, cp: Checkpoint) -> bool:
        assert self.public is not None, "open() first"
        try:
            self.public.verify(cp.signature, Checkpoint(cp.size, cp.root, cp.ts_ns, b"").body())
        except InvalidSignature:
            return False
        return True

    def all(self) -> list[Checkpoint]:
        """Every checkpoint kept; a torn last line (crash while appending) is ignored."""
        try:
            lines = self.log_path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(Checkpoint.from_dict(json.loads(line)))
            except (ValueError, KeyError):
                continue
        return out

    def latest(self) -> Checkpoint | None:
        cps = self.all()
        return cps[-1] if cps else None


def _create_key(path: Path) -> None:
    """A new Ed25519 key, written whole or not at all: temp file (0600), fsync, link, dir fsync.

    ``os.link`` fails when the key exists, so two processes starting at once keep one key.
    """
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _load_key(path: Path) -> Ed25519PrivateKey:
    """The private key, or one line naming the file and what to do."""
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LogStoreError(
            f"{path}: the checkpoint signing key is damaged or not a PEM private key ({reason}); "
            "restore it from a backup, or move it away to start a new key (checkpoints signed "
            "with the old key then verify only with its checkpoint.pub)"
        ) from None
    except OSError as exc:
        raise LogStoreError(f"{path}: cannot read the checkpoint signing key: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise LogStoreError(
            f"{path}: not an Ed25519 private key; restore the original key or move this file away"
        )
    return loaded


def _valid_public(path: Path) -> bool:
    try:
        serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, UnsupportedAlgorithm):
        return False
    return True
