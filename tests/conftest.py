"""Shared fixtures. Real servers come from scripts/services.sh; see gyroscope.testing.require_server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

GYRO = [sys.executable, "-m", "gyroscope.cli"]


@pytest.fixture
def gyro_cmd() -> list[str]:
    """argv prefix that runs the `gyro` CLI of this checkout."""
    return list(GYRO)


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a `gyro` subprocess with its own data dir and no stray GYRO_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GYRO_")}
    env["GYRO_DATA_DIR"] = str(tmp_path / "data")
    return env
