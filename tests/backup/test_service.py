"""The scheduler: cron-driven runs, metrics, overdue -> degraded, drills, state across restarts."""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from gyroscope.backup import (
    BackupConfig,
    BackupScheduler,
    KdfParams,
    Repository,
    Secret,
    build_services,
    list_snapshots,
    seconds_until_next,
)
from gyroscope.core import validate_config
from gyroscope.errors import ConfigError

from .conftest import make_tree

PW = "scheduler-password"


class FakeWall:
    """Wall time that jumps forward whenever the scheduler sleeps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0.01)


def _config(tmp_path: Path, src: Path, **job: Any) -> BackupConfig:
    repo = tmp_path / "repo"
    if not repo.exists():
        Repository.init(
            str(repo),
            Secret(password=PW.encode()),
            kdf=KdfParams(time=1, memory_kib=8192, parallelism=1),
        )
    return validate_config(
        BackupConfig,
        {
            "repositories": [{"name": "local", "location": str(repo), "password": PW}],
            "jobs": [
                {
                    "name": "files",
                    "repository": "local",
                    "schedule": "* * * * *",
                    "overdue_after": "3m",
                    "sources": [{"type": "files", "paths": [str(src)]}],
                    "retention": {"last": 3, "min_pack_age": 0},
                    "drill": {"schedule": "*/2 * * * *"},
                    **job,
                }
            ],
        },
    )


async def _until(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _metric(scheduler: BackupScheduler, name: str) -> float:
    value = scheduler.registry.get_sample_value(name, {"job": "files"})
    return -1.0 if value is None else value


async def test_scheduled_runs_metrics_retention_and_overdue(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    config = _config(tmp_path, src)
    wall = FakeWall()
    scheduler = BackupScheduler(
        config, data_dir=tmp_path / "data", clock=wall.time, sleep=wall.sleep
    )
    await scheduler.start()
    try:
        await _until(
            lambda: (
                (
                    scheduler.registry.get_sample_value(
                        "gyro_backup_runs_total", {"job": "files", "result": "ok"}
                    )
                    or 0
                )
                >= 4
            )
        )
        await _until(lambda: scheduler.states["files"].drill_ok is True)
        assert scheduler.health().status == "ok"
        assert _metric(scheduler, "gyro_backup_last_success_timestamp_seconds") > 0
        assert _metric(scheduler, "gyro_backup_last_dedup_ratio") > 1
        assert _metric(scheduler, "gyro_backup_overdue") == 0
        text = generate_latest(scheduler.registry).decode()
        assert "gyro_backup_last_duration_seconds" in text and PW not in text

        shutil.rmtree(src)  # every run fails from now on
        await _until(lambda: scheduler.health().status == "degraded")
        assert "no successful backup in time" in scheduler.health().detail
        assert _metric(scheduler, "gyro_backup_overdue") == 1
        assert any(
            m in (scheduler.states["files"].last_error or "")
            for m in ("does not exist", "vanished")
        )
    finally:
        await scheduler.stop()
    repo = Repository.open(config.repositories[0].location, Secret(password=PW.encode()))
    assert 1 <= len(list_snapshots(repo)) <= 3  # retention ran after the backups

    again = BackupScheduler(config, data_dir=tmp_path / "data", clock=wall.time, sleep=wall.sleep)
    again._load_state()
    assert again.states["files"].last_success == scheduler.states["files"].last_success


def test_cron_arithmetic_and_build_services(tmp_path: Path) -> None:
    noon = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert seconds_until_next("30 12 * * *", noon) == 1800
    assert seconds_until_next("0 3 * * *", noon) == 15 * 3600
    config = _config(tmp_path, tmp_path)
    specs = build_services(config, tmp_path)
    assert [s.name for s in specs] == ["backup"] and isinstance(specs[0].factory(), BackupScheduler)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule": "every day"}, "cron expression"),
        ({"repository": "elsewhere"}, "not defined"),
        ({"sources": [{"type": "sqlite", "path": "/x.db"}]}, "needs a name"),
        ({"overdue_after": "soon"}, "duration"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, tmp_path, **change)


def test_gyro_backup_run_from_yaml(tmp_path: Path) -> None:
    from gyroscope.cli.backup import backup

    src = make_tree(tmp_path / "src")
    _config(tmp_path, src)
    yaml_file = tmp_path / "gyroscope.yaml"
    yaml_file.write_text(
        "backup:\n"
        f"  repositories: [{{name: local, location: {tmp_path / 'repo'}, password: '${{PW}}'}}]\n"
        "  jobs:\n"
        "    - {name: files, repository: local, schedule: '0 3 * * *',\n"
        f"       sources: [{{type: files, paths: [{src}]}}]}}\n"
    )
    result = CliRunner().invoke(
        backup, ["run", "files", "-c", str(yaml_file), "--drill"], env={"PW": PW}
    )
    assert result.exit_code == 0, result.output
    assert "job files: snapshot" in result.stdout and "drill: ok" in result.stdout
    bad = CliRunner().invoke(backup, ["run", "nope", "-c", str(yaml_file)], env={"PW": PW})
    assert bad.exit_code == 2 and "no job 'nope'" in bad.stderr


def test_gyro_backup_serve_exposes_metrics_and_health(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from gyroscope.testing import free_port, wait_for_port

    src = make_tree(tmp_path / "src")
    _config(tmp_path, src)
    yaml_file = tmp_path / "gyroscope.yaml"
    yaml_file.write_text(
        "backup:\n"
        f"  repositories: [{{name: local, location: {tmp_path / 'repo'}, password: '${{PW}}'}}]\n"
        "  jobs:\n"
        "    - {name: files, repository: local, schedule: '0 3 * * *',\n"
        f"       sources: [{{type: files, paths: [{src}]}}]}}\n"
    )
    port = free_port()
    code = "from gyroscope.cli.backup import backup; backup.main(prog_name='gyro backup')"
    env = {**os.environ, "PW": PW, "GYRO_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "serve",
            "-c",
            str(yaml_file),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        assert 'gyro_backup_overdue{job="files"} 0.0' in body and PW not in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert resp.status == 200 and b'"status": "ok"' in resp.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
