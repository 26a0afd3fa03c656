"""``FencedResource``: a store that rejects writes carrying a stale fencing token.

This is the other half of fencing. A lock alone cannot stop a holder that was paused (GC, SIGSTOP,
a slow disk) past its lease from writing after someone else got the lock: the paused process does
not know time passed. The *resource* can stop it, if every write carries the writer's token and the
resource remembers the highest token it has accepted::

    holder A acquires: token 33 ──── pauses ─────────────────── wakes, writes(token=33) -> rejected
    lease expires ...  holder B acquires: token 34, writes(token=34) -> accepted (highest = 34)

The check and the write are one SQLite ``BEGIN IMMEDIATE`` transaction, so several processes may
share one resource file.
"""

from __future__ import annotations

from pathlib import Path

from gyroscope.core import open_shared
from gyroscope.lock._errors import StaleTokenError

__all__ = ["FencedResource"]


class FencedResource:
    """A key-value store guarded by fencing tokens (one SQLite file, shared by processes).

    >>> import tempfile
    >>> store = FencedResource(f"{tempfile.mkdtemp()}/data.db", name="orders")
    >>> store.write("total", "10", token=34)
    >>> store.write("total", "99", token=33)
    Traceback (most recent call last):
    ...
    gyroscope.lock._errors.StaleTokenError: orders: write with fencing token 33 rejected; ...
    >>> store.read("total"), store.highest_token()
    ('10', 34)
    """

    def __init__(self, path: str | Path, *, name: str = "resource") -> None:
        self.path = Path(path)
        self.name = name
        self._conn = open_shared(
            self.path,
            "CREATE TABLE IF NOT EXISTS fence (resource TEXT PRIMARY KEY, token INTEGER NOT NULL);"
            "CREATE TABLE IF NOT EXISTS data (resource TEXT, key TEXT, value TEXT, token INTEGER,"
            " PRIMARY KEY (resource, key));",
        )

    def write(self, key: str, value: str, *, token: int) -> None:
        """Store ``value`` if ``token`` is at least the highest seen; raise ``StaleTokenError``."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT token FROM fence WHERE resource = ?", (self.name,)
            ).fetchone()
            highest = row[0] if row else 0
            if token < highest:
                raise StaleTokenError(resource=self.name, token=token, highest=highest)
            conn.execute(
                "INSERT OR REPLACE INTO fence (resource, token) VALUES (?, ?)", (self.name, token)
            )
            conn.execute(
                "INSERT OR REPLACE INTO data (resource, key, value, token) VALUES (?, ?, ?, ?)",
                (self.name, key, value, token),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def read(self, key: str) -> str | None:
        row = self._conn.execute(
            "SELECT value FROM data WHERE resource = ? AND key = ?", (self.name, key)
        ).fetchone()
        return None if row is None else str(row[0])

    def highest_token(self) -> int:
        row = self._conn.execute(
            "SELECT token FROM fence WHERE resource = ?", (self.name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()
