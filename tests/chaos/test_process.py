"""Process faults on real child processes: kill -9, pause/resume, restart, and the CLI for them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from gyroscope.chaos import ManagedProcess, ProcessFault, kill, pause, resume
from gyroscope.errors import ProcessFaultError

MISSING_PID = 999_999_999  # above any pid_max

COUNTER = """
import sys, time
path = sys.argv[1]
n = 0
while True:
    n += 1
    with open(path + ".tmp", "w") as fh:
        fh.write(str(n))
    import os; os.replace(path + ".tmp", path)
    time.sleep(0.02)
"""


def counter_cmd(path: Path) -> list[str]:
    return [sys.executable, "-c", COUNTER, str(path)]


def read_counter(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def progressing(path: Path) -> bool:
    before = read_counter(path)
    wait_until(lambda: read_counter(path) > before, timeout=15.0)
    return True


def stalled(path: Path, window: float = 0.5) -> bool:
    before = read_counter(path)
    time.sleep(window)  # a paused process must make no progress at all during the window
    return read_counter(path) == before


def test_kill_minus_9_a_child(tmp_path: Path) -> None:
    child = subprocess.Popen(counter_cmd(tmp_path / "n"))
    wait_until(lambda: read_counter(tmp_path / "n") > 0)
    kill(child.pid)
    assert not psutil.pid_exists(child.pid)  # reaped: no zombie left behind
    assert child.wait(timeout=5) in (-9, 0)


def test_pause_stops_progress_and_resume_restarts_it(tmp_path: Path) -> None:
    path = tmp_path / "n"
    with ManagedProcess(counter_cmd(path)) as proc:
        wait_until(lambda: read_counter(path) > 0)
        handle = pause(proc.pid)
        assert psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED
        assert stalled(path)
        resume(proc.pid)
        assert progressing(path)
        handle.cancel()


def test_pause_for_seconds_resumes_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "n"
    with ManagedProcess(counter_cmd(path)) as proc:
        wait_until(lambda: read_counter(path) > 0)
        handle = proc.pause(0.8)
        assert proc.paused
        assert stalled(path, window=0.4)
        assert handle.wait(timeout=15)
        assert progressing(path)
        # A handle resumes early, too.
        early = proc.pause(60)
        assert stalled(path, window=0.3)
        early.resume()
        assert progressing(path)


def test_managed_process_kill_restart_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "n"
    with ManagedProcess(counter_cmd(path)) as proc:
        wait_until(lambda: read_counter(path) > 0)
        first = proc.pid
        new = proc.restart()
        assert new != first and proc.running and proc.restarts == 1
        assert not psutil.pid_exists(first)
        path.unlink()
        assert progressing(path)
        assert proc.kill() == -9
        assert not proc.running
    # Leaving the block after a pause still cleans up (a stopped process ignores SIGTERM).
    with ManagedProcess(counter_cmd(path)) as proc:
        proc.pause()
        pid = proc.pid
    assert not psutil.pid_exists(pid)


def test_missing_pid_is_one_line_error() -> None:
    for fault in (kill, pause, resume):
        with pytest.raises(ProcessFaultError, match=r"^pid 999999999: no such process") as info:
            fault(MISSING_PID)
        assert "\n" not in str(info.value)
    assert ProcessFault is ProcessFaultError
    with pytest.raises(ProcessFaultError, match="cannot start 'no-such-command-gyro'"):
        ManagedProcess(["no-such-command-gyro"])


def gyro(gyro_cmd: list[str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gyro_cmd, "chaos", *args], capture_output=True, text=True, timeout=timeout
    )


def test_cli_kill_pause_resume(gyro_cmd: list[str], tmp_path: Path) -> None:
    path = tmp_path / "n"
    with ManagedProcess(counter_cmd(path)) as proc:
        wait_until(lambda: read_counter(path) > 0)
        result = gyro(gyro_cmd, "pause", str(proc.pid))
        assert result.returncode == 0, result.stderr
        assert stalled(path)
        assert gyro(gyro_cmd, "resume", str(proc.pid)).returncode == 0
        assert progressing(path)
        start = time.monotonic()
        result = gyro(gyro_cmd, "pause", str(proc.pid), "--for", "500ms")
        assert result.returncode == 0 and "resumed" in result.stdout
        assert time.monotonic() - start >= 0.5
        assert progressing(path)
        assert gyro(gyro_cmd, "kill", str(proc.pid)).returncode == 0
        wait_until(lambda: not proc.running)
        assert proc.returncode == -9


def test_cli_missing_pid_and_bad_duration(gyro_cmd: list[str]) -> None:
    result = gyro(gyro_cmd, "kill", str(MISSING_PID))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "gyro: error: pid 999999999: no such process (it may have exited already)"
    )
    result = gyro(gyro_cmd, "pause", str(os.getpid()), "--for", "soon")
    assert result.returncode == 2 and "expected a duration" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_run_restarts_on_schedule(gyro_cmd: list[str], tmp_path: Path) -> None:
    result = gyro(
        gyro_cmd,
        "run",
        "--restart-every",
        "700ms",
        "--duration",
        "2s",
        "--json",
        "--",
        *counter_cmd(tmp_path / "n"),
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "stopped"
    assert kinds.count("restarted") >= 2
    pids = {e["pid"] for e in events}
    assert len(pids) >= 3  # every restart is a new process
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)


def test_cli_run_reports_the_command_exit(gyro_cmd: list[str]) -> None:
    result = gyro(gyro_cmd, "run", "--", sys.executable, "-c", "raise SystemExit(3)")
    assert result.returncode == 3
    assert "exited" in result.stdout


def test_sigterm_to_cli_leaves_nothing_stopped_or_running(
    gyro_cmd: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "n"
    runner = subprocess.Popen(
        [*gyro_cmd, "chaos", "run", "--json", "--", *counter_cmd(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout is not None
    child = json.loads(runner.stdout.readline())["pid"]
    wait_until(lambda: read_counter(path) > 0)
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=30) != 0
    runner.stdout.close()
    wait_until(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie")

    with ManagedProcess(counter_cmd(path)) as proc:
        pauser = subprocess.Popen([*gyro_cmd, "chaos", "pause", str(proc.pid), "--for", "60s"])
        wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED)
        pauser.send_signal(signal.SIGTERM)
        pauser.wait(timeout=30)
        assert progressing(path)  # the interrupted pause resumed it on the way out
