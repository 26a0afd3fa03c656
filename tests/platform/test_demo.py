"""`gyro up --demo`'s built-in config: backups of the platform's data, and the alert on them."""

from __future__ import annotations

from pathlib import Path

from gyroscope.platform import demo_config, prepare_demo_data


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
