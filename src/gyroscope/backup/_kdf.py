"""Argon2id key derivation, startable ahead of time.

Deriving the key-encryption key from the password is the largest fixed cost of every command
that opens a repository (~0.1-0.2 s of CPU, by design). Argon2 releases the GIL, so
``gyro backup create`` starts it on a thread before it imports the rest of the backup code and
before it lists the sources; the derivation, the imports and the listing then share the cores.
``argon2id`` returns the result of a matching early start, or derives there and then.

This module imports only argon2: it must load before everything else.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import Future

from argon2.low_level import Type, hash_secret_raw

__all__ = ["argon2id", "start_early", "start_for_local_repository"]

_Params = tuple[bytes, bytes, int, int, int]  # password, salt, time, memory KiB, parallelism
_early: dict[_Params, Future[bytes]] = {}
_lock = threading.Lock()


def _derive(params: _Params) -> bytes:
    password, salt, time_cost, memory_kib, parallelism = params
    return hash_secret_raw(
        password,
        salt,
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        hash_len=32,
        type=Type.ID,
    )


def argon2id(password: bytes, salt: bytes, time: int, memory_kib: int, parallelism: int) -> bytes:
    """The 32-byte Argon2id hash; waits for an early start with the same inputs if there is one."""
    params = (password, salt, time, memory_kib, parallelism)
    with _lock:
        early = _early.pop(params, None)
    return early.result() if early is not None else _derive(params)


def start_early(password: bytes, salt: bytes, time: int, memory_kib: int, parallelism: int) -> None:
    """Derive on a background thread; the next ``argon2id`` call with these inputs takes it."""
    params = (password, salt, time, memory_kib, parallelism)
    future: Future[bytes] = Future()
    with _lock:
        if params in _early:
            return
        _early[params] = future

    def run() -> None:
        try:
            future.set_result(_derive(params))
        except BaseException as exc:  # handed to the caller of argon2id, as if derived there
            future.set_exception(exc)

    threading.Thread(target=run, name="backup-kdf", daemon=True).start()


def start_for_local_repository(location: str, password: bytes) -> bool:
    """Start deriving the key of a local repository that has exactly one password key.

    Best effort: anything else (a remote or missing repository, several keys, a key file, an
    unreadable key) starts nothing, and opening the repository derives as usual and reports what
    is wrong. Returns whether a derivation started.
    """
    if "://" in location:
        return False
    try:
        names = [n for n in os.listdir(os.path.join(location, "keys")) if not n.startswith(".")]
        if len(names) != 1:
            return False
        with open(os.path.join(location, "keys", names[0]), "rb") as fh:
            doc = json.loads(fh.read(1 << 16))
        if doc.get("kdf") != "argon2id":
            return False
        params = (doc["time"], doc["memory_kib"], doc["parallelism"])
        if not all(type(p) is int and 0 < p <= 1 << 22 for p in params):
            return False
        start_early(password, bytes.fromhex(doc["salt"]), *params)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True
