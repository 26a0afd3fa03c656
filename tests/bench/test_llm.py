"""LLM mode against the demo model server: tokens, TTFT, ITL, TPOT, goodput."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gyroscope.bench import LlmConfig, run_llm
from gyroscope.errors import ScenarioError

STEP_MS = 10.0


async def test_streamed_metrics_match_the_servers_timing(demo_server) -> None:
    url = demo_server(8, STEP_MS)
    result = await run_llm(
        LlmConfig(url=url, concurrency=4, duration=2.0, input_tokens=8, output_tokens=10)
    )
    c = result.data.counters
    assert c["errors"] == 0 and c["requests"] > 10
    assert c["tokens"] == 10 * c["requests"]  # usage.completion_tokens of every answer
    # One decode step per token: gaps and time per output token are one step.
    assert result.metric("tpot_p50") == pytest.approx(STEP_MS, rel=0.35)
    assert result.metric("itl_p50") == pytest.approx(STEP_MS, rel=0.35)
    # First token after admission: at least one step, well under the whole answer.
    assert STEP_MS * 0.8 < result.metric("ttft_p50") < result.metric("p50")
    assert result.metric("p50") == pytest.approx(result.metric("ttft_p50") + 9 * STEP_MS, rel=0.2)
    assert result.metric("tokens_per_s") == pytest.approx(c["tokens"] / result.data.elapsed)
    s = result.summary()["llm"]
    assert s["itl_ms"]["count"] == 9 * c["requests"]


async def test_goodput_counts_requests_within_the_slo(demo_server) -> None:
    url = demo_server(8, STEP_MS)
    strict = await run_llm(
        LlmConfig(url=url, concurrency=2, duration=1.0, output_tokens=5, slo=["ttft<1ms"])
    )
    loose = await run_llm(
        LlmConfig(url=url, concurrency=2, duration=1.0, output_tokens=5, slo=["ttft<5s", "itl<1s"])
    )
    assert strict.metric("goodput_ratio") == 0.0
    assert loose.metric("goodput_ratio") == 1.0
    assert loose.metric("goodput") > 0


async def test_open_model_arrivals_and_errors_from_the_server(demo_server) -> None:
    url = demo_server(4, 2.0, "--fault", "error_rate=0.5", "--fault", "error_status=503")
    result = await run_llm(LlmConfig(url=url, rate=40, duration=1.5, output_tokens=3))
    c = result.data.counters
    assert c["requests"] == pytest.approx(60, abs=2)
    assert (
        result.data.status[503] > 10 and result.data.errors["bad_status"] == result.data.status[503]
    )
    assert c["tokens"] == 3 * c["ok"]


async def test_prompts_file_and_its_errors(demo_server, tmp_path: Path) -> None:
    url = demo_server(4, 2.0)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "hello", "max_tokens": 4})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "hi"}]})
        + "\n"
    )
    result = await run_llm(
        LlmConfig(url=url, concurrency=2, requests=20, prompts=prompts, output_tokens=6)
    )
    assert result.data.counters["requests"] == 20
    assert result.data.counters["tokens"] == 10 * 4 + 10 * 6
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok"}) + "\n" + '{"max_tokens": 3}\n')
    with pytest.raises(ScenarioError) as info:
        await run_llm(LlmConfig(url=url, concurrency=1, requests=1, prompts=bad))
    assert (info.value.line, info.value.key) == (2, "prompt")


def test_bad_slo_is_rejected() -> None:
    with pytest.raises(Exception, match="bad SLO"):
        LlmConfig(url="http://127.0.0.1:1", slo=["latency<5ms"])
