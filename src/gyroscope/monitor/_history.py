"""Persistent alert history and silences, in SQLite (parameterised SQL, WAL).

>>> import tempfile, pathlib
>>> h = History(pathlib.Path(tempfile.mkdtemp()) / "alerts.sqlite")
>>> h.record([{"time": 1.0, "event": "firing", "fingerprint": "ab", "labels": {"a": "b"}}])
>>> [e["event"] for e in h.query()]
['firing']
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from gyroscope.monitor._silences import LabelMatcher, Silence

__all__ = ["History"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, event TEXT NOT NULL, fingerprint TEXT NOT NULL,
    alertname TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_fp ON events (fingerprint, time);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS acks (fingerprint TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nflog (group_key TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class History:
    """Append alert events; list them by fingerprint, alert name or time; keep silences."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)

    def record(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        rows = [
            (
                e["time"],
                e["event"],
                e["fingerprint"],
                e.get("labels", {}).get("alertname", ""),
                json.dumps(e, separators=(",", ":"), default=str),
            )
            for e in events
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO events (time, event, fingerprint, alertname, body) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    def query(
        self,
        *,
        fingerprint: str | None = None,
        alertname: str | None = None,
        since: float = 0.0,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        sql = "SELECT body FROM events WHERE time >= ?"
        args: list[Any] = [since]
        if fingerprint:
            sql += " AND fingerprint = ?"
            args.append(fingerprint)
        if alertname:
            sql += " AND alertname = ?"
            args.append(alertname)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(1, min(limit, 10_000)))
        return [json.loads(body) for (body,) in self._db.execute(sql, args)][::-1]

    def save_silence(self, silence: Silence) -> None:
        body = {
            "id": silence.id,
            "matchers": [[m.name, m.op, m.value] for m in silence.matchers],
            "starts_at": silence.starts_at,
            "ends_at": silence.ends_at,
            "created_by": silence.created_by,
            "comment": silence.comment,
            "weekdays": sorted(silence.weekdays),
            "start_minute": silence.start_minute,
            "end_minute": silence.end_minute,
        }
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO silences VALUES (?, ?)", (silence.id, json.dumps(body))
            )

    def load_silences(self) -> list[Silence]:
        out = []
        for (body,) in self._db.execute("SELECT body FROM silences"):
            data = json.loads(body)
            data["matchers"] = tuple(LabelMatcher(*m) for m in data["matchers"])
            data["weekdays"] = frozenset(data["weekdays"])
            out.append(Silence(**data))
        return out

    def save_nflog(self, group_key: str, state: dict[str, Any] | None) -> None:
        """What a group last told its receiver (None: the group is gone)."""
        with self._db:
            if state is None:
                self._db.execute("DELETE FROM nflog WHERE group_key = ?", (group_key,))
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO nflog VALUES (?, ?)", (group_key, json.dumps(state))
                )

    def save_acks(self, acks: dict[str, dict[str, Any]]) -> None:
        """Replace the stored acknowledgements with ``acks`` (fingerprint -> who, why, when)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM acks")
            self._db.executemany(
                "INSERT INTO acks VALUES (?, ?)", [(fp, json.dumps(a)) for fp, a in acks.items()]
            )

    def load_acks(self) -> dict[str, dict[str, Any]]:
        return {fp: json.loads(body) for fp, body in self._db.execute("SELECT * FROM acks")}

    def load_nflog(self) -> dict[str, dict[str, Any]]:
        return {key: json.loads(body) for key, body in self._db.execute("SELECT * FROM nflog")}

    def close(self) -> None:
        self._db.close()
