"""``gyro up``: run the platform — every service gyroscope.yaml names — in one process."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gyroscope.core import default_data_dir, run
from gyroscope.errors import ConfigError
from gyroscope.platform import (
    Daemon,
    GyroConfig,
    demo_config,
    load_config,
    prepare_demo_data,
    serve,
)

DEFAULT_CONFIG = Path("gyroscope.yaml")


def _resolve(config_path: Path | None) -> tuple[GyroConfig, Path]:
    if config_path is None:
        if not DEFAULT_CONFIG.exists():
            raise ConfigError(
                "no gyroscope.yaml here; pass -c FILE, or try the demo: gyro up --demo"
            )
        config_path = DEFAULT_CONFIG
    return load_config(config_path), config_path


def _service_url(service: object) -> str:
    return str(getattr(service, "url", None) or getattr(service, "address", "") or "")


def _announce(daemon: Daemon, source: str) -> None:
    urls = {name: _service_url(service) for name, (_, service) in daemon.running.items()}
    lines = [f"gyroscope is up ({source}; data in {daemon.data_dir})", ""]
    lines.append(f"  {'platform API':<18} {daemon.api_url}/healthz   {daemon.api_url}/metrics")
    lines += [f"  {name:<18} {url}" for name, url in urls.items() if url]
    backup = daemon.config.backup
    if "backup" in urls and backup is not None:
        for job in backup.jobs:
            repo = backup.repository(job.repository)
            lines.append(f"  {'backup':<18} {job.name}: cron '{job.schedule}' -> {repo.location}")
    replicas = [url for name, url in urls.items() if name.startswith("demo/") and url]
    entry = urls.get("gateway") or (replicas[0] if replicas else None)
    if entry:
        body = '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":16,"stream":true}'
        lines += [
            "",
            "Try:",
            f"  curl -sN {entry}/v1/chat/completions -H 'content-type: application/json' \\",
            f"       -d '{body}'",
        ]
        if "gateway" in urls:
            lines.append(
                "  gyro gateway backends list                  # replicas behind the gateway"
            )
    if replicas:
        lines.append(
            f"  gyro demo fault {replicas[-1]} down=true clear_after_s=60   # a replica dies for 60 s"
        )
    if "monitor" in urls:
        lines.append(
            f"  gyro monitor alerts --url {urls['monitor']}   # DemoReplicaDown fires ~6 s later"
        )
    if "logs" in urls:
        query = '{job="gyroscope"}'
        lines.append(
            f"  gyro logs query --url {urls['logs']} '{query}' --since 5m   # platform logs"
        )
    if backup is not None and "backup" in urls and backup.jobs:
        repo = backup.repository(backup.jobs[0].repository)
        secret = f" --password-file {repo.password_file}" if repo.password_file else ""
        lines.append(f"  gyro backup snapshots {repo.location}{secret}   # the snapshots so far")
    lines += [f"  curl -s {daemon.api_url}/healthz", "", "Ctrl-C stops everything."]
    click.echo("\n".join(lines))
    sys.stdout.flush()


@click.command()
@click.option(
    "-c",
    "--config",
    "config_file",
    envvar="GYRO_UP_CONFIG",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: ./gyroscope.yaml).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Run the built-in demo: three demo replicas behind the gateway, monitored, logs kept, "
    "backed up every minute.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="GYRO_DATA_DIR",
    help="Data directory (default: data_dir from the config, else ./.gyroscope).",
)
def up(config_file: Path | None, demo: bool, data_dir: Path | None) -> None:
    """Run the platform: every service the config names, in one process.

    SIGTERM or Ctrl-C stops gracefully (in-flight work drains, bounded in time); SIGHUP re-reads
    the config file and applies it, or logs why not and keeps the running config.

    \b
    Examples:
      gyro up --demo                 # replicas, gateway :8080, monitor, logs, backups; API :7070
      gyro up -c gyroscope.yaml      # what your config names
      kill -HUP $(pgrep -f 'gyro up') # reload after editing the config
    """
    path: Path | None = None
    if demo:
        if config_file is not None:
            raise ConfigError("use either --demo or -c FILE, not both")
        directory = prepare_demo_data(data_dir or default_data_dir())
        config = demo_config(data_dir=directory)
    else:
        config, path = _resolve(config_file)
        directory = data_dir or config.data_dir or default_data_dir()
    daemon = Daemon(config, data_dir=directory, config_path=path)
    source = "built-in demo config" if demo else f"config {path}"
    run(serve(daemon, on_ready=lambda d: _announce(d, source)))
