"""SQLite lock engine: mutual exclusion between processes on one host (the embedded default).

Every operation is one ``BEGIN IMMEDIATE`` transaction (the database's single writer lock makes
read-check-write atomic) on a WAL database with ``synchronous=FULL``: the fence counter is
fsynced, so a power cut never hands out a token twice.

Expiry uses the host's boot id plus ``CLOCK_BOOTTIME`` rather than wall-clock time: wall time
jumps with NTP, while boot time only moves forward and a reboot (new boot id) expires every lease
recorded before it.

Waiters poll with exponential backoff (2 ms to 100 ms, and exactly at the holder's expiry).
SQLite has no change notification. inotify on the WAL file would wake every waiter on every write
to the database and is Linux-only; a blocking ``flock`` per name would notify but cannot expire:
a SIGSTOPped holder would keep it forever, which is the failure leases exist for.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from gyroscope.core import Health, open_shared
from gyroscope.lock._backend import Busy, Grant, LockInfo
from gyroscope.lock._errors import LockBackendError, LockDatabaseMissingError

__all__ = ["SqliteBackend"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, token INTEGER NOT NULL,
    boot TEXT NOT NULL, expires REAL NOT NULL, acquired_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fences (name TEXT PRIMARY KEY, token INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS waiters (
    name TEXT NOT NULL, owner TEXT NOT NULL, ticket INTEGER NOT NULL,
    boot TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (name, owner));
"""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "wall"  # no boot id: fall back to wall-clock time below


BOOT = _boot_id()


