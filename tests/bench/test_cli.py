"""`gyro bench` as CI uses it: threshold exit codes, result files, Ctrl-C with a partial report."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from gyroscope.bench import Result


def wait_until_connected(pid: int, port: int, timeout: float = 60.0) -> None:
    """Until the generator (or one of its workers) holds a connection to ``port``."""
    parent = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in [parent, *parent.children(recursive=True)]:
            try:
                if any(c.raddr and c.raddr.port == port for c in p.net_connections("tcp")):
                    return
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise TimeoutError("the generator never connected")


def bench(gyro_cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gyro_cmd, "bench", *args], capture_output=True, text=True, timeout=90, env=env
    )


def test_thresholds_that_hold_exit_zero_and_write_files(
    gyro_cmd: list[str], clean_env: dict[str, str], nginx_url: str, tmp_path: Path
) -> None:
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    proc = bench(
        gyro_cmd,
        clean_env,
        "run",
        nginx_url + "/",
        "-c",
        "4",
        "-n",
        "500",
        "--threshold",
        "p99<5s",
        "--threshold",
        "error_rate<1%",
        "--out",
        str(out),
        "--html",
        str(html),
    )
    assert proc.returncode == 0, proc.stderr
    assert "thresholds held" in proc.stderr
    result = Result.load(out)
    assert result.data.counters["requests"] == 500
    assert "Content-Security-Policy" in html.read_text()


def test_failing_threshold_exits_one_and_names_it(
    gyro_cmd: list[str], clean_env: dict[str, str], nginx_url: str
) -> None:
    proc = bench(
        gyro_cmd,
        clean_env,
        "run",
        nginx_url + "/missing",
        "-c",
        "2",
        "-n",
        "100",
        "--threshold",
        "p99<5s",
        "--threshold",
        "error_rate<1%",
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "error_rate<1%" in proc.stderr and "p99<5s" not in proc.stderr.split("error:")[-1]


def test_json_summary(gyro_cmd: list[str], clean_env: dict[str, str], nginx_url: str) -> None:
    proc = bench(gyro_cmd, clean_env, "run", nginx_url + "/", "--rate", "100", "-d", "1s", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert summary["requests"] == pytest.approx(100, abs=2)
    assert "schedule_lag_ms" in summary


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_cleanly_and_writes_the_partial_report(
    gyro_cmd: list[str], clean_env: dict[str, str], nginx_url: str, tmp_path: Path, workers: str
) -> None:
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [
            *gyro_cmd,
            "bench",
            "run",
            nginx_url + "/",
            "--rate",
            "200",
            "-d",
            "60s",
            "--workers",
            workers,
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env,
    )
    wait_until_connected(proc.pid, int(nginx_url.rsplit(":", 1)[1]))
    time.sleep(0.5)  # measure for a moment once traffic flows
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    result = Result.load(out)
    assert result.interrupted
    assert result.data.counters["requests"] > 0
