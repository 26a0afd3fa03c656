"""`gyro config check` and the CLI's error contract: one line on stderr, non-zero exit, no traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def run(gyro_cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*gyro_cmd, *args], capture_output=True, text=True, env=env, timeout=60)


def test_version(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    result = run(gyro_cmd, clean_env, "--version")
    assert result.returncode == 0
    assert result.stdout.startswith("gyro, version ")


def test_check_valid(gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("demo:\n  replicas:\n    - name: a\n      listen: 127.0.0.1:8001\n")
    result = run(gyro_cmd, clean_env, "config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_check_json_masks_token(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("platform:\n  token: ${GYRO_T_TOKEN}\n")
    env = {**clean_env, "GYRO_T_TOKEN": "very-secret"}
    result = run(gyro_cmd, env, "config", "check", "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert "very-secret" not in result.stdout
    assert json.loads(result.stdout)["platform"]["token"] == "**********"


def test_check_unknown_key_is_one_line(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("demo:\n  replicas:\n    - name: a\n      slotz: 4\n")
    result = run(gyro_cmd, clean_env, "config", "check", str(path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"gyro: error: {path}: demo.replicas[0].slotz: unknown key")
    assert "Traceback" not in result.stderr


def test_check_missing_file(gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path) -> None:
    result = run(gyro_cmd, clean_env, "config", "check", str(tmp_path / "none.yaml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_without_config_says_what_to_do(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [*gyro_cmd, "up"], capture_output=True, text=True, env=clean_env, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2
    assert "gyro up --demo" in result.stderr
    assert "Traceback" not in result.stderr


def test_options_come_from_gyro_environment_variables(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**clean_env, "GYRO_UP_CONFIG": str(tmp_path / "from-env.yaml")}
    result = subprocess.run(
        [*gyro_cmd, "up"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2
    assert "from-env.yaml: file not found" in result.stderr
