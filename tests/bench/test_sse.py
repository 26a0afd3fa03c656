"""The LLM stream decoder on its own: token counts and the token clock for every way the bytes
of a stream can arrive (one event per chunk, several, split anywhere, CRLF, usage, errors).

The decoder takes its fast path only for a chunk that is exactly one whole single-line event; each
case here is also checked against the same bytes fed one byte at a time (the slow path) and all in
one piece, so the two paths must agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httptools
import pytest

from gyroscope.bench import _llm
from gyroscope.bench._conn import StreamConn
from gyroscope.bench._llm import StreamState
from gyroscope.bench._recorder import Recorder

HEAD = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m"'


def chat(text: str | None, *, finish: str | None = None, usage: str = ',"usage":null') -> bytes:
    """An event in the demo server's (and vLLM's, OpenAI's) compact chunk format."""
    delta = "{}" if text is None else '{"content":' + json.dumps(text) + "}"
    reason = "null" if finish is None else json.dumps(finish)
    choice = f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{reason}}}'
    return f'data: {HEAD},"choices":[{choice}]{usage}}}\n\n'.encode()


ROLE = f'data: {HEAD},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}}}}]}}\n\n'
USAGE = f'data: {HEAD},"choices":[],"usage":{{"prompt_tokens":4,"completion_tokens":%d}}}}\n\n'
DONE = b"data: [DONE]\n\n"


def answer(tokens: int, *, usage: int | None = None) -> list[bytes]:
    events = [ROLE.encode()] + [chat(f" w{i}") for i in range(tokens)]
    events.append(chat(None, finish="length"))
    if usage is not None:
        events.append((USAGE % usage).encode())
    return [*events, DONE]


class _Engine:
    def __init__(self) -> None:
        self.rec = Recorder()


