"""The key derivation started ahead of time gives exactly what deriving on demand gives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw

from gyroscope.backup import Repository, Secret, WrongPasswordError, _kdf

from .conftest import FAST_KDF, PASSWORD


@pytest.fixture(autouse=True)
def _no_leftovers() -> None:
    _kdf._early.clear()  # what earlier tests started and never used


def test_early_start_gives_the_same_key_once() -> None:
    salt = os.urandom(16)
    expected = hash_secret_raw(
        b"pw", salt, time_cost=1, memory_cost=64, parallelism=1, hash_len=32, type=Type.ID
    )
    _kdf.start_early(b"pw", salt, 1, 64, 1)
    assert _kdf.argon2id(b"pw", salt, 1, 64, 1) == expected
    assert (b"pw", salt, 1, 64, 1) not in _kdf._early  # taken, not kept
    assert _kdf.argon2id(b"pw", salt, 1, 64, 1) == expected  # and derived again on demand
    assert _kdf.argon2id(b"other", salt, 1, 64, 1) != expected


def test_an_early_failure_surfaces_where_the_key_is_needed() -> None:
    _kdf.start_early(b"pw", b"short", 1, 64, 1)  # argon2 wants a salt of 8 bytes or more
    with pytest.raises(HashingError):
        _kdf.argon2id(b"pw", b"short", 1, 64, 1)


def test_local_repository_opens_with_the_early_key(repo: Repository, secret: Secret) -> None:
    assert _kdf.start_for_local_repository(repo.location, PASSWORD)
    assert len(_kdf._early) == 1
    assert Repository.open(repo.location, secret).id == repo.id
    assert _kdf._early == {}


def test_early_start_with_a_wrong_password_is_still_rejected(repo: Repository) -> None:
    assert _kdf.start_for_local_repository(repo.location, b"not it")
    with pytest.raises(WrongPasswordError):
        Repository.open(repo.location, Secret(password=b"not it"))
    assert _kdf._early == {}


def test_nothing_starts_where_it_cannot_help(tmp_path: Path) -> None:
    assert not _kdf.start_for_local_repository("sftp://u@127.0.0.1:1/r", PASSWORD)
    assert not _kdf.start_for_local_repository(str(tmp_path / "missing"), PASSWORD)
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    keyed = Repository.init(str(tmp_path / "keyed"), Secret(key_file=key))
    assert not _kdf.start_for_local_repository(keyed.location, PASSWORD)
    two = Repository.init(str(tmp_path / "two"), Secret(password=PASSWORD), kdf=FAST_KDF)
    keys = Path(two.location) / "keys"
    (only,) = keys.iterdir()
    (keys / ("0" * 32)).write_bytes(only.read_bytes())
    assert not _kdf.start_for_local_repository(two.location, PASSWORD)
    (keys / ("0" * 32)).unlink()
    doc = json.loads(only.read_text())
    only.write_text(json.dumps({**doc, "memory_kib": "lots"}))
    assert not _kdf.start_for_local_repository(two.location, PASSWORD)
    assert _kdf._early == {}
