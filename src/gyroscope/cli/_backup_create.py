"""``gyro backup init`` and ``gyro backup create``: new repositories and new snapshots."""

from __future__ import annotations

import gc
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import click

from gyroscope.cli._backup_support import (
    PASSWORD_ENV,
    emit,
    json_option,
    open_repo,
    progress_reporter,
    read_secret,
    secret_options,
    write_new_key_file,
)

__all__ = ["create", "init"]


@click.command()
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


@click.command()
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
