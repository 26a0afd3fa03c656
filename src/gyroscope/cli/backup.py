"""``gyro backup``: repositories, snapshots, restores, checks, retention and drills."""

from __future__ import annotations

import gc
import os
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import click

from gyroscope.cli._backup_support import (
    PASSWORD_ENV,
    build_policy,
    config_option,
    emit,
    json_option,
    load_section,
    open_repo,
    parse_percent,
    parse_when,
    print_prune,
    progress_reporter,
    read_secret,
    secret_options,
    write_new_key_file,
)
from gyroscope.errors import GyroscopeError


class _Group(click.Group):
    """Turns a ``GyroscopeError`` into one line even when the group runs outside ``gyro``."""

    def invoke(self, ctx: click.Context) -> Any:
        from gyroscope.cli._main import CliError

        try:
            return super().invoke(ctx)
        except GyroscopeError as exc:
            raise CliError(exc) from None


@click.group(cls=_Group)
def backup() -> None:
    """Deduplicated, compressed, encrypted backups with verified restores.

    The password comes from $GYRO_BACKUP_PASSWORD or --password-file (never from the command line
    and never shown), or the repository is opened with --key-file.

    \b
    Example:
      export GYRO_BACKUP_PASSWORD=...
      gyro backup init /srv/backups/repo
      gyro backup create /srv/backups/repo /var/lib/models --tag nightly
      gyro backup restore /srv/backups/repo latest --target /tmp/restore
    """


@backup.command()
@click.argument("repo")
@secret_options
@click.option(
    "--append-only", is_flag=True, help="Refuse every delete and overwrite (ransomware protection)."
)
@click.option(
    "--kdf-memory",
    default=65536,
    show_default=True,
    type=click.IntRange(min=16),
    help="Argon2id memory in KiB.",
)
@click.option(
    "--kdf-time", default=2, show_default=True, type=click.IntRange(min=1), help="Argon2id passes."
)
def init(
    repo: str,
    password_file: Path | None,
    key_file: Path | None,
    append_only: bool,
    kdf_memory: int,
    kdf_time: int,
) -> None:
    """Create a repository at REPO (a directory, or sftp://user@host:port/path).

    With --key-file, a missing key file is created (32 random bytes, mode 0600, written
    atomically; an existing one is used, never overwritten): keep a copy somewhere safe; without
    it the backups cannot be read.

    \b
    Example:
      GYRO_BACKUP_PASSWORD=... gyro backup init /srv/backups/repo
      gyro backup init sftp://backup@127.0.0.1:2222/srv/repo --key-file ~/.gyro-backup.key
    """
    from gyroscope.backup import KdfParams, Repository

    if key_file is not None and not key_file.exists():
        write_new_key_file(key_file)
    secret = read_secret(password_file, key_file)
    created = Repository.init(
        repo, secret, append_only=append_only, kdf=KdfParams(time=kdf_time, memory_kib=kdf_memory)
    )
    click.echo(
        f"created repository {created.id[:8]} at {repo}" + (" (append-only)" if append_only else "")
    )


def _sources(
    sqlite: tuple[str, ...], postgres: tuple[str, ...], redis: tuple[str, ...]
) -> list[Any]:
    from gyroscope.backup._sources import PostgresSource, RedisSource, SqliteSource

    found: list[Any] = [SqliteSource.parse(s) for s in sqlite]
    found += [PostgresSource.parse(s) for s in postgres]
    return found + [RedisSource.parse(s) for s in redis]


def _start_key_derivation(repo: str, password_file: Path | None, key_file: Path | None) -> None:
    """Start deriving the repository's key from the password now (a local repository with one
    password key). The password is read as ``read_secret`` reads it; on any problem nothing
    starts, and opening the repository derives as usual and reports the problem."""
    if key_file is not None:
        return
    from gyroscope.backup._kdf import start_for_local_repository

    if password_file is not None:
        try:
            password = password_file.read_text().splitlines()[0]
        except (OSError, IndexError, UnicodeDecodeError):
            return
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if password:
        start_for_local_repository(repo, password.encode())


def _dumped(
    sqlite: tuple[str, ...], postgres: tuple[str, ...], redis: tuple[str, ...]
) -> AbstractContextManager[list[tuple[str, str]]]:
    """The database dumps as (archive path, file) pairs; without databases, no driver imports."""
    if not (sqlite or postgres or redis):
        return nullcontext([])
    from gyroscope.backup._sources import dump_sources

    return dump_sources(_sources(sqlite, postgres, redis))


