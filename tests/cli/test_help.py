"""Every `gyro` command explains itself: `--help` works and shows at least one example."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from gyroscope.cli import cli


def walk(
    group: click.Group, ctx: click.Context, prefix: tuple[str, ...]
) -> Iterator[tuple[str, ...]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = (*prefix, name)
        assert command is not None, f"{' '.join(path)} is listed but cannot be loaded"
        yield path
        if isinstance(command, click.Group):
            yield from walk(command, click.Context(command, parent=ctx), path)


COMMANDS = list(walk(cli, click.Context(cli), ()))


def test_every_command_group_is_present() -> None:
    top = {path[0] for path in COMMANDS}
    expected = {
        "up",
        "config",
        "demo",
        "chaos",
        "bench",
        "lock",
        "gateway",
        "logs",
        "monitor",
        "backup",
    }
    assert expected <= top


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="gyro")
    assert result.exit_code == 0, result.output
    assert "example" in result.output.lower(), f"`gyro {' '.join(path)} --help` shows no example"
