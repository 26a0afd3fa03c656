"""The OpenAI-compatible surface: request validation and response bodies (pure, no I/O).

Only what shapes the simulated work is read from a request: the prompt (its length gives the
prompt tokens, about ``chars_per_token`` characters each, plus a few per chat message for the
template), ``max_tokens``/``max_completion_tokens``, ``stream`` and
``stream_options.include_usage``. Sampling parameters are accepted and ignored.

>>> req = parse_inference({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3},
...                       "chat", model="m", chars_per_token=4, max_model_len=100)
>>> req.prompt_tokens, req.max_tokens, req.stream
(6, 3, False)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from gyroscope.core import Response

__all__ = [
    "ApiError",
    "ChunkWriter",
    "InferenceRequest",
    "completion_body",
    "error_response",
    "parse_inference",
]

Kind = Literal["chat", "completion"]

# Text the simulated model "writes": one word per token, chosen deterministically per sequence.
_TEXT = (
    "the steady model answers every request in order while the gateway spreads load across "
    "replicas and the monitor watches latency tokens queues slots and errors so that nobody "
    "is woken at night by a server that could have told them earlier"
)
WORDS = tuple(" " + w for w in _TEXT.split(" "))
_WORDS_JSON = {w: json.dumps(w).encode() for w in WORDS}  # a token event encodes no JSON itself
_TEMPLATE_TOKENS_PER_MESSAGE = 4  # role markers and separators a chat template adds


class ApiError(Exception):
    """A request the server refuses; becomes an OpenAI-style error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 404:
            kind = "NotFoundError"
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.status,
            }
        }


def error_response(exc: ApiError) -> Response:
    return Response.json(exc.body(), status=exc.status)


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    kind: Kind
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    include_usage: bool


def estimate_tokens(chars: int, chars_per_token: float) -> int:
    return max(1, math.ceil(chars / chars_per_token))


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(400, f"{key} must be a positive integer, got {value!r}", param=key)
    return value


def _optional_bool(value: Any, key: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(400, f"{key} must be true or false, got {value!r}", param=key)
    return value


def _chat_chars(messages: Any) -> int:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list of messages", param="messages")
    chars = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(
                400, f"messages[{i}] must be an object with a 'role' string", param="messages"
            )
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
        elif content is not None:
            raise ApiError(
                400, f"messages[{i}].content must be a string or a list of parts", param="messages"
            )
    return chars


def _prompt_tokens(prompt: Any, chars_per_token: float) -> int:
    if isinstance(prompt, str):
        return estimate_tokens(len(prompt), chars_per_token)
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return estimate_tokens(sum(len(p) for p in prompt), chars_per_token)
    if isinstance(prompt, list) and prompt and all(type(p) is int for p in prompt):
        return len(prompt)  # already token ids
    raise ApiError(
        400, "prompt must be a string, a list of strings or a list of token ids", param="prompt"
    )


def parse_inference(
    body: Any, kind: Kind, *, model: str, chars_per_token: float, max_model_len: int
) -> InferenceRequest:
    """Validate one completion request; raises ``ApiError`` with one clear message."""
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    requested = body.get("model")
    if requested is not None and requested != model:
        raise ApiError(
            404,
            f"the model {requested!r} does not exist (this server serves {model!r})",
            param="model",
        )
    if kind == "chat":
        prompt_tokens = estimate_tokens(_chat_chars(body.get("messages")), chars_per_token)
        prompt_tokens += _TEMPLATE_TOKENS_PER_MESSAGE * len(body["messages"])
    else:
        prompt_tokens = _prompt_tokens(body.get("prompt"), chars_per_token)
    max_tokens = _optional_int(body, "max_completion_tokens") or _optional_int(body, "max_tokens")
    n = body.get("n")
    if n is not None and n != 1:
        raise ApiError(400, f"only n=1 is supported, got {n!r}", param="n")
    stream = _optional_bool(body.get("stream"), "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object", param="stream_options")
    include_usage = _optional_bool((options or {}).get("include_usage"), "include_usage")
    wanted = prompt_tokens + (max_tokens or 1)
    if wanted > max_model_len:
        raise ApiError(
            400,
            f"this model's maximum context length is {max_model_len} tokens, but {wanted} were "
            f"requested ({prompt_tokens} in the prompt, {max_tokens or 1} in the completion); "
            "shorten the prompt or lower max_tokens",
        )
    return InferenceRequest(kind, prompt_tokens, max_tokens, stream, include_usage)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def token_text(seq_id: int, index: int) -> str:
    return WORDS[(seq_id * 7 + index) % len(WORDS)]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    kind: Kind,
    *,
    rid: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """The whole (non-streamed) answer."""
    choice: dict[str, Any] = {"index": 0}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    choice["logprobs"] = None
    choice["finish_reason"] = finish_reason
    return {
        "id": rid,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_tokens, completion_tokens),
    }


class ChunkWriter:
    """Server-sent events of one streamed answer, in OpenAI's chunk format.

    Token events are built from a prefix and suffix made once around the token's JSON string
    (made once per word of the simulated vocabulary), so a token encodes no JSON at all.
    """

    def __init__(self, kind: Kind, *, rid: str, created: int, model: str, usage_nulls: bool):
        self.kind = kind
        obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
        head = _dumps({"id": rid, "object": obj, "created": created, "model": model})[:-1]
        self._head = head
        self._usage_nulls = usage_nulls
        key = '"delta":{"content":' if kind == "chat" else '"text":'
        tail = "}" if kind == "chat" else ""
        usage_null = ',"usage":null' if usage_nulls else ""
        self._prefix = f'data: {head},"choices":[{{"index":0,{key}'.encode()
        self._suffix = f'{tail},"logprobs":null,"finish_reason":null}}]{usage_null}}}\n\n'.encode()

    def _event(self, choices: list[dict[str, Any]], extra: str = "") -> bytes:
        if self._usage_nulls and not extra:
            extra = ',"usage":null'
        return f'data: {self._head},"choices":{_dumps(choices)}{extra}}}\n\n'.encode()

    def role(self) -> bytes:
        """The chat stream's first event (the assistant's role); b"" for completions."""
        if self.kind != "chat":
            return b""
        delta = {"role": "assistant", "content": ""}
        return self._event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def token(self, text: str) -> bytes:
        encoded = _WORDS_JSON.get(text)
        if encoded is None:
            encoded = json.dumps(text).encode()
        return b"".join((self._prefix, encoded, self._suffix))

    def finish(self, reason: str) -> bytes:
        choice: dict[str, Any] = {"index": 0}
        if self.kind == "chat":
            choice["delta"] = {}
        else:
            choice["text"] = ""
        choice.update({"logprobs": None, "finish_reason": reason})
        return self._event([choice])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._event([], ',"usage":' + _dumps(usage(prompt_tokens, completion_tokens)))

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
