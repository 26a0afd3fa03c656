"""`gyro monitor serve` as users run it: a config file, SIGTERM for a clean stop, one-line errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gyroscope.cli._main import COMMANDS
from gyroscope.cli._main import cli as root
from gyroscope.testing import free_port, wait_for_port

SERVE = "from gyroscope.cli.monitor import monitor; monitor(prog_name='gyro monitor')"


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMMANDS, "monitor", "gyroscope.cli.monitor:monitor")


def test_serve_gyroscope_yaml_section_and_stop_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "rules.yaml").write_text(
        "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: vector(1)\n"
    )
    (tmp_path / "gyroscope.yaml").write_text(
        f"monitor:\n  listen: 127.0.0.1:{port}\n  rule_files: [rules.yaml]\n  host: {{enabled: false}}\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            "serve",
            "-c",
            str(tmp_path / "gyroscope.yaml"),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/-/healthy").text == "ok\n"
        groups = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules").json()["data"]["groups"]
        assert groups[0]["rules"][0]["name"] == "r"  # the rule file resolved next to the config
        (tmp_path / "rules.yaml").write_text(
            "groups:\n  - name: g\n    rules:\n      - record: r2\n        expr: vector(1)\n"
        )
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            groups = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules").json()["data"]["groups"]
            if groups[0]["rules"][0]["name"] == "r2":
                break
            time.sleep(0.05)
        assert groups[0]["rules"][0]["name"] == "r2"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"monitor listening on http://127.0.0.1:{port}" in err
    assert (tmp_path / "data" / "monitor" / "tsdb.sqlite").exists()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("listen: 0.0.0.0:9464\n", "needs monitor.token"),
        ("scrape: [{job: x, targets: [nohost]}]\n", "scrape[0].targets"),
        ("evaluation_interval: soon\n", "expected a duration"),
        ("rule_files: [missing.yaml]\n", "missing.yaml: cannot read"),
        ("alerting: {route: {receiver: nobody}}\n", "not in receivers"),
    ],
)
def test_bad_config_is_one_line(tmp_path: Path, config: str, expected: str) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(config)
    result = CliRunner().invoke(
        root, ["monitor", "serve", "-c", str(path), "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gyro: error:") and expected in lines[0], (
        result.output
    )


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "monitor.yaml"
        path.write_text(f"listen: 127.0.0.1:{port}\nhost: {{enabled: false}}\n")
        result = CliRunner().invoke(
            root, ["monitor", "serve", "-c", str(path), "--data-dir", str(tmp_path / "d")]
        )
    assert result.exit_code != 0
    assert (
        "address already in use" in result.output and len(result.output.strip().splitlines()) == 1
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("0s", 0.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1.5s", 1.5)]
)
def test_durations_as_prometheus_writes_them(text: str, seconds: float) -> None:
    from gyroscope.monitor import MonitorConfig

    cfg = MonitorConfig.model_validate(
        {"alerting": {"route": {"receiver": "default", "group_wait": text}}}
    )
    assert cfg.alerting.route.group_wait == seconds


async def test_reload_rules_keeps_state_and_rejects_bad_files(tmp_path: Path) -> None:
    from gyroscope.monitor import MonitorConfig, MonitorService

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n"
        "        for: 1h\n"
    )
    service = MonitorService(
        MonitorConfig.model_validate(
            {"listen": "127.0.0.1:0", "host": {"enabled": False}, "rule_files": [str(rules)]}
        ),
        tmp_path / "d",
    )
    await service.start()
    try:
        service.evaluate_group(service.evaluators[0], 1000.0)
        (pending,) = service.evaluators[0].alerts()
        async with httpx.AsyncClient(base_url=service.url) as client:
            rules.write_text(rules.read_text() + "      - record: r\n        expr: vector(2)\n")
            r = await client.post("/-/reload")
            assert r.status_code == 200 and r.json()["data"] == {"groups": 1}
            (kept,) = service.evaluators[0].alerts()
            assert kept is pending and kept.active_at == 1000.0  # the unchanged rule kept its state
            assert [r.name for r in service.evaluators[0].group.rules] == ["Always", "r"]
            rules.write_text(
                "groups:\n  - name: g\n    rules:\n      - alert: Broken\n        expr: sum(\n"
            )
            r = await client.post("/-/reload")
            assert r.status_code == 400 and "old ones keep running" in r.json()["error"]
            assert "rules.yaml:4" in r.json()["error"]
            assert [r.name for r in service.evaluators[0].group.rules] == ["Always", "r"]
    finally:
        await service.stop()
