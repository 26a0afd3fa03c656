"""``gyro backup``: repositories, snapshots, restores, checks, retention and drills.

The group lives here; its commands live in ``_backup_*`` modules by theme (creating, reading
back, maintenance, services) and are added below, in the order ``gyro backup`` always had.
Every module imports only click and the helpers at the top: the backup engine is imported inside
the commands, so ``gyro --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

import click

from gyroscope.cli._backup_create import create, init
from gyroscope.cli._backup_maintenance import check, forget, prune, unlock
from gyroscope.cli._backup_restore import drill, dump, restore, snapshots
from gyroscope.cli._backup_service import repo_serve, run, serve
from gyroscope.errors import GyroscopeError

__all__ = ["backup"]


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


for _command in (
    init,
    create,
    snapshots,
    restore,
    dump,
    check,
    forget,
    prune,
    drill,
    unlock,
    run,
    serve,
    repo_serve,
):
    backup.add_command(_command)
