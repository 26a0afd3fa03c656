"""``gyro backup run``, ``serve`` and ``repo-serve``: configured jobs, the scheduler alone and the
repository server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gyroscope.cli._backup_support import (
    config_option,
    emit,
    json_option,
    load_section,
)

__all__ = ["repo_serve", "run", "serve"]


@click.command()
@click.argument("job")
@config_option
@click.option(
    "--drill", "with_drill", is_flag=True, help="Run the job's restore drill after the backup."
)
@json_option
def run(job: str, config_file: Path, with_drill: bool, as_json: bool) -> None:
    """Run the configured JOB now: its sources, tags and retention from gyroscope.yaml.

    \b
    Example:
      gyro backup run models -c gyroscope.yaml
    """
    from gyroscope.backup import run_drill, run_job

    section = load_section(config_file)
    chosen = next((j for j in section.jobs if j.name == job), None)
    if chosen is None:
        names = ", ".join(j.name for j in section.jobs) or "none"
        raise click.BadParameter(f"no job {job!r} in {config_file} (jobs: {names})")
    result = run_job(section, chosen)
    stats = result.stats
    emit(
        as_json,
        {"type": "summary", "job": job, "snapshot": result.snapshot.id, **stats.as_dict()},
        f"job {job}: snapshot {result.snapshot.short_id}, {stats.files} files, "
        f"{stats.bytes_stored / 1e6:.1f} MB added in {stats.duration:.1f} s",
    )
    if with_drill:
        drill_result = run_drill(section, chosen)
        emit(
            as_json,
            {"type": "drill", **drill_result.as_dict()},
            f"drill: {'ok' if drill_result.ok else '; '.join(drill_result.problems[:3])}",
        )
        if not drill_result.ok:
            sys.exit(1)


@click.command()
@config_option
@click.option(
    "--listen",
    default="127.0.0.1:9464",
    show_default=True,
    help="Where /metrics and /healthz are served.",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Bearer token every request must send (else $GYRO_BACKUP_SERVE_TOKEN); needed beyond "
    "loopback.",
)
def serve(config_file: Path, listen: str, token_file: Path | None) -> None:
    """Run the backup scheduler alone (gyro up runs it too), with /metrics and /healthz.

    Beyond loopback a token is required; clients send "Authorization: Bearer <token>".

    \b
    Example:
      gyro backup serve -c gyroscope.yaml --listen 127.0.0.1:9464
      GYRO_BACKUP_SERVE_TOKEN=... gyro backup serve -c gyroscope.yaml --listen 0.0.0.0:9464
    """
    from gyroscope.backup._serve import check_listen, read_token, serve_alone

    token = read_token(token_file)
    check_listen(listen, token)  # a bad or exposed --listen is one line before anything starts
    serve_alone(load_section(config_file), listen, token)


@click.command("repo-serve")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--listen", default="127.0.0.1:8010", show_default=True, help="Where clients connect."
)
@click.option(
    "--append-only",
    is_flag=True,
    help="Refuse deletes and overwrites (lock files excepted), whatever the client asks.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Bearer token clients must send (else $GYRO_BACKUP_REPO_TOKEN); needed beyond loopback.",
)
def repo_serve(directory: Path, listen: str, append_only: bool, token_file: Path | None) -> None:
    """Serve a repository directory over HTTP, optionally append-only (ransomware protection).

    Clients use the URL as their repository; forget and prune run on this host, on the directory.

    \b
    Example:
      gyro backup repo-serve /srv/backups/repo --listen 127.0.0.1:8010 --append-only
      gyro backup create http://127.0.0.1:8010/ /var/lib/models
    """
    from gyroscope.backup._rest import TOKEN_ENV, RepoServer
    from gyroscope.core import run, run_alone

    token = token_file.read_text().strip() if token_file else os.environ.get(TOKEN_ENV)
    server = RepoServer(directory, listen=listen, token=token or None, append_only=append_only)
    mode = "append-only" if append_only else "read-write"

    def ready(_: object) -> None:
        click.echo(f"serving {directory} ({mode}) on {server.url}/", err=True)

    run(run_alone(server, on_ready=ready))
