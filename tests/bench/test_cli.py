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


def test_llm_command_with_slo_and_threshold(
    gyro_cmd: list[str], clean_env: dict[str, str], demo_server, tmp_path: Path
) -> None:
    url = demo_server(4, 2.0)
    out = tmp_path / "llm.json"
    proc = bench(
        gyro_cmd,
        clean_env,
        "llm",
        url,
        "-c",
        "2",
        "-n",
        "10",
        "--output-tokens",
        "4",
        "--slo",
        "ttft<5s",
        "--threshold",
        "goodput_ratio>=0.9",
        "--json",
        "--out",
        str(out),
        "--api-key",
        "sk-secret-key",
    )
    assert proc.returncode == 0, proc.stderr
    llm = json.loads(proc.stdout)["summary"]["llm"]
    assert llm["output_tokens"] == 40 and llm["goodput_ratio"] == 1.0
    assert "sk-secret-key" not in out.read_text()
    failing = bench(
        gyro_cmd,
        clean_env,
        "llm",
        url,
        "-c",
        "1",
        "-n",
        "3",
        "--output-tokens",
        "2",
        "--threshold",
        "ttft_p99<0.001ms",
    )
    assert failing.returncode == 1 and "ttft_p99<0.001ms" in failing.stderr


def test_stress_command_writes_the_capacity_file(
    gyro_cmd: list[str], clean_env: dict[str, str], nginx_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "capacity.json"
    proc = bench(
        gyro_cmd,
        clean_env,
        "stress",
        nginx_url + "/",
        "--start",
        "50",
        "--step",
        "50",
        "--max",
        "100",
        "--step-duration",
        "1s",
        "--json",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    brief = json.loads(proc.stdout)
    assert brief["max_sustainable"]["level"] == 100
    doc = json.loads(out.read_text())
    assert doc["schema"] == "gyroscope.bench.stress/1"
    assert [s["level"] for s in doc["steps"]] == [50, 100]
