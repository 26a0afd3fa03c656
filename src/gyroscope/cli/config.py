"""``gyro config``: validate configuration without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gyroscope.platform import load_config


@click.group()
def config() -> None:
    """Work with gyroscope.yaml.

    \b
    Example:
      gyro config check gyroscope.yaml
    """


@config.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the validated config as JSON.")
def check(file: Path, as_json: bool) -> None:
    """Validate FILE: YAML syntax, known keys, types and ${ENV} references.

    Exits 0 when the file is valid, 2 with one line naming the file, key and problem when not.

    \b
    Example:
      gyro config check gyroscope.yaml && echo valid
    """
    cfg = load_config(file)
    if as_json:
        # Secrets (tokens) are SecretStr and print masked.
        click.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
    else:
        sections = [name for name in type(cfg).model_fields if getattr(cfg, name) is not None]
        click.echo(f"{file}: valid ({', '.join(sections)})")
