"""``gyro``: the command line. One module per command group; each is a thin layer over the library."""

from gyroscope.cli._main import cli, main

__all__ = ["cli", "main"]