class Clock:
    """Stands in for ``time.monotonic`` in the decoder: each chunk arrives 1 ms after the last."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(_llm, "monotonic", c)
    return c


def feed(chunks: list[bytes], start: float = 100.0) -> tuple[StreamState, Recorder]:
    engine = _Engine()
    state = StreamState(engine, {})  # type: ignore[arg-type]
    state.reset(start)
    for chunk in chunks:
        state.on_body(chunk)
    return state, engine.rec


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def itl(rec: Recorder) -> list[int]:
    return list(rec.buffers["itl"])


def test_one_event_per_chunk_times_every_token(clock: Clock) -> None:
    state, rec = feed(answer(5))
    assert state.tokens == rec.tokens == 5
    # Chunk 1 is the role event; tokens arrive with chunks 2..6, 1 ms apart.
    assert list(rec.buffers["ttft"]) == [2000]
    assert itl(rec) == [1000] * 4
    assert state.max_gap == pytest.approx(0.001)
    assert state.last - state.first == pytest.approx(0.004)
    assert state.usage == -1 and state.buf == b""


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, 151, 1000, 100_000])
def test_any_split_of_the_stream_gives_the_same_count(clock: Clock, size: int) -> None:
    data = b"".join(answer(9, usage=9))
    state, rec = feed(split_every(data, size))
    assert state.tokens == rec.tokens == 9
    assert state.usage == 9
    assert state.buf == b""
    # Every token has a time: one TTFT, and one gap for each later token (zero gaps for tokens
    # that arrived in the same chunk are recorded as 1 us).
    assert len(rec.buffers["ttft"]) == 1 and len(itl(rec)) == 8


def test_several_events_in_one_chunk_arrived_together(clock: Clock) -> None:
    events = answer(6)
    state, rec = feed([b"".join(events[:3]), b"".join(events[3:5]), b"".join(events[5:])])
    assert state.tokens == 6
    # Chunk 1: role + 2 tokens (TTFT, then a zero gap); chunk 2: 2 tokens; chunk 3: 2 tokens.
    assert list(rec.buffers["ttft"]) == [1000]
    assert itl(rec) == [1, 1000, 1, 1000, 1]


def test_an_event_split_inside_its_end_is_counted_once(clock: Clock) -> None:
    event = chat(" a")
    state, rec = feed([event[:-1], event[-1:], chat(" b")[:-2], b"\n\n"])
    assert state.tokens == 2
    assert itl(rec) == [2000]  # the second token is complete only with the fourth chunk


def test_crlf_line_ends(clock: Clock) -> None:
    data = b"".join(answer(4, usage=4)).replace(b"\n", b"\r\n")
    for size in (1, 5, len(data)):
        state, _rec = feed(split_every(data, size))
        assert (state.tokens, state.usage, state.buf) == (4, 4, b"")


def test_usage_is_the_servers_count(clock: Clock) -> None:
    # Two tokens in one event (a server that batches): the usage chunk has the real count.
    events = [chat(" a b"), chat(" c"), (USAGE % 3).encode(), DONE]
    state, rec = feed(events)
    assert (state.tokens, state.usage) == (2, 3)
    state.finish(state.last, ok=True)
    assert rec.tokens == 3  # finish adds what the events undercounted
    assert list(rec.buffers["tpot"]) == [500]  # (last - first) / (3 - 1)


def test_usage_in_every_event_is_read(clock: Clock) -> None:
    # vLLM with continuous_usage_stats: usage rides on each token event.
    usage = ',"usage":{"prompt_tokens":1,"completion_tokens":%d}'
    events = [chat(f" t{i}", usage=usage % (i + 1)) for i in range(3)]
    state, _rec = feed(events)
    assert (state.tokens, state.usage) == (3, 3)


def test_done_role_finish_and_comments_are_not_tokens(clock: Clock) -> None:
    state, rec = feed([ROLE.encode(), b": keep-alive\n\n", chat(None, finish="stop"), DONE])
    assert state.tokens == rec.tokens == 0
    assert list(rec.buffers["ttft"]) == []


def test_an_error_event_mid_stream_is_not_a_token(clock: Clock) -> None:
    error = b'data: {"error":{"message":"overloaded","type":"server_error","code":503}}\n\n'
    named = b'event: error\ndata: {"error":{"message":"x"}}\n\n'
    state, _rec = feed([chat(" a"), error, named, b"data: not json\n\n", chat(" b")])
    assert state.tokens == 2


def test_json_with_spaces_and_multi_line_events(clock: Clock) -> None:
    spaced = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
    empty = b'data: {"choices": [{"index": 0, "delta": {"content": ""}}]}\n\n'
    multi = b"id: 7\nevent: message\n" + chat(" x")
    state, _rec = feed([spaced, empty, multi, b'data: {"choices":[{"text": "y"}]}\n\n'])
    assert state.tokens == 3


def test_completions_text_events(clock: Clock) -> None:
    def text(t: str) -> bytes:
        return (
            b'data: {"id":"cmpl-1","choices":[{"index":0,"text":%s}]}\n\n' % json.dumps(t).encode()
        )

    state, rec = feed([text(" a"), text(""), text(" b"), text(' "quoted"'), DONE])
    assert state.tokens == 3
    assert itl(rec) == [2000, 1000]


def test_content_that_looks_like_a_key_is_one_token(clock: Clock) -> None:
    # Inside a JSON string every quote is escaped, so no text can fake a key or an event end.
    tricky = ' "content":"" "usage":{ \n\n data: [DONE]'
    state, _rec = feed([chat(tricky), chat(' "text":""')])
    assert state.tokens == 2 and state.usage == -1


def test_nothing_is_recorded_during_warm_up(clock: Clock) -> None:
    engine = _Engine()
    engine.rec.recording = False
    state = StreamState(engine, {})  # type: ignore[arg-type]
    state.reset(100.0)
    for event in answer(3):
        state.on_body(event)
    assert state.tokens == 3  # the request's own figures still run (for its SLO check) ...
    assert (
        engine.rec.tokens == 0 and itl(engine.rec) == [] and list(engine.rec.buffers["ttft"]) == []
    )


def test_reset_starts_a_new_request(clock: Clock) -> None:
    engine = _Engine()
    state = StreamState(engine, {"ttft": 0.5})  # type: ignore[arg-type]
    state.reset(clock.now)
    state.on_body(chat(" a")[:20])  # a request cut off mid-event ...
    state.reset(clock.now)
    for event in answer(2):  # ... leaves nothing behind for the next one
        state.on_body(event)
    assert state.tokens == 2
    state.finish(clock.now, ok=True)
    assert engine.rec.good == 1


class _Owner:
    def __init__(self) -> None:
        self.responses: list[int] = []

    def on_ready(self, conn: Any) -> None:
        pass

    def on_response(self, conn: Any, status: int, keep_alive: bool) -> None:
        self.responses.append(status)

    def on_failure(self, conn: Any, kind: str) -> None:
        raise AssertionError(kind)


def http_chunks(events: list[bytes]) -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    for event in events:
        yield b"%x\r\n%s\r\n" % (len(event), event)
    yield b"0\r\n\r\n"


@pytest.mark.parametrize("size", [1, 9, 64, 4096])
def test_through_the_http_parser_reads_split_anywhere(clock: Clock, size: int) -> None:
    engine = _Engine()
    owner = _Owner()
    state = StreamState(engine, {})  # type: ignore[arg-type]
    conn = StreamConn(owner, state)
    conn.busy = True
    state.reset(clock.now)
    wire = b"".join(http_chunks(answer(20, usage=20)))
    for part in split_every(wire, size):
        conn.data_received(part)
    assert owner.responses == [200]
    assert (state.tokens, state.usage, state.buf) == (20, 20, b"")
    assert engine.rec.tokens == 20 and conn.nbytes == len(wire)


def test_garbage_from_the_server_is_a_protocol_error() -> None:
    engine = _Engine()
    kinds: list[str] = []

    class Owner(_Owner):
        def on_failure(self, conn: Any, kind: str) -> None:
            kinds.append(kind)

    state = StreamState(engine, {})  # type: ignore[arg-type]
    conn = StreamConn(Owner(), state)
    conn.busy = True
    conn.data_received(next(http_chunks([])))
    conn.data_received(b"zz\r\nnot a chunk size\r\n")
    assert kinds == ["protocol"]
    assert isinstance(conn.parser, httptools.HttpResponseParser)
