"""Continuous batching: slots, the queue, the cost model, and slots freed by leaving clients."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest

from gyroscope.demo import Timing

from .conftest import StartServer, chat, sse_events


async def poll(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_cost_model_saturates_past_the_knee() -> None:
    timing = Timing(step_ms=2.0, step_alpha=0.02, prefill_ms_per_token=0.02)
    rates = [timing.tokens_per_second(n) for n in (1, 2, 8, 32, 64)]
    assert rates == sorted(rates)  # more sequences, more tokens/s overall...
    gains = [b / a for a, b in itertools.pairwise(rates)]
    assert gains[-1] < gains[0]  # ...but each doubling gains less
    assert timing.step_seconds(8, 0) > timing.step_seconds(1, 0)  # every step slows
    assert timing.step_seconds(1, 1000) > timing.step_seconds(1, 10)  # long prompts stall it


async def test_latency_rises_once_requests_exceed_the_slots(start_server: StartServer) -> None:
    server = await start_server(slots=2, step_ms=25, step_alpha=0.0, prefill_ms_per_token=0.0)
    most_waiting = 0

    async def timed(client: httpx.AsyncClient) -> tuple[float, float]:
        start = time.monotonic()
        first = 0.0
        request = chat(max_tokens=20, stream=True)
        async with client.stream("POST", "/v1/chat/completions", json=request) as response:
            async for line in response.aiter_lines():
                if '"content":" ' in line and not first:  # a token, not the role's empty one
                    first = time.monotonic() - start
        return first, time.monotonic() - start

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        early = [asyncio.ensure_future(timed(client)) for _ in range(2)]
        await poll(lambda: server.engine.running == 2)
        late = [asyncio.ensure_future(timed(client)) for _ in range(4)]
        while not all(t.done() for t in late):
            most_waiting = max(most_waiting, server.engine.waiting)
            await asyncio.sleep(0.005)
        early_times = [await t for t in early]
        late_times = [await t for t in late]
    assert most_waiting >= 1  # requests beyond the two slots queued
    # Queued requests wait for a whole answer (20 steps) before their first token.
    assert min(t[0] for t in late_times) > 2 * max(t[0] for t in early_times)
    assert min(t[1] for t in late_times) > 1.5 * max(t[1] for t in early_times)


async def test_client_leaving_frees_its_slot_at_once(start_server: StartServer) -> None:
    server = await start_server(slots=1, step_ms=20)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        long = chat(max_tokens=250, stream=True)  # ~5 s if it kept its slot
        leaver = httpx.AsyncClient(base_url=server.url, timeout=30)
        stream = leaver.stream("POST", "/v1/chat/completions", json=long)
        response = await stream.__aenter__()
        await response.aiter_lines().__anext__()
        assert server.engine.running == 1
        waiter = asyncio.ensure_future(
            client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
        )
        await poll(lambda: server.engine.waiting == 1)
        await stream.__aexit__(None, None, None)
        await leaver.aclose()
        answer = await asyncio.wait_for(waiter, 3.0)  # far sooner than the 5 s answer would take
        assert answer.status_code == 200
        assert server.engine.running == 0 and server.engine.waiting == 0
        metrics = (await client.get("/metrics")).text
        assert "gyro_demo_requests_aborted_total 1.0" in metrics


async def test_full_queue_refuses_with_429(start_server: StartServer) -> None:
    server = await start_server(slots=1, max_queue=1, step_ms=20)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        body = {"prompt": "x", "max_tokens": 50}
        running = asyncio.ensure_future(client.post("/v1/completions", json=body))
        await poll(lambda: server.engine.running == 1)
        queued = asyncio.ensure_future(client.post("/v1/completions", json=body))
        await poll(lambda: server.engine.waiting == 1)
        refused = await client.post("/v1/completions", json=body)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "busy" in refused.json()["error"]["message"]
        assert (await running).status_code == 200 and (await queued).status_code == 200


async def test_streams_interleave_in_one_batch(start_server: StartServer) -> None:
    server = await start_server(slots=8, step_ms=5)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

        async def one() -> list[object]:
            request = chat(max_tokens=10, stream=True)
            async with client.stream("POST", "/v1/chat/completions", json=request) as response:
                return await sse_events(response)

        results = await asyncio.gather(*(one() for _ in range(8)))
    assert all(r[-1] == "[DONE]" for r in results)
    # Eight 10-token answers in one batch take about 10 steps, not 80: the loop stepped them together.
    assert server.engine.steps < 40


async def test_long_prompts_delay_the_first_token(start_server: StartServer) -> None:
    server = await start_server(slots=4, step_ms=5, prefill_ms_per_token=1.0)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

        async def elapsed(prompt: str) -> float:
            start = time.monotonic()
            answer = await client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 1})
            assert answer.status_code == 200
            return time.monotonic() - start

        short = await elapsed("hi")
        long = await elapsed("x" * 1600)  # 400 tokens at 1 ms each to prefill
    assert long >= 0.4
    assert long > short


async def test_steps_slow_down_as_the_batch_grows(start_server: StartServer) -> None:
    server = await start_server(slots=8, step_ms=20, step_alpha=1.0, prefill_ms_per_token=0.0)
    body = {"prompt": "x", "max_tokens": 10}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        start = time.monotonic()
        await client.post("/v1/completions", json=body)
        alone = time.monotonic() - start
        start = time.monotonic()
        answers = await asyncio.gather(
            *(client.post("/v1/completions", json=body) for _ in range(4))
        )
        together = time.monotonic() - start
    assert all(a.status_code == 200 for a in answers)
    # Four sequences make each step 4x longer (alpha 1.0): the batch takes far longer than one.
    assert together > 2 * alone


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    from gyroscope.demo._metrics import Hist

    hist = Hist((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        hist.observe(value)
    assert hist.buckets() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert hist.total == pytest.approx(8.65)


async def test_engine_cancels_waiting_and_running_sequences() -> None:
    from gyroscope.demo._engine import Engine, EngineStopped, Sequence

    engine = Engine(
        slots=1, max_queue=4, timing=Timing(step_ms=5, step_alpha=0, prefill_ms_per_token=0)
    )
    engine.start()
    try:
        first, second, third = (Sequence(1, 3, 0.0) for _ in range(3))
        assert all(engine.submit(s) for s in (first, second, third))
        await poll(lambda: engine.running == 1)
        engine.cancel(second)  # still queued: leaves the queue at once
        assert engine.waiting == 1
        await asyncio.wait_for(engine.wait(first, 3), 10)
        await asyncio.wait_for(engine.wait(third, 3), 10)
        assert first.done and third.done and not second.done and second.generated == 0
        assert (engine.running, engine.waiting) == (0, 0)
        hung = Sequence(1, 1000, 0.0)
        engine.submit(hung)
        await poll(lambda: engine.running == 1)
        engine.cancel(hung)  # running: its slot is free before the next step
        assert engine.running == 0
    finally:
        await engine.stop()
    late = Sequence(1, 2, 0.0)
    with pytest.raises(EngineStopped):
        await engine.wait(late, 1)
