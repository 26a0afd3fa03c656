"""Where requests go (``Target``) and what they are (``RequestSpec``), pre-encoded to bytes.

A run talks to one origin (scheme, host, port) through a pool of keep-alive connections; every
request is HTTP/1.1 encoded once up front, or, when it uses ``${variables}`` from a data file, once
per data row, so the hot path only writes bytes.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gyroscope.errors import BenchError

__all__ = ["RequestSpec", "Target", "default_expect", "encode_request", "parse_target"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_expect() -> frozenset[int]:
    """Statuses that count as success unless a request says otherwise: 1xx-3xx."""
    return frozenset(range(100, 400))


@dataclass(frozen=True, kw_only=True)
class Target:
    """One origin: ``scheme://host:port``, plus the path of a plain URL target."""

    scheme: str
    host: str
    port: int
    path: str = "/"
    insecure: bool = False

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.scheme != "https":
            return None
        context = ssl.create_default_context()
        if self.insecure:  # the user asked for it, e.g. a self-signed test server
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def parse_target(url: str, *, insecure: bool = False) -> Target:
    """``http://127.0.0.1:8000/path`` -> ``Target``; a bad URL is one ``BenchError`` line.

    >>> parse_target("http://127.0.0.1:8000/x").origin
    'http://127.0.0.1:8000'
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BenchError(f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BenchError(f"bad URL {url!r}: expected http://HOST[:PORT]/PATH or https://...")
    if parts.username is not None or parts.password is not None:
        # They would be written to every report, and are not sent: credentials go in a header.
        raise BenchError(
            f"bad URL {parts.scheme}://***@{parts.hostname}: no credentials in the URL; "
            "send them as a header, e.g. -H 'authorization: Basic BASE64(user:password)'"
        )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or (443 if parts.scheme == "https" else 80),
        path=path,
        insecure=insecure,
    )


@dataclass(frozen=True, kw_only=True)
class RequestSpec:
    """One kind of request of a run.

    >>> spec = RequestSpec(method="POST", path="/v1/x", body=b'{"a": 1}')
    >>> spec.name
    'POST /v1/x'
    """

    method: str = "GET"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    expect: frozenset[int] = field(default_factory=default_expect)
    weight: float = 1.0
    label: str = ""
    stream: bool = False

    @property
    def name(self) -> str:
        return self.label or f"{self.method} {self.path}"

    @property
    def variables(self) -> set[str]:
        text = self.path + "".join(k + v for k, v in self.headers)
        found = set(_VAR.findall(text))
        found.update(_VAR.findall(self.body.decode("utf-8", "replace")))
        return found

    def render(self, row: Mapping[str, str]) -> RequestSpec:
        """This request with ``${name}`` replaced from ``row`` (JSON-escaped inside a JSON body)."""

        def sub(text: str, *, in_json: bool = False) -> str:
            def one(match: re.Match[str]) -> str:
                value = str(row.get(match.group(1), match.group(0)))
                return json.dumps(value)[1:-1] if in_json else value

            return _VAR.sub(one, text)

        body_text = self.body.decode("utf-8", "replace")
        is_json = any(k.lower() == "content-type" and "json" in v for k, v in self.headers)
        return RequestSpec(
            method=self.method,
            path=sub(self.path),
            headers=tuple((k, sub(v)) for k, v in self.headers),
            body=sub(body_text, in_json=is_json).encode() if self.body else b"",
            expect=self.expect,
            weight=self.weight,
            label=self.label,
            stream=self.stream,
        )


def encode_request(spec: RequestSpec, target: Target) -> bytes:
    """The request as it goes on the wire: HTTP/1.1, keep-alive, Host and Content-Length set."""
    names = {k.lower() for k, _ in spec.headers}
    lines = [f"{spec.method} {spec.path} HTTP/1.1", f"Host: {target.host_header}"]
    lines.extend(f"{k}: {v}" for k, v in spec.headers if k.lower() != "host")
    if (spec.body or spec.method in ("POST", "PUT", "PATCH")) and "content-length" not in names:
        lines.append(f"Content-Length: {len(spec.body)}")
    if "user-agent" not in names:
        lines.append("User-Agent: gyroscope-bench")
    head = "\r\n".join(lines) + "\r\n\r\n"
    try:
        return head.encode("latin-1") + spec.body
    except UnicodeEncodeError as exc:
        raise BenchError(f"{spec.name}: header is not latin-1 text: {exc.reason}") from None


def build_spec(
    target: Target,
    *,
    method: str = "GET",
    headers: Sequence[str] | Mapping[str, str] = (),
    body: bytes | str = b"",
    expect: Sequence[int] | None = None,
    stream: bool = False,
) -> RequestSpec:
    """A ``RequestSpec`` for a plain URL run from CLI-style pieces (``-H 'Name: value'``)."""
    pairs: list[tuple[str, str]] = []
    items: Any = headers.items() if isinstance(headers, Mapping) else headers
    for item in items:
        if isinstance(item, tuple):
            pairs.append((str(item[0]), str(item[1])))
            continue
        name, sep, value = str(item).partition(":")
        if not sep or not name.strip():
            raise BenchError(f"bad header {item!r}: expected 'Name: value'")
        pairs.append((name.strip(), value.strip()))
    if method.upper() == "HEAD":
        # The response parser cannot be told a body will not follow; it would wait for one.
        raise BenchError("HEAD is not supported: its response carries no body to delimit; use GET")
    return RequestSpec(
        method=method.upper(),
        path=target.path,
        headers=tuple(pairs),
        body=body.encode() if isinstance(body, str) else body,
        expect=frozenset(expect) if expect else default_expect(),
        stream=stream,
    )
