"""`gyro up --demo`'s built-in config: backups of the platform's data, and the alert on them."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

from gyroscope.backup import BackupScheduler, dump, find_snapshot, restore
from gyroscope.backup._jobs import open_repository
from gyroscope.monitor._history import History
from gyroscope.monitor._tsdb import TSDB
from gyroscope.platform import demo_config, prepare_demo_data

from ..backup.test_service import FakeWall


def test_demo_data_gets_a_private_backup_password_once(tmp_path: Path) -> None:
    data = prepare_demo_data(tmp_path / "data")
    password = data / "backup.password"
    first = password.read_text()
    assert len(first.strip()) >= 24
    assert password.stat().st_mode & 0o777 == 0o600
    assert prepare_demo_data(tmp_path / "data") == data
    assert password.read_text() == first  # never replaced: it unlocks the existing backups


def test_demo_backs_up_the_platform_data_and_alerts_when_it_stops(tmp_path: Path) -> None:
    data = prepare_demo_data(tmp_path / "data")
    config = demo_config(data_dir=data)
    assert config.backup is not None and config.monitor is not None
    (repo,) = config.backup.repositories
    assert repo.init_if_missing and repo.password_file == data / "backup.password"
    (job,) = config.backup.jobs
    backed_up = [p for s in job.sources for p in [*s.paths, s.path or ""] if p]
    assert str(data / "logs") in backed_up and str(data / "monitor" / "tsdb.sqlite") in backed_up
    assert not any(p.startswith(repo.location) for p in backed_up)  # never into itself
    monitor = config.monitor
    scrape = {s.job: s for s in monitor.scrape}
    assert scrape["platform"].metrics_path == "/metrics/backup"
    alerts = [r.get("alert") for group in monitor.rules for r in group["rules"]]
    assert {"DemoReplicaDown", "BackupOverdue", "BackupDrillFailed"} <= set(alerts)
    assert demo_config().backup is None  # without a data directory, no backup section


async def test_demo_backup_job_runs_drills_and_restores_the_platform_data(tmp_path: Path) -> None:
    """The demo's own job, on the files the log store and the monitor write, through the
    scheduler: a snapshot appears, the drill passes, and each database comes back readable."""
    data = prepare_demo_data(tmp_path / "data")
    (data / "logs").mkdir()
    (data / "logs" / "segment-000001.log").write_bytes(b'{"msg": "replica up"}\n' * 500)
    (data / "monitor").mkdir()
    TSDB(data / "monitor" / "tsdb.sqlite").close()
    History(data / "monitor" / "alerts.sqlite").close()
    section = demo_config(data_dir=data).backup
    assert section is not None
    wall = FakeWall()
    scheduler = BackupScheduler(section, data_dir=data, clock=wall.time, sleep=wall.sleep)
    await scheduler.start()
    try:
        deadline = time.monotonic() + 60
        state = scheduler.states["platform-data"]
        while state.drill_ok is None or state.last_success is None:
            assert time.monotonic() < deadline, f"no backup and drill: {state}"
            await asyncio.sleep(0.05)
        assert state.drill_ok is True and state.last_error is None, state
        assert "drill failed" not in scheduler.health().detail, scheduler.health().detail
    finally:
        await scheduler.stop()

    repo = open_repository(section, "demo")  # unlocked by the password file alone
    snapshot = find_snapshot(repo, "latest")
    out = tmp_path / "restored"
    restore(repo, snapshot, out)
    log = out / str(data / "logs" / "segment-000001.log").lstrip("/")
    assert log.read_bytes() == (data / "logs" / "segment-000001.log").read_bytes()
    for name, source in (("tsdb", "tsdb.sqlite"), ("alerts", "alerts.sqlite")):
        copy = tmp_path / f"{name}.db"
        with copy.open("wb") as fh:
            dump(repo, snapshot, f"@sqlite/{name}.db", fh)
        tables = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        with (
            contextlib.closing(sqlite3.connect(copy)) as restored,
            contextlib.closing(sqlite3.connect(data / "monitor" / source)) as original,
        ):
            assert restored.execute(tables).fetchall() == original.execute(tables).fetchall()
            assert restored.execute("PRAGMA integrity_check").fetchone() == ("ok",)
