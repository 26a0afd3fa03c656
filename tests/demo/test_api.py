"""The OpenAI-compatible API contract, checked with a real HTTP client."""

from __future__ import annotations

import httpx
import pytest

from gyroscope.demo import DemoServer

from .conftest import StartServer, chat, sse_events


async def test_models_lists_the_served_model(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["demo-model"]


async def test_chat_completion_with_usage(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat("x" * 40, max_tokens=7))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 7  # one word per token
    assert choice["finish_reason"] == "length"
    # 40 characters at 4 per token, plus the chat template's 4 per message.
    assert body["usage"] == {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21}


async def test_text_completion_and_max_completion_tokens(client: httpx.AsyncClient) -> None:
    body = (
        await client.post("/v1/completions", json={"prompt": "abcdefgh", "max_tokens": 3})
    ).json()
    assert body["object"] == "text_completion"
    assert len(body["choices"][0]["text"].split()) == 3
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    ids = {"prompt": [1, 2, 3, 4, 5], "max_completion_tokens": 2}
    body = (await client.post("/v1/completions", json=ids)).json()
    assert body["usage"]["prompt_tokens"] == 5 and body["usage"]["completion_tokens"] == 2


async def test_answer_length_without_max_tokens_is_seeded(start_server: StartServer) -> None:
    lengths = []
    for _ in range(2):
        server = await start_server(seed=42, output_tokens_mean=8)
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            run = []
            for _ in range(5):
                body = (await client.post("/v1/chat/completions", json=chat())).json()
                assert body["choices"][0]["finish_reason"] == "stop"
                run.append(body["usage"]["completion_tokens"])
            lengths.append(run)
    assert lengths[0] == lengths[1]  # same seed, same answers
    assert len(set(lengths[0])) > 1  # drawn from a distribution, not a constant


async def test_streamed_chat_ends_with_done_and_usage(client: httpx.AsyncClient) -> None:
    request = chat(max_tokens=5, stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", "/v1/chat/completions", json=request) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    words = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([w for w in words if w]) == 5
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finish] == ["length"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert chunks[-1]["usage"]["total_tokens"] == chunks[-1]["usage"]["prompt_tokens"] + 5


async def test_streamed_completion_without_usage(client: httpx.AsyncClient) -> None:
    request = {"prompt": "hi", "max_tokens": 4, "stream": True}
    async with client.stream("POST", "/v1/completions", json=request) as response:
        events = await sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "text_completion" and "usage" not in c for c in chunks)
    texts = [c["choices"][0]["text"] for c in chunks]
    assert len([t for t in texts if t]) == 4
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
        ("/v1/chat/completions", b"[1, 2]", 400, "must be a JSON object"),
        ("/v1/chat/completions", b'{"messages": []}', 400, "messages must be a non-empty list"),
        ("/v1/chat/completions", b'{"messages": [{"content": "x"}]}', 400, "'role'"),
        ("/v1/completions", b'{"max_tokens": 2}', 400, "prompt must be"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 0}', 400, "max_tokens must be"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": "9"}', 400, "max_tokens must be"),
        ("/v1/completions", b'{"prompt": "x", "stream": "yes"}', 400, "stream must be"),
        ("/v1/completions", b'{"prompt": "x", "n": 2}', 400, "only n=1"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 99999}', 400, "context length"),
        ("/v1/completions", b'{"prompt": "x", "model": "gpt-9"}', 404, "does not exist"),
    ],
)
async def test_bad_requests_get_one_clear_message(
    client: httpx.AsyncClient, path: str, body: bytes, status: int, message: str
) -> None:
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"] and "\n" not in error["message"]
    assert error["code"] == status


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v2/nothing")
    assert missing.status_code == 404 and "no route" in missing.json()["error"]["message"]
    wrong = await client.get("/v1/completions")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert (await client.post("/health")).status_code == 405


async def test_health_and_metrics_count_requests(
    server: DemoServer, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    for _ in range(3):
        await client.post("/v1/completions", json={"prompt": "12345678", "max_tokens": 2})
    text = (await client.get("/metrics")).text
    samples = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    model = '{model_name="demo-model"}'
    assert float(samples[f"vllm:prompt_tokens_total{model}"]) == 6
    assert float(samples[f"vllm:generation_tokens_total{model}"]) == 6
    assert float(samples[f"vllm:time_to_first_token_seconds_count{model}"]) == 3
    assert float(samples[f"vllm:e2e_request_latency_seconds_count{model}"]) == 3
    assert (
        float(
            samples['vllm:request_success_total{finished_reason="length",model_name="demo-model"}']
        )
        == 3
    )
    assert float(samples[f"vllm:num_requests_running{model}"]) == 0
    assert float(samples[f"vllm:num_requests_waiting{model}"]) == 0
    assert float(samples['gyro_demo_requests_total{endpoint="/v1/completions",status="200"}']) == 3
    assert server.health().status == "ok"
