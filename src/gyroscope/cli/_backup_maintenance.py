"""``gyro backup check``, ``forget``, ``prune`` and ``unlock``: keeping a repository healthy."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gyroscope.cli._backup_support import (
    build_policy,
    emit,
    json_option,
    open_repo,
    parse_percent,
    print_prune,
    secret_options,
)

__all__ = ["check", "forget", "prune", "unlock"]


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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
