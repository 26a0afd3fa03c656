"""The repository: config, keys, the chunk index, sealed blobs, snapshots.

Layout (every object written atomically by the backend)::

    config               plain JSON: format version, repository id, append-only flag
    keys/<id>            the master key, wrapped by a password (Argon2id) or key-file key
    data/<ab>/<pack id>  pack files: sealed blobs, then a sealed header listing them
    index/<id>           sealed lists of (chunk id -> pack, offset, length)
    snapshots/<id>       sealed snapshot manifests (time, paths, tags, tree blob ids)
    locks/<id>           shared (backup) and exclusive (prune) locks, refreshed while held

Order of writes for crash safety: a pack is complete on disk before an index names it, and every
index naming a snapshot's chunks is on disk before the snapshot. A crash leaves at worst packs no
index names ("orphans"), which the next backup indexes from their headers and so reuses.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from gyroscope.backup._backend import AppendOnly, Backend, open_backend
from gyroscope.backup._chunker import Chunker, chunk_sizes, default_sizes
from gyroscope.backup._codec import decode_index, encode_index, iter_index
from gyroscope.backup._crypto import (
    InvalidTagError,
    KdfParams,
    MasterKey,
    compress,
    compress_blob,
    decompress,
    decompress_blob,
    kek_from_keyfile,
    kek_from_password,
    unwrap_key,
    wrap_key,
)
from gyroscope.backup._errors import (
    CorruptDataError,
    MissingDataError,
    RepositoryExists,
    RepositoryNotFound,
    RepositoryVersionError,
    WrongPasswordError,
)
from gyroscope.errors import BackupError

__all__ = ["FORMAT_VERSION", "IndexEntry", "Repository", "Secret"]

log = logging.getLogger(__name__)
_STRAY_KEYS_SEEN: set[tuple[str, str]] = set()

FORMAT_VERSION = 1


class IndexEntry(NamedTuple):
    """Where one blob lives: pack id, byte offset, sealed length, plain length, kind (d/t).

    A named tuple, not a dataclass: the index holds one per chunk and is loaded by every command;
    tuples build ~3x faster.
    """

    pack: str
    offset: int
    length: int
    raw_length: int
    kind: str


class _Kinds(dict[bytes, str]):
    def __missing__(self, key: bytes) -> str:
        return key.decode()


_KINDS = _Kinds({b"d": "d", b"t": "t"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Secret:
    """How to unlock a repository: a password, or the path of a key file."""

    password: bytes | None = field(default=None, repr=False)  # never in logs or tracebacks
    key_file: Path | None = None

    def kek(self, key_doc: dict[str, Any]) -> bytes:
        if key_doc["kdf"] == "keyfile":
            if self.key_file is None:
                raise ValueError("keyfile")
            return kek_from_keyfile(self.key_file.read_bytes())
        if self.password is None:
            raise ValueError("password")
        params = KdfParams(
            time=key_doc["time"],
            memory_kib=key_doc["memory_kib"],
            parallelism=key_doc["parallelism"],
        )
        return kek_from_password(self.password, bytes.fromhex(key_doc["salt"]), params)


def _key_check(master: MasterKey) -> str:
    """A fingerprint of the master key kept in ``config`` (revealing nothing of the key): a
    reader then never unlocks with a stray key that wraps another master key."""
    return master.chunk_id(b"gyroscope key check").hex()[:32]


def pack_name(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


class Repository:
    """An open, unlocked repository.

    >>> import tempfile
    >>> repo = Repository.init(tempfile.mkdtemp() + "/r", Secret(password=b"pw"),
    ...                        kdf=KdfParams(time=1, memory_kib=8, parallelism=1))
    >>> Repository.open(repo.location, Secret(password=b"pw")).id == repo.id
    True
    """

    def __init__(self, backend: Backend, key: MasterKey, config: dict[str, Any]) -> None:
        self.backend = backend
        self.key = key
        self.config = config
        self.id: str = config["id"]
        self.location = backend.location
        self.append_only: bool = bool(config.get("append_only"))
        self.chunk_sizes = chunk_sizes(config)  # validated when the config is read
        self.index: dict[bytes, IndexEntry] = {}
        self.index_files: set[str] = set()
        self._lock = threading.Lock()

    # -- creation and opening ------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        location: str,
        secret: Secret,
        *,
        append_only: bool = False,
        kdf: KdfParams | None = None,
    ) -> Repository:
        backend = open_backend(location)
        try:
            config, master = cls._create(backend, location, secret, append_only, kdf)
        except BaseException:
            backend.close()  # a repository already there, a full disk: release connections
            raise
        repo = cls(backend, master, config)
        return repo.with_append_only() if append_only else repo

    @staticmethod
    def _create(
        backend: Backend,
        location: str,
        secret: Secret,
        append_only: bool,
        kdf: KdfParams | None,
    ) -> tuple[dict[str, Any], MasterKey]:
        if backend.exists("config"):
            raise RepositoryExists(
                "a repository already exists here (choose an empty location)", location=location
            )
        config = {
            "gyroscope_backup": FORMAT_VERSION,
            "id": os.urandom(16).hex(),
            "append_only": append_only,
            "created": time.time(),
            "chunker": default_sizes(),
        }
        master = MasterKey.generate()
        key_doc: dict[str, Any]
        if secret.key_file is not None:
            key_doc = {"kdf": "keyfile"}
        else:
            params = kdf or KdfParams()
            key_doc = {
                "kdf": "argon2id",
                "salt": os.urandom(16).hex(),
                "time": params.time,
                "memory_kib": params.memory_kib,
                "parallelism": params.parallelism,
            }
        key_doc["key"] = wrap_key(master, secret.kek(key_doc))
        config["key_check"] = _key_check(master)
        key_name = f"keys/{os.urandom(16).hex()}"
        backend.write(key_name, json.dumps(key_doc).encode())
        # The config goes last: a location with a config is a complete repository. It is created,
        # never replaced: of two inits racing here (two hosts' first scheduled runs), one wins and
        # the other takes its key back and reports the repository that now exists.
        if not backend.create("config", json.dumps(config).encode()):
            with contextlib.suppress(BackupError, OSError):
                backend.delete(key_name)
            raise RepositoryExists(
                "a repository was created here meanwhile; open it", location=location
            )
        return config, master

    @classmethod
    def open(cls, location: str, secret: Secret, *, append_only: bool = False) -> Repository:
        backend = open_backend(location)
        try:
            config = cls._read_config(backend, location)
            started = time.monotonic()
            master = cls._unlock(backend, location, secret, config.get("key_check"))
        except BaseException:
            backend.close()  # no repository, a wrong password: release connections, descriptors
            raise
        log.debug("repository %s unlocked in %.3f s", location, time.monotonic() - started)
        repo = cls(backend, master, config)
        if append_only or repo.append_only:
            repo = repo.with_append_only()
        repo.load_index()
        log.debug(
            "index of %d chunks loaded after %.3f s", len(repo.index), time.monotonic() - started
        )
        return repo

    def with_append_only(self) -> Repository:
        self.backend = AppendOnly(self.backend)
        self.append_only = True
        return self

    @staticmethod
    def _read_config(backend: Backend, location: str) -> dict[str, Any]:
        if not backend.exists("config"):
            raise RepositoryNotFound(
                "no repository here (create one with: gyro backup init LOCATION)", location=location
            )
        try:
            config: dict[str, Any] = json.loads(backend.read("config"))
            version = int(config["gyroscope_backup"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptDataError(
                "config is not a gyroscope repository config", location=location
            ) from exc
        if version > FORMAT_VERSION:
            raise RepositoryVersionError(
                f"repository format {version} is newer than this gyroscope reads ({FORMAT_VERSION}); "
                "upgrade gyroscope",
                location=location,
            )
        try:
            chunk_sizes(config)
        except ValueError as exc:
            raise CorruptDataError(f"config: {exc}", location=location) from None
        return config

    @staticmethod
    def _unlock(
        backend: Backend, location: str, secret: Secret, key_check: str | None
    ) -> MasterKey:
        wanted = set()
        for info in backend.list("keys"):
            try:
                doc = json.loads(backend.read(info.name))
            except MissingDataError:
                continue  # the key of an init that lost a race, taken back since we listed

            try:
                master = unwrap_key(doc["key"], secret.kek(doc))
            except ValueError as exc:
                wanted.add(str(exc))
                continue
            except InvalidTagError:
                continue
            if key_check is None or hmac.compare_digest(_key_check(master), key_check):
                return master
            # Once per process: on append-only storage the key stays, and scheduled runs open the
            # repository every few minutes.
            level = logging.DEBUG if (location, info.name) in _STRAY_KEYS_SEEN else logging.WARNING
            _STRAY_KEYS_SEEN.add((location, info.name))
            log.log(
                level, "%s: ignoring %s (left by an init that lost a race)", location, info.name
            )
        if wanted == {"keyfile"}:
            raise WrongPasswordError(
                "this repository is opened with a key file (--key-file)", location=location
            )
        raise WrongPasswordError(
            "wrong password or key file: no key of this repository opens with it", location=location
        )

    def chunker(self) -> Chunker:
        """A chunker that cuts as every earlier backup into this repository did."""
        return Chunker.with_sizes(self.key.chunker_seed, self.chunk_sizes)

    # -- blobs ----------------------------------------------------------------------------------

    def seal_blob(self, blob_id: bytes, data: bytes | memoryview) -> tuple[bytes, bytes]:
        """The sealed chunk as (nonce, ciphertext), authenticated together with its ID."""
        return self.key.seal_parts(compress_blob(data), blob_id)

    def open_blob(
        self, blob_id: bytes, sealed: bytes | memoryview, raw_length: int, where: str
    ) -> bytes:
        """Decrypt, decompress and re-check the keyed hash of one blob."""
        try:
            data = decompress_blob(self.key.open(sealed, blob_id), raw_length)
        except Exception as exc:  # InvalidTag, zstd errors: all mean the bytes were altered
            raise CorruptDataError(
                f"chunk {blob_id.hex()[:16]} in {where} fails authentication",
                location=self.location,
            ) from exc
        if len(data) != raw_length or self.key.chunk_id(data) != blob_id:
            raise CorruptDataError(
                f"chunk {blob_id.hex()[:16]} in {where} has the wrong hash", location=self.location
            )
        return data

    def read_blob(self, blob_id: bytes) -> bytes:
        entry = self.index.get(blob_id)
        if entry is None:
            raise MissingDataError(
                f"chunk {blob_id.hex()[:16]} is not in the index", location=self.location
            )
        sealed = self.backend.read_range(pack_name(entry.pack), entry.offset, entry.length)
        return self.open_blob(blob_id, sealed, entry.raw_length, f"pack {entry.pack[:16]}")

    # -- index ----------------------------------------------------------------------------------

    def load_index(self) -> None:
        index: dict[bytes, IndexEntry] = {}
        names = set()
        new, kinds = tuple.__new__, _KINDS  # IndexEntry(...) without its Python-level __new__
        for info in self.backend.list("index"):
            if os.path.basename(info.name).startswith("."):
                continue
            try:
                packs = iter_index(self._open_index_file(info.name))
            except ValueError as exc:
                raise CorruptDataError(f"{info.name} is truncated", location=self.location) from exc
            for pack, rows in packs:
                index.update(
                    {i: new(IndexEntry, (pack, o, n, r, kinds[k])) for k, i, o, n, r in rows}
                )
            names.add(info.name)
        with self._lock:
            self.index, self.index_files = index, names

    def read_index_file(self, name: str) -> list[tuple[str, list[list[Any]]]]:
        try:
            return decode_index(self._open_index_file(name))
        except ValueError as exc:
            raise CorruptDataError(f"{name} fails authentication", location=self.location) from exc

    def _open_index_file(self, name: str) -> bytes:
        sealed = self.backend.read(name)
        try:
            return decompress(self.key.open(sealed, b"index"))
        except (InvalidTagError, ValueError) as exc:
            raise CorruptDataError(f"{name} fails authentication", location=self.location) from exc

    def write_index(self, packs: Iterable[tuple[str, list[list[Any]]]]) -> str:
        sealed = self.key.seal(compress(encode_index(packs)), b"index")
        name = f"index/{self.key.chunk_id(sealed).hex()}"
        self.backend.write(name, sealed)
        with self._lock:
            self.index_files.add(name)
        return name

    def add_to_index(self, pack: str, blobs: list[list[Any]]) -> None:
        with self._lock:
            for kind, hex_id, offset, length, raw in blobs:
                self.index[bytes.fromhex(hex_id)] = IndexEntry(pack, offset, length, raw, kind)

    # -- sealed JSON objects (index files, snapshots) ------------------------------------------

    def save_object(self, directory: str, doc: Any, aad: bytes) -> str:
        sealed = self.key.seal_json(doc, aad)
        name = f"{directory}/{self.key.chunk_id(sealed).hex()}"
        self.backend.write(name, sealed)
        return name

    def open_object(self, name: str, aad: bytes) -> Any:
        sealed = self.backend.read(name)
        try:
            return self.key.open_json(sealed, aad)
        except (InvalidTagError, ValueError) as exc:
            raise CorruptDataError(f"{name} fails authentication", location=self.location) from exc

    def close(self) -> None:
        self.backend.close()
