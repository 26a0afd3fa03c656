"""Repository locks that can never block anyone forever.

Backups take a *shared* lock: they never wait for, and never block, each other. Prune takes an
*exclusive* lock and refuses to run while a live shared or exclusive lock exists. A lock is live
while its holder keeps refreshing it (every ``refresh`` seconds); one not refreshed for
``stale_after`` seconds belongs to a crashed or frozen process and is ignored and removed. A backup
whose own lock may have gone stale (the process was stopped) re-validates before it commits.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gyroscope.backup._errors import MissingDataError, RepositoryLockedError
from gyroscope.backup._repo import Repository

__all__ = ["LockInfo", "RepoLock", "live_locks", "remove_stale_locks"]

log = logging.getLogger(__name__)
Kind = Literal["shared", "exclusive"]
STALE_AFTER = 300.0
REFRESH = 30.0


@dataclass(frozen=True, slots=True)
class LockInfo:
    name: str
    kind: str
    host: str
    pid: int
    refreshed: float


def _read_locks(repo: Repository) -> list[LockInfo]:
    locks = []
    for info in repo.backend.list("locks"):
        if os.path.basename(info.name).startswith("."):
            continue
        try:
            doc = json.loads(repo.backend.read(info.name))
            locks.append(
                LockInfo(info.name, doc["kind"], doc["host"], doc["pid"], doc["refreshed"])
            )
        except (MissingDataError, ValueError, KeyError):
            continue  # removed meanwhile, or half-written by a foreign tool
    return locks


def live_locks(
    repo: Repository, *, now: float | None = None, stale_after: float = STALE_AFTER
) -> list[LockInfo]:
    now = time.time() if now is None else now
    return [lock for lock in _read_locks(repo) if now - lock.refreshed < stale_after]


def remove_stale_locks(
    repo: Repository, *, now: float | None = None, stale_after: float = STALE_AFTER
) -> int:
    """Delete locks nobody refreshed for ``stale_after`` seconds; returns how many."""
    now = time.time() if now is None else now
    stale = [lock for lock in _read_locks(repo) if now - lock.refreshed >= stale_after]
    for lock in stale:
        log.info(
            "removing stale %s lock %s (pid %s on %s)", lock.kind, lock.name, lock.pid, lock.host
        )
        repo.backend.delete(lock.name)
    return len(stale)


class RepoLock:
    """A lock file in ``locks/``, refreshed by a background thread while held.

    >>> # with RepoLock(repo, "shared"): ...back up...
    """

    def __init__(
        self,
        repo: Repository,
        kind: Kind,
        *,
        refresh: float = REFRESH,
        stale_after: float = STALE_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self.kind = kind
        self.refresh = refresh
        self.stale_after = stale_after
        self.clock = clock
        self.name = f"locks/{os.urandom(16).hex()}"
        self.last_refresh = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        now = self.clock()
        doc = {
            "kind": self.kind,
            "host": os.uname().nodename,
            "pid": os.getpid(),
            "refreshed": now,
        }
        self.repo.backend.write(self.name, json.dumps(doc).encode())
        self.last_refresh = now

    def acquire(self) -> RepoLock:
        self._write()
        if self.kind == "exclusive":
            others = [
                lock
                for lock in live_locks(self.repo, now=self.clock(), stale_after=self.stale_after)
                if lock.name != self.name
            ]
            if others:
                self.repo.backend.delete(self.name)
                raise RepositoryLockedError(
                    f"{len(others)} other operation(s) hold locks ({describe(others)}); "
                    "run again when they finish (locks of dead processes expire after "
                    f"{int(self.stale_after)} s)",
                    location=self.repo.location,
                )
        self._thread = threading.Thread(target=self._refresher, name="backup-lock", daemon=True)
        self._thread.start()
        return self

    def _refresher(self) -> None:
        while not self._stop.wait(self.refresh):
            try:
                self._write()
            except Exception:  # a failed refresh only makes the lock go stale sooner
                log.warning("could not refresh repository lock %s", self.name)

    def fresh(self) -> bool:
        """True while the lock cannot have been considered stale by anyone."""
        return self.clock() - self.last_refresh < self.stale_after * 0.8

    def ensure_fresh(self) -> None:
        if not self.fresh():
            self._write()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.repo.backend.delete(self.name)

    def __enter__(self) -> RepoLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe(locks: list[LockInfo]) -> str:
    return ", ".join(f"{lock.kind} by pid {lock.pid} on {lock.host}" for lock in locks)