def host_now() -> float:
    if BOOT == "wall":
        return time.time()
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class SqliteBackend:
    """Locks in one SQLite file shared by the processes of one host.

    >>> backend = SqliteBackend.from_url("sqlite:///tmp/gyro-doc-locks.db")
    >>> backend.path.name
    'gyro-doc-locks.db'
    """

    scheme = "sqlite"
    notifies = False

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        # One thread owns the connection; the event loop never blocks on the file lock.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gyro-lock-sqlite")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteBackend:
        path = url.removeprefix("sqlite://")
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        if not path:
            raise LockBackendError(f"{url!r}: expected sqlite:///path/to/locks.db")
        return cls(path, **options)

    # -- plumbing ----------------------------------------------------------------------------

    def _connect(self, create: bool) -> sqlite3.Connection:
        if self._conn is None:
            if not create and not self.path.exists():  # looking must not create a database
                raise LockDatabaseMissingError(
                    f"sqlite {self.path}: no lock database here (nothing was ever locked with "
                    "this backend); check the path, or acquire a lock first to create it"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = open_shared(self.path, _SCHEMA, timeout=self._busy_timeout)
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, create: bool = True) -> T:
        def in_thread() -> T:
            conn = self._connect(create)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, in_thread)
        except sqlite3.Error as exc:
            raise LockBackendError(f"sqlite {self.path}: {exc}") from exc

    @staticmethod
    def _live(conn: sqlite3.Connection, name: str, now: float) -> tuple[str, int, float] | None:
        row = conn.execute(
            "SELECT owner, token, boot, expires FROM locks WHERE name = ?", (name,)
        ).fetchone()
        if row is None or row[2] != BOOT or row[3] <= now:
            return None
        return row[0], row[1], row[3]

    # -- protocol ----------------------------------------------------------------------------

    async def try_acquire(self, name: str, owner: str, ttl: float, *, fair: bool) -> Grant | Busy:
        def op(conn: sqlite3.Connection) -> Grant | Busy:
            now = host_now()
            live = self._live(conn, name, now)
            if live is not None and live[0] == owner:
                conn.execute("UPDATE locks SET expires = ? WHERE name = ?", (now + ttl, name))
                return Grant(token=live[1], ttl=ttl)
            if fair and not self._first_in_line(conn, name, owner, now, ttl):
                return Busy(holder=live[0] if live else None, retry_after=None)
            if live is not None:
                return Busy(holder=live[0], retry_after=live[2] - now)
            (token,) = conn.execute(
                "INSERT INTO fences (name, token) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET token = token + 1 RETURNING token",
                (name,),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO locks (name, owner, token, boot, expires, acquired_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, owner, token, BOOT, now + ttl, time.time()),
            )
            conn.execute("DELETE FROM waiters WHERE name = ? AND owner = ?", (name, owner))
            return Grant(token=token, ttl=ttl)

        return await self._run(op)

    @staticmethod
    def _first_in_line(
        conn: sqlite3.Connection, name: str, owner: str, now: float, ttl: float
    ) -> bool:
        # A waiter that stopped retrying (died) drops out of the queue after one ttl.
        conn.execute(
            "DELETE FROM waiters WHERE name = ? AND (boot != ? OR expires <= ?)", (name, BOOT, now)
        )
        updated = conn.execute(
            "UPDATE waiters SET expires = ? WHERE name = ? AND owner = ?", (now + ttl, name, owner)
        ).rowcount
        if not updated:
            conn.execute(
                "INSERT INTO waiters (name, owner, ticket, boot, expires) VALUES (?, ?, "
                "(SELECT COALESCE(MAX(ticket), 0) + 1 FROM waiters WHERE name = ?), ?, ?)",
                (name, owner, name, BOOT, now + ttl),
            )
        head = conn.execute(
            "SELECT owner FROM waiters WHERE name = ? ORDER BY ticket LIMIT 1", (name,)
        ).fetchone()
        return bool(head[0] == owner)

    async def release(self, name: str, owner: str, token: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            live = self._live(conn, name, host_now())
            if live is None or live[0] != owner or live[1] != token:
                return False
            conn.execute("DELETE FROM locks WHERE name = ?", (name,))
            return True

        return await self._run(op)

    async def extend(self, name: str, owner: str, token: int, ttl: float) -> float | None:
        def op(conn: sqlite3.Connection) -> float | None:
            now = host_now()
            live = self._live(conn, name, now)
            if live is None or live[0] != owner or live[1] != token:
                return None
            conn.execute("UPDATE locks SET expires = ? WHERE name = ?", (now + ttl, name))
            return ttl

        return await self._run(op)

    async def abandon(self, name: str, owner: str) -> None:
        await self._run(
            lambda conn: conn.execute(
                "DELETE FROM waiters WHERE name = ? AND owner = ?", (name, owner)
            )
        )

    async def wait(self, name: str, owner: str, max_wait: float) -> None:
        await asyncio.sleep(max_wait)

    async def inspect(self, name: str) -> LockInfo | None:
        infos = await self._infos(name)
        return infos[0] if infos else None

    async def list_locks(self) -> list[LockInfo]:
        return await self._infos(None)

    async def _infos(self, name: str | None) -> list[LockInfo]:
        def op(conn: sqlite3.Connection) -> list[LockInfo]:
            now = host_now()
            rows = conn.execute(
                "SELECT name, owner, token, expires, acquired_at, "
                "(SELECT COUNT(*) FROM waiters w WHERE w.name = l.name AND w.expires > ?) "
                "FROM locks l WHERE boot = ? AND expires > ? AND (? IS NULL OR name = ?) "
                "ORDER BY name",
                (now, BOOT, now, name, name),
            ).fetchall()
            return [
                LockInfo(
                    name=r[0],
                    owner=r[1],
                    token=r[2],
                    ttl_remaining=round(r[3] - now, 3),
                    waiters=r[5],
                    extra={"acquired_at": r[4]},
                )
                for r in rows
            ]

        return await self._run(op, create=False)

    async def force_release(self, name: str) -> LockInfo | None:
        info = await self.inspect(name)
        if info is not None:
            await self._run(lambda conn: conn.execute("DELETE FROM locks WHERE name = ?", (name,)))
            log.warning(
                "lock %s broken by administrator (owner %s, token %d)", name, info.owner, info.token
            )
        return info

    async def health(self) -> Health:
        try:
            mode = await self._run(
                lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0], create=False
            )
        except LockDatabaseMissingError:
            return Health(
                name="lock:sqlite", status="ok", detail=f"{self.path} (created on first acquire)"
            )
        except LockBackendError as exc:
            return Health(name="lock:sqlite", status="down", detail=str(exc))
        return Health(name="lock:sqlite", status="ok", detail=f"{self.path} (journal {mode})")

    async def aclose(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=False)
