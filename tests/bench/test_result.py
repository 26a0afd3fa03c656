"""Result files round-trip exactly; HTML reports escape what they show and carry a CSP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gyroscope.bench import CSP, LoadConfig, Result, RunData, render_html, run_load
from gyroscope.bench._recorder import Interval


async def test_result_json_round_trip(nginx_url: str, tmp_path: Path) -> None:
    result = await run_load(LoadConfig(url=nginx_url + "/", rate=200, duration=1.2))
    path = tmp_path / "r.json"
    result.save(path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "gyroscope.bench.result/1"
    assert {"summary", "status_codes", "errors", "data", "config", "warnings"} <= set(doc)
    back = Result.load(path)
    assert back.summary() == result.summary()
    for name in ("latency", "lag"):
        a, b = result.data.hists[name], back.data.hists[name]
        assert a.get_total_count() == b.get_total_count()
        assert a.get_value_at_percentile(99.9) == b.get_value_at_percentile(99.9)
    assert [i.requests for i in back.data.series] == [i.requests for i in result.data.series]


def test_merge_adds_workers_exactly() -> None:
    parts = []
    for values in ([1000, 2000], [3000]):
        data = RunData()
        for v in values:
            data.hists["latency"].record_value(v)
        data.counters.update(requests=len(values))
        data.series = [Interval(t=0, requests=len(values))]
        data.elapsed = 1.0
        parts.append(data)
    merged = RunData.merge(parts)
    assert merged.counters["requests"] == 3
    assert merged.hists["latency"].get_total_count() == 3
    assert merged.hists["latency"].get_max_value() == pytest.approx(3000, rel=0.001)
    assert [i.requests for i in merged.series] == [3]
    assert merged.workers == 2


def test_html_escapes_content_and_has_a_csp() -> None:
    data = RunData()
    data.hists["latency"].record_value(1500)
    data.counters.update(requests=1, ok=1)
    data.series = [Interval(t=0, requests=1)]
    data.series[0].hist.record_value(1500)
    data.elapsed = 1.0
    data.warnings.append("WARNING: <b>bold</b> & more")
    evil = "http://127.0.0.1/<script>alert(1)</script>"
    page = render_html(Result(kind="load", target=evil, data=data, config={"x": "</pre><img>"}))
    assert "<script>" not in page and "<img>" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert "default-src 'none'" in CSP
    assert "<svg" in page and "http://" not in page.replace(evil, "").split("<svg", 1)[0][-200:]


def test_llm_html_has_token_charts() -> None:
    data = RunData()
    for name in ("latency", "ttft", "itl"):
        data.hists[name].record_value(2000)
    data.counters.update(requests=1, ok=1, tokens=5)
    data.elapsed = 1.0
    page = render_html(Result(kind="llm", target="http://127.0.0.1:1", data=data))
    assert "Time to first token" in page and "Inter-token latency" in page


async def test_secrets_in_headers_never_reach_the_result(nginx_url: str) -> None:
    cfg = LoadConfig(
        url=nginx_url + "/",
        connections=1,
        requests=5,
        headers=["Authorization: Bearer s3cr3t-token", "X-Trace: visible"],
    )
    doc = json.dumps((await run_load(cfg)).to_json())
    assert "s3cr3t-token" not in doc
    assert "Authorization: ***" in doc and "X-Trace: visible" in doc
