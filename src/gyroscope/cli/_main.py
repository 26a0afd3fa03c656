"""The root ``gyro`` group: lazy command groups, ``GYRO_`` variables, one-line errors."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from typing import Any

import click

from gyroscope import __version__
from gyroscope.errors import GyroscopeError

__all__ = ["CliError", "cli", "main"]

# Command groups are imported only when used, so `gyro --help` stays fast and a missing optional
# driver breaks only the command that needs it.
COMMANDS: dict[str, str] = {
    "up": "gyroscope.cli.up:up",
    "config": "gyroscope.cli.config:config",
    "demo": "gyroscope.cli.demo:demo",
    "chaos": "gyroscope.cli.chaos:chaos",
    "bench": "gyroscope.cli.bench:bench",
    "lock": "gyroscope.cli.lock:lock",
    "gateway": "gyroscope.cli.gateway:gateway",
    "logs": "gyroscope.cli.logs:logs",
    "monitor": "gyroscope.cli.monitor:monitor",
    "backup": "gyroscope.cli.backup:backup",
}


class CliError(click.ClickException):
    """A ``GyroscopeError`` as click shows it: one line on stderr and the error's exit code."""

    def __init__(self, error: GyroscopeError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"gyro: error: {self.format_message()}", err=True)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(
            name
            for name, target in COMMANDS.items()
            if importlib.util.find_spec(target.partition(":")[0]) is not None
        )

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or cmd_name not in self.list_commands(ctx):
            return None
        module_name, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GyroscopeError as exc:
            raise CliError(exc) from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="gyro")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """gyroscope keeps AI inference services steady.

    \b
    Examples:
      gyro up --demo                      # the whole platform on three demo model replicas
      gyro demo serve --port 8001         # one simulated OpenAI-compatible model server
      gyro config check gyroscope.yaml    # validate a config without running anything

    Options can also be set through environment variables GYRO_<COMMAND>[_<SUB>]_<OPTION>,
    e.g. GYRO_UP_CONFIG=gyroscope.yaml. GYRO_DATA_DIR sets the data directory.
    """
    # The level is set on the console handler, not only on the root logger, so that a log store
    # attached later (gyro up with a logs: section) can take INFO records the console does not show.
    level = max(logging.WARNING - 10 * verbose, logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(console)
    root.setLevel(level)


def main() -> None:
    """The ``gyro`` console script."""
    try:
        cli.main(prog_name="gyro", auto_envvar_prefix="GYRO")
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        sys.exit(130)