@backup.command()
@click.argument("repo")
@click.argument("paths", nargs=-1)
@secret_options
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option(
    "--full", is_flag=True, help="Read every file (ignore the files cache of the parent snapshot)."
)
@click.option(
    "--sqlite",
    multiple=True,
    help="NAME=PATH: an SQLite database, copied with the online backup API.",
)
@click.option(
    "--postgres", multiple=True, help="NAME=DSN: a PostgreSQL database, dumped with pg_dump -Fc."
)
@click.option("--redis", multiple=True, help="NAME=URL: a Redis server's RDB (BGSAVE snapshot).")
@click.option(
    "--threads",
    default=max(2, min(8, os.cpu_count() or 2)),
    show_default=True,
    help="Reader threads (hashing, zstd and AES release the GIL: one per core is enough).",
)
@json_option
def create(
    repo: str,
    paths: tuple[str, ...],
    password_file: Path | None,
    key_file: Path | None,
    tags: tuple[str, ...],
    full: bool,
    sqlite: tuple[str, ...],
    postgres: tuple[str, ...],
    redis: tuple[str, ...],
    threads: int,
    as_json: bool,
) -> None:
    """Back up PATHS (and databases) into REPO as one new snapshot.

    Unchanged files are taken from the previous snapshot of the same paths without being read.
    Exit code 3: the snapshot was saved but some files vanished or were unreadable (listed).

    \b
    Example:
      gyro backup create /srv/backups/repo /etc /var/lib/models --tag nightly
      gyro backup create /srv/backups/repo --sqlite app=/var/lib/app.db --postgres main=postgresql:///main
    """
    from gyroscope.backup._heap import bound_heap

    bound_heap()  # this process is ours: keep chunk-sized buffers out of fragmenting heaps
    # The parent snapshot's entries are tens of thousands of long-lived dicts with no cycles: the
    # cyclic collector would only re-scan them (~3% of an incremental run). One short-lived process
    # (re-enabled at the end all the same, for callers that run the command in-process).
    collecting = gc.isenabled()
    gc.disable()
    # The key derivation (Argon2id) and the listing of the sources start first, on threads; the
    # rest of the backup code is imported while they run.
    _start_key_derivation(repo, password_file, key_file)
    from gyroscope.backup._walk import Walk

    walk = Walk(list(paths))
    try:
        from gyroscope.backup import backup as run_backup

        repository = open_repo(repo, password_file, key_file)
        with (
            _dumped(sqlite, postgres, redis) as extra,
            progress_reporter(as_json, "backing up") as report,
        ):
            if not paths and not extra:
                raise click.UsageError("give at least one path or database source")
            result = run_backup(
                repository,
                list(paths),
                tags=list(tags),
                full=full,
                extra=extra,
                threads=threads,
                walk=walk,
                progress=lambda s: report(
                    {
                        "what": f"{s.files} files, {s.bytes_read / 1e6:.0f} MB read",
                        "files": s.files,
                        "bytes_read": s.bytes_read,
                        "done": s.bytes_read,
                    }
                ),
            )
    finally:
        walk.close()
        if collecting:
            gc.enable()
    stats = result.stats
    for warning in stats.warnings:
        click.echo(f"warning: {warning}", err=True)
    emit(
        as_json,
        {"type": "summary", "snapshot": result.snapshot.id, **stats.as_dict()},
        f"snapshot {result.snapshot.short_id} saved: {stats.files} files "
        f"({stats.files_unchanged} unchanged), {stats.bytes_total / 1e6:.1f} MB, "
        f"{stats.bytes_stored / 1e6:.1f} MB added, {stats.duration:.1f} s",
    )
    if stats.warnings:
        sys.exit(3)


@backup.command()
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


@backup.command()
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
    default=min(8, 2 * (os.cpu_count() or 2)),
    show_default=True,
    help="Restore threads.",
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
    threads: int,
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


@backup.command()
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


