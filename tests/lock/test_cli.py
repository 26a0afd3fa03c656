"""`gyro lock` end to end, on the embedded SQLite default (own data dir per test)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from gyroscope.chaos import ManagedProcess


def gyro(
    cmd: list[str], env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, "lock", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_held(cmd: list[str], env: dict[str, str], name: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = gyro(cmd, env, "status", name, "--json")
        if out.returncode == 0:
            data: dict[str, object] = json.loads(out.stdout)
            return data
        time.sleep(0.1)
    raise AssertionError(f"{name} never became held")


def test_run_passes_token_and_exit_code(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    first = gyro(
        gyro_cmd, clean_env, "run", "job", "--", "sh", "-c", 'echo "$GYRO_LOCK_TOKEN"; exit 7'
    )
    second = gyro(gyro_cmd, clean_env, "run", "job", "--", "sh", "-c", 'echo "$GYRO_LOCK_TOKEN"')
    assert first.returncode == 7 and second.returncode == 0
    assert int(second.stdout) > int(first.stdout) >= 1
    assert (Path(clean_env["GYRO_DATA_DIR"]) / "locks.db").exists()


def test_status_list_nonblock_and_break(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    holder = ManagedProcess(
        [*gyro_cmd, "lock", "run", "--ttl", "2", "job", "--", "sleep", "60"], env=clean_env
    )
    try:
        status = wait_held(gyro_cmd, clean_env, "job")
        assert status["name"] == "job" and int(status["token"]) >= 1  # type: ignore[call-overload]
        listed = json.loads(gyro(gyro_cmd, clean_env, "list", "--json").stdout)
        assert [i["name"] for i in listed] == ["job"]
        busy = gyro(gyro_cmd, clean_env, "run", "-n", "job", "--", "true")
        assert busy.returncode == 1 and "held by someone else" in busy.stderr
        assert busy.stderr.count("\n") == 1  # one line, no traceback
        broke = gyro(gyro_cmd, clean_env, "break", "job", "--yes")
        assert broke.returncode == 0 and "token" in broke.stdout
        # the holder learns at its next renewal, stops the command and says so
        assert holder.wait(timeout=30) == 75
    finally:
        holder.kill()
    assert gyro(gyro_cmd, clean_env, "status", "job").returncode == 1


def test_bad_backend_is_one_line(gyro_cmd: list[str], clean_env: dict[str, str]) -> None:
    out = gyro(gyro_cmd, clean_env, "--backend", "mysql://x", "list")
    assert out.returncode == 2 and out.stderr.startswith(
        "gyro: error: backend: unknown lock backend"
    )
    assert "Traceback" not in out.stderr
    missing = gyro(gyro_cmd, clean_env, "run", "job", "--", "/no/such/program")
    assert missing.returncode == 1 and "cannot run" in missing.stderr


def test_backend_from_environment(
    gyro_cmd: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**clean_env, "GYRO_LOCK_BACKEND": f"sqlite://{tmp_path}/other.db"}
    assert gyro(gyro_cmd, env, "run", "job", "--", "true").returncode == 0
    assert (tmp_path / "other.db").exists()
