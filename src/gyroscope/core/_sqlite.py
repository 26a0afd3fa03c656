"""Opening one SQLite file that several processes share (lock tables, fenced resources).

Two steps of opening are not covered by SQLite's busy timeout when processes start together on a
new file:

- ``PRAGMA journal_mode=WAL`` needs the file to itself and answers "database is locked" at once,
  without waiting, while another connection is opening it (six processes started together on a
  new file failed this way in about a third of the tries). WAL is a property of the file, so only a file
  not yet in WAL mode needs the switch; it is retried until the timeout.
- ``CREATE TABLE IF NOT EXISTS`` run in autocommit mode reads the schema and then asks for the
  write lock; a writer that committed in between makes that upgrade fail at once too. Inside
  ``BEGIN IMMEDIATE`` the write lock is taken first, and waiting for it does honour the timeout.

>>> import tempfile
>>> conn = open_shared(f"{tempfile.mkdtemp()}/t.db", "CREATE TABLE IF NOT EXISTS t (x);")
>>> conn.execute("PRAGMA journal_mode").fetchone()[0]
'wal'
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

__all__ = ["open_shared"]


def open_shared(path: str | Path, schema: str, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A WAL-mode autocommit connection to ``path`` with ``schema`` (idempotent DDL) applied,
    ``synchronous=FULL`` (a committed fencing token survives a power cut)."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        _ensure_wal(conn, time.monotonic() + timeout)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_wal(conn: sqlite3.Connection, deadline: float) -> None:
    pause = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.1)
