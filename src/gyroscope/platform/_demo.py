"""The built-in configuration behind ``gyro up --demo``: what a newcomer sees first.

Three demo model replicas; the gateway in front of them; the monitor scraping them (and the
gateway) every second with a rule that fires when a replica dies; the log server keeping the
platform's own logs, the gateway's access log and every alert event; and a backup of that data
(the log store and the monitor's databases) every minute, with a restore drill every five and an
alert when backups stop succeeding.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from gyroscope.errors import DataDirError
from gyroscope.monitor import demo_monitor_config
from gyroscope.platform._config import GyroConfig, parse_config

__all__ = ["DEMO_PORTS", "DEMO_REPLICAS", "demo_config", "prepare_demo_data"]

BACKUP_PASSWORD_FILE = "backup.password"  # noqa: S105 - a file name, not a secret

BACKUP_RULES: dict[str, Any] = {
    "name": "backup",
    "interval": "5s",
    "rules": [
        {
            "alert": "BackupOverdue",
            "expr": "max by (job) (gyro_backup_overdue) > 0",
            "for": "10s",
            "labels": {"severity": "ticket"},
            "annotations": {"summary": "backup job {{ $labels.job }} has not succeeded in time"},
        },
        {
            "alert": "BackupDrillFailed",
            "expr": "min by (job) (gyro_backup_drill_ok) == 0",
            "labels": {"severity": "ticket"},
            "annotations": {"summary": "the restore drill of {{ $labels.job }} failed"},
        },
    ],
}


def prepare_demo_data(data_dir: Path) -> Path:
    """Create the data directory and the demo backup password (random, owner-only) if missing."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / BACKUP_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return data_dir.resolve()
    except OSError as exc:
        raise DataDirError(f"cannot prepare the demo: {exc.strerror}", path=data_dir) from exc
    try:
        os.write(fd, secrets.token_urlsafe(24).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return data_dir.resolve()


def _demo_backup(data_dir: Path) -> dict[str, Any]:
    monitor = data_dir / "monitor"
    return {
        "repositories": [
            {
                "name": "demo",
                "location": str(data_dir / "backups"),
                "password_file": str(data_dir / BACKUP_PASSWORD_FILE),
                "init_if_missing": True,
            }
        ],
        "jobs": [
            {
                "name": "platform-data",
                "repository": "demo",
                "schedule": "* * * * *",
                "sources": [
                    {"type": "files", "paths": [str(data_dir / "logs")]},
                    {"type": "sqlite", "name": "tsdb", "path": str(monitor / "tsdb.sqlite")},
                    {"type": "sqlite", "name": "alerts", "path": str(monitor / "alerts.sqlite")},
                ],
                "retention": {"last": 10, "min_pack_age": 600},
                "drill": {"schedule": "*/5 * * * *"},
                "overdue_after": "3m",
            }
        ],
    }


DEMO_REPLICAS = 3
DEMO_PORTS = {
    "platform": 7070,
    "replicas": 8001,  # 8001, 8002, 8003
    "gateway": 8080,
    "gateway_admin": 8081,
    "monitor": 9464,
    "logs": 3100,
}


def demo_config(*, host: str = "127.0.0.1", data_dir: Path | None = None) -> GyroConfig:
    """Everything on loopback, on the ports in ``DEMO_PORTS``; with ``data_dir`` (prepared by
    ``prepare_demo_data``) also the backup of the platform's data."""
    first = DEMO_PORTS["replicas"]
    replicas: list[dict[str, Any]] = [
        {"name": f"replica-{i + 1}", "listen": f"{host}:{first + i}", "seed": i + 1}
        for i in range(DEMO_REPLICAS)
    ]
    logs_url = f"http://{host}:{DEMO_PORTS['logs']}"
    gateway_admin = f"{host}:{DEMO_PORTS['gateway_admin']}"
    monitor = demo_monitor_config(
        [r["listen"] for r in replicas], listen=f"{host}:{DEMO_PORTS['monitor']}"
    ).model_dump(mode="json", by_alias=True, exclude_defaults=True)
    monitor["scrape"].append(
        {"job": "gateway", "targets": [gateway_admin], "interval": "1s", "timeout": "1s"}
    )
    monitor.setdefault("alerting", {})["log_store_url"] = logs_url
    sections: dict[str, Any] = {}
    if data_dir is not None:
        sections["backup"] = _demo_backup(data_dir)
        monitor["scrape"].append(
            {
                "job": "platform",
                "targets": [f"{host}:{DEMO_PORTS['platform']}"],
                "metrics_path": "/metrics/backup",
                "honor_labels": True,  # the backup job's name stays in its metrics' job label
                "interval": "5s",
                "timeout": "2s",
            }
        )
        monitor["rules"] = [*monitor.get("rules", []), BACKUP_RULES]
    return parse_config(
        {
            **sections,
            "platform": {"listen": f"{host}:{DEMO_PORTS['platform']}"},
            "demo": {"replicas": replicas},
            "logs": {"listen": f"{host}:{DEMO_PORTS['logs']}"},
            "monitor": monitor,
            "gateway": {
                "listen": f"{host}:{DEMO_PORTS['gateway']}",
                "admin": gateway_admin,
                "backends": [{"name": r["name"], "address": r["listen"]} for r in replicas],
            },
        }
    )
