"""Helpers of ``gyro backup``: secrets, output, progress and option parsing (kept out of the
command module so each stays small)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

__all__ = [
    "PASSWORD_ENV",
    "build_policy",
    "config_option",
    "emit",
    "json_option",
    "load_section",
    "open_repo",
    "parse_percent",
    "parse_retention_duration",
    "parse_when",
    "print_prune",
    "progress_reporter",
    "read_secret",
    "secret_options",
    "write_new_key_file",
]

PASSWORD_ENV = "GYRO_BACKUP_PASSWORD"  # noqa: S105 - the name of the variable, not a password


def secret_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--password-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Read the password from this file (first line).",
    )(func)
    return click.option(
        "--key-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Open the repository with this key file instead of a password.",
    )(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json", "as_json", is_flag=True, help="Machine-readable output (JSON lines)."
    )(func)


def read_secret(password_file: Path | None, key_file: Path | None) -> Any:
    from gyroscope.backup import BackupError, Secret

    if key_file is not None:
        if not key_file.exists():
            raise BackupError(f"{key_file}: key file not found")
        return Secret(key_file=key_file)
    if password_file is not None:
        try:
            lines = password_file.read_text().splitlines()
        except OSError as exc:
            raise BackupError(
                f"{password_file}: cannot read password file: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise BackupError(f"{password_file}: the password file is not text") from None
        password = lines[0] if lines else ""
        if not password:
            raise BackupError(
                f"{password_file}: the password file is empty (its first line is the password)"
            )
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise BackupError(
            f"no password: set ${PASSWORD_ENV}, or pass --password-file or --key-file"
        )
    return Secret(password=password.encode())


def write_new_key_file(key_file: Path) -> None:
    """Create ``key_file`` with 32 random bytes (hex), mode 0600, durably and never over an
    existing file, even a dangling symlink (``core.create_new``)."""
    import secrets

    from gyroscope.backup import BackupError
    from gyroscope.core import create_new

    directory = key_file.parent
    if not directory.is_dir():
        raise BackupError(f"{key_file}: directory {directory} does not exist (create it first)")
    try:
        created = create_new(key_file, secrets.token_bytes(32).hex().encode() + b"\n", mode=0o600)
    except OSError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
        raise BackupError(f"{key_file}: cannot write the key file: {cause.strerror}") from None
    if not created:
        raise BackupError(
            f"{key_file}: already exists; a key file is never overwritten (choose another path)"
        )


def open_repo(
    repo: str, password_file: Path | None, key_file: Path | None, append_only: bool = False
) -> Any:
    from gyroscope.backup import Repository

    return Repository.open(repo, read_secret(password_file, key_file), append_only=append_only)


def emit(as_json: bool, doc: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(doc, default=str) if as_json else text)


@contextmanager
def progress_reporter(
    as_json: bool, label: str, total: int | None = None
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A callback that prints JSON progress lines, or drives a rich bar on a terminal."""
    if as_json:
        yield lambda doc: click.echo(json.dumps({"type": "progress", **doc}))
        return
    if not sys.stderr.isatty():
        yield lambda doc: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)

        def update(doc: dict[str, Any]) -> None:
            bar.update(
                task, completed=doc.get("done", 0), description=f"{label} {doc.get('what', '')}"
            )

        yield update


def parse_when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO time like 2026-01-31T12:00, got {value!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_percent(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        fraction = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
    except ValueError:
        raise click.BadParameter(f"expected a percentage like 5%, got {value!r}") from None
    if not 0 < fraction <= 1:
        raise click.BadParameter(f"expected a percentage in (0, 100%], got {value!r}")
    return fraction


def build_policy(keep: dict[str, int], within: str | None, tags: tuple[str, ...]) -> Any:
    from gyroscope.backup import RetentionPolicy

    return RetentionPolicy(**keep, within=parse_retention_duration(within), tags=frozenset(tags))


def parse_retention_duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    units = {"h": 3600, "d": 86400, "w": 604800, "m": 2592000, "y": 31536000}
    try:
        return timedelta(seconds=int(value[:-1]) * units[value[-1]])
    except (KeyError, ValueError):
        raise click.BadParameter(
            f"expected a duration like 36h, 7d, 4w, 6m or 1y, got {value!r}"
        ) from None


def print_prune(stats: Any, as_json: bool) -> None:
    emit(
        as_json,
        {
            "type": "prune",
            "packs_deleted": stats.packs_deleted,
            "packs_rewritten": stats.packs_rewritten,
            "bytes_freed": stats.bytes_freed,
            "deferred": stats.deferred,
        },
        f"prune: {stats.packs_deleted} packs deleted, {stats.packs_rewritten} rewritten, "
        f"{stats.bytes_freed / 1e6:.1f} MB freed"
        + (" (deferred: a backup was running)" if stats.deferred else ""),
    )


def load_section(config_file: Path) -> Any:
    from gyroscope.backup import BackupConfig
    from gyroscope.core import read_yaml, validate_config
    from gyroscope.errors import ConfigError

    data = read_yaml(config_file)
    if not isinstance(data, dict) or "backup" not in data:
        raise ConfigError("no backup: section", path=config_file)
    try:
        return validate_config(BackupConfig, data["backup"], config_file)
    except ConfigError as exc:
        raise ConfigError(
            exc.message, path=config_file, key=f"backup.{exc.key}" if exc.key else "backup"
        ) from None


config_option = click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default="gyroscope.yaml",
    show_default=True,
    help="The file with the backup: section.",
)
