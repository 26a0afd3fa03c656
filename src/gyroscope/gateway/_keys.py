"""Request keys for the hash policies: a header, a cookie, the path, the client IP or a JSON field.

``prompt_prefix`` hashes the start of the prompt (``prompt`` or the ``messages`` contents), so
requests that share a long system prompt land on the replica whose prefix cache already holds it.

>>> spec = KeySpec("header", name="x-session-id")
>>> spec.key([(b"x-session-id", b"abc")], b"/", "127.0.0.1", b"") == spec.key(
...     [(b"x-session-id", b"abc")], b"/other", "10.0.0.1", b"")
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from gyroscope.gateway._hashing import hash64

__all__ = ["KeySpec"]


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Where a route's hash key comes from; ``key()`` returns ``None`` when the request lacks it."""

    source: str
    name: str | None = None
    field: str | None = None
    length: int = 256

    @property
    def needs_body(self) -> bool:
        return self.source in ("json", "prompt_prefix")

    def key(
        self, headers: list[tuple[bytes, bytes]], path: bytes, client: str, body: bytes
    ) -> int | None:
        raw = self._raw(headers, path, client, body)
        return None if raw is None else hash64(raw)

    def _raw(
        self, headers: list[tuple[bytes, bytes]], path: bytes, client: str, body: bytes
    ) -> bytes | None:
        source = self.source
        if source == "path":
            return path
        if source == "client_ip":
            return client.encode()
        if source == "header":
            wanted = (self.name or "").lower().encode("latin-1")
            for name, value in headers:
                if name == wanted:
                    return value
            return None
        if source == "cookie":
            return self._cookie(headers)
        return self._from_body(body)

    def _cookie(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        for name, value in headers:
            if name != b"cookie":
                continue
            try:
                jar: SimpleCookie = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                return None
            morsel = jar.get(self.name or "")
            if morsel is not None:
                return morsel.value.encode()
        return None

    def _from_body(self, body: bytes) -> bytes | None:
        try:
            doc = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict):
            return None
        if self.source == "json":
            value = doc.get(self.field or "")
            if value is None:
                return None
            return (value if isinstance(value, str) else json.dumps(value, sort_keys=True)).encode()
        text = _prompt_text(doc)
        return None if text is None else text[: self.length].encode()


def _prompt_text(doc: dict[str, Any]) -> str | None:
    prompt = doc.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return prompt[0]
    messages = doc.get("messages")
    if not isinstance(messages, list):
        return None
    parts = []
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            parts.append(content if isinstance(content, str) else json.dumps(content))
    return "\n".join(parts) if parts else None
