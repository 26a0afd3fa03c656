"""Bad targets and bad input: counted error kinds or one clear line, never a hang or a traceback."""

from __future__ import annotations

import subprocess
import time

import pytest

from gyroscope.bench import LoadConfig, run_load
from gyroscope.errors import BenchError
from gyroscope.testing import free_port
from tests.bench.servers import misbehaving


async def test_refused_connections_are_counted_and_the_run_ends() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    started = time.monotonic()
    result = await run_load(LoadConfig(url=url, connections=4, duration=1.0))
    assert time.monotonic() - started < 4.0
    assert set(result.data.errors) == {"refused"}
    assert result.data.errors["refused"] >= 4
    assert result.data.counters["ok"] == 0
    # Retries pause between attempts: a dead target must not spin a core.
    assert result.data.errors["refused"] < 4 * 1.0 / 0.01 * 1.5


async def test_refused_in_open_model_counts_each_due_request() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    result = await run_load(LoadConfig(url=url, rate=50, duration=1.0))
    assert set(result.data.errors) == {"refused"}
    assert result.data.errors["refused"] == pytest.approx(50, abs=5)


@pytest.mark.parametrize(("mode", "kind"), [("garbage", "protocol"), ("close", "reset")])
async def test_misbehaving_server_errors_are_classified(mode: str, kind: str) -> None:
    with misbehaving(mode) as url:
        result = await run_load(LoadConfig(url=url, connections=2, requests=50, timeout=2))
    assert set(result.data.errors) == {kind}
    assert result.data.errors[kind] == 50


async def test_silent_server_times_out() -> None:
    with misbehaving("silent") as url:
        started = time.monotonic()
        result = await run_load(LoadConfig(url=url, connections=3, duration=1.0, timeout=0.3))
    assert time.monotonic() - started < 1.0 + 0.3 + 3.0
    assert set(result.data.errors) == {"timeout"}
    assert result.data.errors["timeout"] >= 3


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "bad URL"),
        ("ftp://127.0.0.1/", "bad URL"),
        ("http://127.0.0.1:99999/", "bad URL"),
    ],
)
async def test_bad_urls_are_one_error(url: str, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        await run_load(LoadConfig(url=url, connections=1, duration=1))


def test_impossible_rate_is_rejected() -> None:
    with pytest.raises(BenchError, match="impossible rate"):
        LoadConfig(url="http://127.0.0.1/", rate=0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "http://127.0.0.1:1/", "--rate", "-5"], "rate"),
        (["run", "nope://x"], "bad URL"),
        (["run", "http://127.0.0.1:1/", "--stage", "fast:100rps"], "bad stage"),
        (["run", "http://127.0.0.1:1/", "--threshold", "p99 about 5"], "bad threshold"),
        (["compare", "/nonexistent/a.json", "/nonexistent/b.json"], "cannot read"),
        (["run", "http://user:pw@127.0.0.1:1/"], "no credentials in the URL"),
        (["run", "http://127.0.0.1:1/", "-d", "1s", "--out", "/nonexistent/r.json"], "does not"),
    ],
)
def test_cli_bad_input_is_one_line(
    gyro_cmd: list[str], clean_env: dict[str, str], args: list[str], message: str
) -> None:
    proc = subprocess.run(
        [*gyro_cmd, "bench", *args], capture_output=True, text=True, timeout=60, env=clean_env
    )
    assert proc.returncode == 2  # bad input, as the README says (1 is a failed threshold)
    assert "Traceback" not in proc.stderr
    assert "pw" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Usage:", "Try "))]  # click's usage
    assert len(lines) == 1 and message in lines[0], proc.stderr


async def test_unresolvable_host_is_one_error_before_any_traffic() -> None:
    from gyroscope.errors import TargetError

    # A 64-character label is invalid: the resolver rejects it locally, no DNS query leaves.
    url = "http://" + "a" * 64 + ".invalid/"
    with pytest.raises(TargetError, match="cannot resolve host"):
        await run_load(LoadConfig(url=url, connections=1, duration=1))
