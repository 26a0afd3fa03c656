"""LLM mode: streamed OpenAI-compatible requests, measured token by token.

For each request: time to first token (TTFT, from the intended send time, so queueing in an open
run counts), inter-token latency (ITL: every gap between content events), time per output token
(TPOT: (last token - first token) / (tokens - 1)), end-to-end latency, and the output tokens (the
server's ``usage.completion_tokens`` when it sends one, else the content events counted). Goodput
counts requests that met every per-request SLO: ``ttft``, ``tpot``, ``e2e`` and ``itl`` (the
request's *largest* gap, so a stall mid-answer breaks it).

SSE decoding is on the hot path (one event per token). Compact JSON, as vLLM, TGI and OpenAI send
it, is recognised with byte searches; anything else falls back to ``json.loads``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from time import monotonic
from typing import Any

from pydantic import Field, field_validator

from gyroscope.bench._engine import Engine, WorkerPlan
from gyroscope.bench._load import LoadConfig, _duration, build_plan, run_load
from gyroscope.bench._result import Result
from gyroscope.bench._target import RequestSpec, parse_target
from gyroscope.bench._units import parse_rate, parse_threshold
from gyroscope.core import StrictModel
from gyroscope.errors import BenchError, ScenarioError

__all__ = ["LlmConfig", "StreamState", "llm_plan", "make_tracker", "run_llm"]

_WORDS = ("the", "model", "server", "answers", "tokens", "quickly", "while", "gateway", "load")


class LlmConfig(StrictModel):
    """An LLM benchmark against an OpenAI-compatible server.

    >>> LlmConfig(url="http://127.0.0.1:8001", concurrency=8, duration="5s").endpoint
    'chat'
    """

    url: str
    model: str = "demo-model"
    endpoint: str = Field(default="chat", pattern="^(chat|completions)$")
    prompts: Path | None = None
    input_tokens: int = Field(default=128, ge=1, le=1_000_000)
    output_tokens: int = Field(default=64, ge=1, le=1_000_000)
    spread: float = Field(default=0.0, ge=0.0, le=1.0)
    concurrency: int | None = Field(default=None, ge=1, le=100_000)
    rate: float | None = None
    poisson: bool = False
    duration: float | None = None
    requests: int | None = Field(default=None, ge=1)
    warmup: float = 0.0
    timeout: float = 120.0
    workers: int = Field(default=1, ge=1, le=256)
    slo: list[str] = Field(default_factory=list)
    api_key: str | None = None
    seed: int | None = 0
    insecure: bool = False

    _d = field_validator("duration", "warmup", "timeout", mode="before")(_duration)

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        return None if value is None else parse_rate(value)

    @field_validator("slo")
    @classmethod
    def _slo(cls, value: list[str]) -> list[str]:
        for text in value:
            t = parse_threshold(text)
            if t.metric not in ("ttft", "itl", "tpot", "e2e") or t.op not in ("<", "<="):
                raise BenchError(
                    f"bad SLO {text!r}: expected ttft|itl|tpot|e2e < TIME, e.g. ttft<500ms"
                )
        return value

    def load_config(self) -> LoadConfig:
        return LoadConfig(
            url=self.url,
            connections=self.concurrency if self.rate is None else (self.concurrency or 1000),
            rate=self.rate,
            poisson=self.poisson,
            duration=self.duration,
            requests=self.requests,
            warmup=self.warmup,
            timeout=self.timeout,
            workers=self.workers,
            seed=self.seed,
            insecure=self.insecure,
        )


def _synthetic(cfg: LlmConfig, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for _ in range(200 if cfg.spread else 1):
        n_in = max(1, round(cfg.input_tokens * (1 + rng.uniform(-cfg.spread, cfg.spread))))
        n_out = max(1, round(cfg.output_tokens * (1 + rng.uniform(-cfg.spread, cfg.spread))))
        # About one token per short word: the same rule of thumb servers' tokenizers land near.
        text = " ".join(rng.choice(_WORDS) for _ in range(n_in))
        out.append({"prompt": text, "max_tokens": n_out})
    return out


def _read_prompts(path: Path, default_max: int) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror}", path=path) from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"not JSON: {exc.msg}", path=path, line=number) from None
        if not isinstance(item, dict) or not ("prompt" in item or "messages" in item):
            raise ScenarioError(
                "expected an object with 'prompt' or 'messages'",
                path=path,
                line=number,
                key="prompt",
            )
        if "max_tokens" in item and not isinstance(item["max_tokens"], int):
            raise ScenarioError("expected an integer", path=path, line=number, key="max_tokens")
        item.setdefault("max_tokens", default_max)
        out.append(item)
    if not out:
        raise ScenarioError("no prompts in the file", path=path)
    return out


def llm_requests(cfg: LlmConfig) -> tuple[RequestSpec, ...]:
    target = parse_target(cfg.url, insecure=cfg.insecure)
    base = target.path.rstrip("/")
    base = base.removesuffix("/v1/chat/completions").removesuffix("/v1/completions")
    path = base + ("/v1/chat/completions" if cfg.endpoint == "chat" else "/v1/completions")
    items = (
        _read_prompts(cfg.prompts, cfg.output_tokens)
        if cfg.prompts
        else _synthetic(cfg, random.Random(cfg.seed))
    )
    headers = [("Content-Type", "application/json"), ("Accept", "text/event-stream")]
    if cfg.api_key:
        headers.append(("Authorization", f"Bearer {cfg.api_key}"))
    specs = []
    for item in items:
        body: dict[str, Any] = {
            "model": cfg.model,
            "stream": True,
            "max_tokens": item["max_tokens"],
            "stream_options": {"include_usage": True},
        }
        if cfg.endpoint == "chat":
            body["messages"] = item.get("messages") or [{"role": "user", "content": item["prompt"]}]
        else:
            body["prompt"] = item.get("prompt") or " ".join(
                str(m.get("content", "")) for m in item["messages"]
            )
        specs.append(
            RequestSpec(
                method="POST",
                path=path,
                headers=tuple(headers),
                body=json.dumps(body).encode(),
                expect=frozenset({200}),
                stream=True,
            )
        )
    return tuple(specs)


def llm_plan(cfg: LlmConfig) -> WorkerPlan:
    import dataclasses

    plan = build_plan(cfg.load_config())
    slo = {}
    for text in cfg.slo:
        t = parse_threshold(text)
        slo[t.metric] = t.value / 1000.0  # seconds
    return dataclasses.replace(plan, requests=llm_requests(cfg), stream=True, llm={"slo": slo})


class StreamState:
    """The SSE decoder and token clock of one streaming connection, reset for each request.

    The HTTP parser calls ``on_body`` with each body chunk as it arrives; the chunk's arrival
    time is the time of every token in it. Servers write one event per token, so the common
    chunk is exactly one whole event: it is recognised with a few byte searches and no copies.
    Anything else (several events, an event split across chunks, CRLF line ends, usage, JSON
    with spaces) takes ``_events``, which splits, buffers and decodes only what it must.
    """

    __slots__ = (
        "buf",
        "first",
        "itl",
        "last",
        "max_gap",
        "rec",
        "slo",
        "start",
        "tokens",
        "usage",
    )

    def __init__(self, engine: Engine, slo: dict[str, float]) -> None:
        self.rec = engine.rec
        self.itl = engine.rec.buffers["itl"]
        self.slo = slo
        self.reset(0.0)

    def reset(self, start: float) -> None:
        """Start a new request whose intended send time is ``start``."""
        self.start = start
        self.buf = b""
        self.first = 0.0
        self.last = 0.0
        self.max_gap = 0.0
        self.tokens = 0
        self.usage = -1

    def on_body(self, body: bytes) -> None:
        now = monotonic()
        if self.buf:
            body = self.buf + body
            self.buf = b""
        # The common chunk: one whole single-line event (its only newlines are the two that end
        # it) holding one non-empty text in compact JSON and no usage after it (servers put usage
        # last). One-byte and backward searches: they are the cheapest.
        if body.find(b"\n") != len(body) - 2 or body[-1] != 10:  # 10: b"\n"
            self._events(body, now)
            return
        at = body.rfind(b'"content":"') + 11
        if at == 10:
            at = body.rfind(b'"text":"') + 8
            if at == 7:
                self._events(body, now)
                return
        if body[at] == 34 or body.find(b'"usage":{', at) >= 0:  # 34: an empty text, b'"'
            self._events(body, now)
            return
        if self.tokens and self.rec.recording:
            # One token after the first: kept free of further calls.
            gap = now - self.last
            if gap > self.max_gap:  # noqa: PLR1730 - no builtin call on the per-token path
                self.max_gap = gap
            self.itl.append(int(gap * 1e6))
            self.tokens += 1
            self.rec.tokens += 1
            self.last = now
        else:
            self._tokens(1, now)

    def _events(self, buf: bytes, now: float) -> None:
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        events = buf.split(b"\n\n")
        self.buf = events.pop()
        count = 0
        for event in events:
            if b'"content":"' in event:
                count += b'"content":""' not in event
            elif b'"text":"' in event:
                count += b'"text":""' not in event
            elif b'"content"' in event or b'"text"' in event:
                count += self._slow(event)
            if b'"usage":{' in event:
                self._usage(event)
        if count:
            self._tokens(count, now)

    def _tokens(self, count: int, now: float) -> None:
        recording = self.rec.recording
        if self.tokens == 0:
            self.first = now
            if recording:
                self.rec.buffers["ttft"].append(int((now - self.start) * 1e6))
        else:
            gap = now - self.last
            self.max_gap = max(self.max_gap, gap)
            if recording:
                self.itl.append(int(gap * 1e6))
        if recording and count > 1:
            # Several events in one chunk: they arrived together, gap zero (recorded as 1 us).
            self.itl.extend([1] * (count - 1))
        self.tokens += count
        self.last = now
        if recording:
            # Counted on arrival: a long answer cut off by the end of the run still counts.
            self.rec.tokens += count

    @staticmethod
    def _slow(event: bytes) -> int:
        """1 if the event (JSON not in the compact form) carries text, else 0."""
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    doc = json.loads(line[5:])
                except ValueError:
                    return 0
                if not isinstance(doc, dict):
                    return 0
                for choice in doc.get("choices") or []:
                    if not isinstance(choice, dict):
                        continue
                    delta = choice.get("delta") or {}
                    if (isinstance(delta, dict) and delta.get("content")) or choice.get("text"):
                        return 1
        return 0

    def _usage(self, event: bytes) -> None:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    usage = json.loads(line[5:]).get("usage") or {}
                    self.usage = int(usage.get("completion_tokens", -1))
                except (ValueError, TypeError, AttributeError):
                    pass

    def finish(self, now: float, ok: bool) -> None:
        rec = self.rec
        tokens = self.usage if self.usage >= 0 else self.tokens
        if not ok or self.tokens == 0:
            return
        # The server's own count wins where it differs (several tokens in one event).
        rec.tokens += tokens - self.tokens
        tpot = (self.last - self.first) / (tokens - 1) if tokens > 1 else 0.0
        if tokens > 1:
            rec.buffers["tpot"].append(int(tpot * 1e6))
        slo = self.slo
        figures = {
            "ttft": self.first - self.start,
            "tpot": tpot,
            "e2e": now - self.start,
            "itl": self.max_gap,
        }
        if all(figures[name] <= limit for name, limit in slo.items()):
            rec.good += 1


def make_tracker(llm: dict[str, Any]) -> Any:
    """What the engine calls to make each streaming connection's ``StreamState``."""
    slo = dict(llm.get("slo", {}))

    def track(engine: Engine) -> StreamState:
        return StreamState(engine, slo)

    return track


async def run_llm(cfg: LlmConfig, **kwargs: Any) -> Result:
    """Run an LLM benchmark; returns a ``Result`` of kind ``llm``.

    >>> # result = await run_llm(LlmConfig(url="http://127.0.0.1:8001", concurrency=8, duration=5))
    """
    load = cfg.load_config()
    result = await run_load(load, kind="llm", plan=llm_plan(cfg), **kwargs)
    result.config["llm"] = cfg.model_dump(mode="json", exclude={"api_key"})
    return result