@backup.command()
@click.argument("repo")
@secret_options
@click.option("--read-data", is_flag=True, help="Read and verify every byte of every pack.")
@click.option("--read-data-subset", help="Read this share of the packs, chosen at random, e.g. 5%.")
@json_option
def check(
    repo: str,
    password_file: Path | None,
    key_file: Path | None,
    read_data: bool,
    read_data_subset: str | None,
    as_json: bool,
) -> None:
    """Check REPO's structure, and with --read-data its contents. Exit 1 when anything is wrong.

    \b
    Example:
      gyro backup check /srv/backups/repo --read-data-subset 5%
    """
    from gyroscope.backup import check as run_check

    report = run_check(
        open_repo(repo, password_file, key_file),
        read_data=read_data,
        subset=parse_percent(read_data_subset),
    )
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    emit(
        as_json,
        {
            "type": "summary",
            "ok": report.ok,
            "snapshots": report.snapshots,
            "packs": report.packs,
            "packs_read": report.packs_read,
            "errors": report.errors,
            "warnings": report.warnings,
        },
        f"{'no errors' if report.ok else f'{len(report.errors)} errors'}: {report.snapshots} snapshots, "
        f"{report.packs} packs, {report.packs_read} packs read",
    )
    if not report.ok:
        sys.exit(1)


@backup.command()
@click.argument("repo")
@secret_options
@click.option("--keep-last", default=0, help="Keep the N newest snapshots.")
@click.option(
    "--keep-hourly", default=0, help="Keep the newest snapshot of each of the last N hours."
)
@click.option("--keep-daily", default=0, help="... of each of the last N days.")
@click.option("--keep-weekly", default=0, help="... of each of the last N ISO weeks.")
@click.option("--keep-monthly", default=0, help="... of each of the last N months.")
@click.option("--keep-yearly", default=0, help="... of each of the last N years.")
@click.option(
    "--keep-within",
    help="Keep everything within this of the newest snapshot (36h, 7d, 2w, 6m, 1y).",
)
@click.option("--keep-tag", multiple=True, help="Keep snapshots with this tag.")
@click.option("--prune", "then_prune", is_flag=True, help="Prune right after forgetting.")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@json_option
def forget(
    repo: str,
    password_file: Path | None,
    key_file: Path | None,
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    keep_within: str | None,
    keep_tag: tuple[str, ...],
    then_prune: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove snapshots the policy does not keep (per host and set of paths).

    \b
    Example:
      gyro backup forget /srv/backups/repo --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --prune
    """
    from gyroscope.backup import forget as run_forget
    from gyroscope.backup import prune as run_prune

    repository = open_repo(repo, password_file, key_file)
    keep = {
        "last": keep_last,
        "hourly": keep_hourly,
        "daily": keep_daily,
        "weekly": keep_weekly,
        "monthly": keep_monthly,
        "yearly": keep_yearly,
    }
    kept, removed, reasons = run_forget(
        repository, build_policy(keep, keep_within, keep_tag), dry_run=dry_run
    )
    for snap in kept:
        emit(
            as_json,
            {"type": "keep", "id": snap.id, "reasons": reasons[snap.id]},
            f"keep    {snap.short_id}  {snap.time:%Y-%m-%d %H:%M}  {','.join(reasons[snap.id])}",
        )
    for snap in removed:
        emit(
            as_json,
            {"type": "remove", "id": snap.id, "dry_run": dry_run},
            f"{'would remove' if dry_run else 'remove'}  {snap.short_id}  {snap.time:%Y-%m-%d %H:%M}",
        )
    if then_prune and not dry_run:
        print_prune(run_prune(repository), as_json)


@backup.command()
@click.argument("repo")
@secret_options
@click.option(
    "--min-pack-age",
    default=3600.0,
    show_default=True,
    help="Never touch packs younger than this many seconds (running backups may need them).",
)
@json_option
def prune(
    repo: str, password_file: Path | None, key_file: Path | None, min_pack_age: float, as_json: bool
) -> None:
    """Delete data no snapshot uses. Refused while backups run; refused on append-only repositories.

    \b
    Example:
      gyro backup prune /srv/backups/repo
    """
    from gyroscope.backup import prune as run_prune

    print_prune(
        run_prune(open_repo(repo, password_file, key_file), min_pack_age=min_pack_age), as_json
    )


@backup.command()
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


@backup.command()
@click.argument("repo")
@secret_options
def unlock(repo: str, password_file: Path | None, key_file: Path | None) -> None:
    """Remove locks whose holders stopped refreshing them (crashed processes).

    \b
    Example:
      gyro backup unlock /srv/backups/repo
    """
    from gyroscope.backup import remove_stale_locks

    click.echo(
        f"removed {remove_stale_locks(open_repo(repo, password_file, key_file))} stale lock(s)"
    )


@backup.command()
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


@backup.command()
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


@backup.command("repo-serve")
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
