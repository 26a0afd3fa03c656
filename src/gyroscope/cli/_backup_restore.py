"""``gyro backup snapshots``, ``restore``, ``dump`` and ``drill``: reading backups back."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from gyroscope.cli._backup_support import (
    emit,
    json_option,
    open_repo,
    parse_when,
    progress_reporter,
    secret_options,
)
from gyroscope.errors import GyroscopeError

__all__ = ["drill", "dump", "restore", "snapshots"]


@click.command()
@click.argument("repo")
@secret_options
@json_option
def snapshots(repo: str, password_file: Path | None, key_file: Path | None, as_json: bool) -> None:
    """List the snapshots in REPO, oldest first.

    \b
    Example:
      gyro backup snapshots /srv/backups/repo --json | jq -r .id
    """
    from gyroscope.backup import list_snapshots

    for snap in list_snapshots(open_repo(repo, password_file, key_file)):
        text = (
            f"{snap.short_id}  {snap.time:%Y-%m-%d %H:%M:%S}  {snap.host}  {','.join(snap.tags) or '-'}  "
            + " ".join(snap.paths)
        )
        doc = snap.as_dict()
        doc.pop("tree")
        emit(as_json, doc, text)


@click.command()
@click.argument("repo")
@click.argument("snapshot", default="latest")
@secret_options
@click.option(
    "--target",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory to restore into (use / to restore in place).",
)
@click.option(
    "--include", multiple=True, help="Restore only this path (repeatable), e.g. /etc/hosts."
)
@click.option("--before", help="Point in time: the last snapshot taken at or before this ISO time.")
@click.option(
    "--verify", is_flag=True, help="Re-read every restored file and compare it with the snapshot."
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    help="Restore threads [default: one per core for a local repository, two per core over "
    "SFTP or HTTP; at most 8].",
)
@json_option
def restore(
    repo: str,
    snapshot: str,
    password_file: Path | None,
    key_file: Path | None,
    target: Path,
    include: tuple[str, ...],
    before: str | None,
    verify: bool,
    threads: int | None,
    as_json: bool,
) -> None:
    """Restore SNAPSHOT (an id, id prefix or 'latest') from REPO under --target.

    Every chunk is authenticated and its hash re-checked. Files already identical are left alone,
    others are written to a temporary name and renamed into place.

    \b
    Example:
      gyro backup restore /srv/backups/repo latest --target /tmp/r --include /etc/hosts
      gyro backup restore /srv/backups/repo latest --before 2026-11-01T00:00 --target /tmp/r
      gyro backup restore /srv/backups/repo 1a2b3c4d --target / --verify   # in place
    """
    from gyroscope.backup import find_snapshot
    from gyroscope.backup import restore as run_restore

    repository = open_repo(repo, password_file, key_file)
    snap = find_snapshot(repository, snapshot, before=parse_when(before))
    with progress_reporter(as_json, "restoring") as report:
        stats = run_restore(
            repository,
            snap,
            target,
            include=list(include),
            threads=threads,
            verify=verify,
            progress=lambda s: report(
                {
                    "what": f"{s.files} files, {s.bytes / 1e6:.0f} MB",
                    "files": s.files,
                    "bytes": s.bytes,
                    "done": s.bytes,
                }
            ),
        )
    for error in stats.errors:
        click.echo(f"error: {error}", err=True)
    emit(
        as_json,
        {
            "type": "summary",
            "snapshot": snap.id,
            "files": stats.files,
            "bytes": stats.bytes,
            "unchanged": stats.files_skipped,
            "errors": stats.errors,
        },
        f"restored snapshot {snap.short_id}: {stats.files} files, {stats.bytes / 1e6:.1f} MB "
        f"({stats.files_skipped} already identical) to {target}",
    )
    if stats.errors:
        raise GyroscopeError(
            f"{len(stats.errors)} file(s) could not be restored (listed above); the rest were"
        )


@click.command()
@click.argument("repo")
@click.argument("snapshot")
@click.argument("path")
@secret_options
def dump(
    repo: str, snapshot: str, path: str, password_file: Path | None, key_file: Path | None
) -> None:
    """Write one file of SNAPSHOT to stdout.

    \b
    Example:
      gyro backup dump /srv/backups/repo latest /etc/hosts > hosts
    """
    from gyroscope.backup import dump as run_dump
    from gyroscope.backup import find_snapshot

    repository = open_repo(repo, password_file, key_file)
    run_dump(repository, find_snapshot(repository, snapshot), path, sys.stdout.buffer)
    sys.stdout.buffer.flush()


@click.command()
@click.argument("repo")
@click.argument("snapshot", default="latest")
@secret_options
@json_option
def drill(
    repo: str, snapshot: str, password_file: Path | None, key_file: Path | None, as_json: bool
) -> None:
    """Restore drill: restore SNAPSHOT into a temporary directory, compare, clean up.

    \b
    Example:
      gyro backup drill /srv/backups/repo latest
    """
    from gyroscope.backup._drill import restore_drill

    started = time.monotonic()
    result = restore_drill(open_repo(repo, password_file, key_file), snapshot)
    emit(
        as_json,
        {"type": "summary", **result.as_dict()},
        f"drill of snapshot {result.snapshot[:8]}: {result.files} files, {result.bytes / 1e6:.1f} MB "
        f"restored and compared in {time.monotonic() - started:.1f} s: "
        + ("ok" if result.ok else f"{len(result.problems)} problems"),
    )
    for problem in result.problems:
        click.echo(f"error: {problem}", err=True)
    if not result.ok:
        sys.exit(1)
