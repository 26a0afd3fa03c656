"""The load engine against a real nginx: counts, open-loop rate accuracy, workers, stages."""

from __future__ import annotations

import pytest

from gyroscope.bench import LoadConfig, run_load


async def test_closed_model_counts_every_response_and_status(nginx_url: str) -> None:
    result = await run_load(LoadConfig(url=nginx_url + "/", connections=8, requests=3000))
    c = result.data.counters
    assert c["requests"] == 3000 == c["ok"]
    assert dict(result.data.status) == {200: 3000}
    assert c["bytes_in"] > 3000 * 100
    assert result.data.hists["latency"].get_total_count() == 3000
    assert sum(i.requests for i in result.data.series) == 3000
    assert result.metric("p50") > 0


async def test_bad_status_counts_as_an_error_unless_expected(nginx_url: str) -> None:
    result = await run_load(LoadConfig(url=nginx_url + "/missing", connections=4, requests=200))
    assert result.data.errors == {"bad_status": 200}
    assert result.metric("error_rate") == 1.0
    expected = await run_load(
        LoadConfig(url=nginx_url + "/missing", connections=4, requests=200, expect=[404])
    )
    assert expected.data.counters["errors"] == 0


async def test_open_model_holds_the_rate(nginx_url: str) -> None:
    result = await run_load(LoadConfig(url=nginx_url + "/", rate=400, duration=2.5))
    sent = result.data.counters["requests"]
    assert sent == pytest.approx(1000, abs=5)  # the schedule, not the server, sets the count
    # Whole seconds carry the rate too (bounds leave room for a busy machine delaying a tick).
    full_seconds = [i.requests for i in result.data.series if 0 < i.t < 2]
    assert full_seconds and all(340 <= n <= 460 for n in full_seconds), full_seconds
    assert result.data.hists["lag"].get_total_count() == sent


async def test_poisson_rate_and_worker_split(nginx_url: str) -> None:
    result = await run_load(
        LoadConfig(url=nginx_url + "/", rate=300, duration=2, poisson=True, seed=7, workers=2)
    )
    assert result.data.workers == 2
    assert result.data.counters["requests"] == pytest.approx(600, rel=0.15)
    assert result.data.errors == {}


async def test_count_is_shared_exactly_across_workers(nginx_url: str) -> None:
    result = await run_load(
        LoadConfig(url=nginx_url + "/", connections=6, requests=1001, workers=2)
    )
    assert result.data.counters["requests"] == 1001


async def test_stages_ramp_and_warmup_is_excluded(nginx_url: str) -> None:
    cfg = LoadConfig(url=nginx_url + "/", stages=["1s:100rps", "1s:100-300rps"], warmup=0.5)
    result = await run_load(cfg)
    # 100 in the first second, 200 (the ramp's mean) in the second; warm-up's 50 not counted.
    assert result.data.counters["requests"] == pytest.approx(300, abs=6)
    assert result.config["model"] == "open"


async def test_closed_user_stages_change_concurrency(nginx_url: str) -> None:
    cfg = LoadConfig(url=nginx_url + "/", stages=["1s:2vu", "1s:6vu"], think_time=0.05)
    result = await run_load(cfg)
    # ~20 requests/s per user with a 50 ms think time: about 40 then about 120 per second.
    first, second = (sum(i.requests for i in result.data.series if i.t == t) for t in (0, 1))
    assert first < second
    assert 2.0 < second / max(first, 1) < 4.5


async def test_tls_target(tmp_path) -> None:
    from gyroscope.bench import run_load as run
    from tests.bench.servers import nginx

    with nginx(tmp_path, tls=True) as (url, _proc):
        # A self-signed certificate fails verification (counted as tls errors) unless told not to.
        strict = await run(LoadConfig(url=url + "/", connections=2, requests=20, timeout=5))
        assert set(strict.data.errors) == {"tls"}
        ok = await run(LoadConfig(url=url + "/", connections=2, requests=200, insecure=True))
    assert ok.data.counters["ok"] == 200
    assert dict(ok.data.status) == {200: 200}
