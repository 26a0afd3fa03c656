"""Scenario files: weighted requests in YAML, or one request per line in JSONL, plus data files.

YAML::

    base_url: http://127.0.0.1:8001        # or give the URL on the command line
    data: prompts.csv                      # optional; rows fill ${name} variables, round robin
    headers: {Authorization: "Bearer ${token}"}
    requests:
      - name: models
        weight: 1
        url: /v1/models
        expect: 200
      - name: chat
        weight: 3
        method: POST
        url: /v1/chat/completions
        json: {model: demo-model, messages: [{role: user, content: "${prompt}"}], max_tokens: 16}
        expect: [200]

JSONL: each line ``{"method": ..., "url": ..., "headers": {...}, "body": ... | "json": ...,
"expect": ..., "weight": ...}``. Data files are CSV with a header row, or JSONL of flat objects.
Every mistake raises ``ScenarioError`` naming the file, the line and the key.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gyroscope.bench._target import RequestSpec, Target, default_expect, parse_target
from gyroscope.errors import BenchError, ScenarioError

__all__ = ["Scenario", "load_rows", "load_scenario"]

_REQUEST_KEYS = {"name", "weight", "method", "url", "path", "headers", "body", "json", "expect"}
_TOP_KEYS = {"base_url", "data", "headers", "requests"}
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A loaded scenario: one target origin, its weighted requests, and data rows."""

    target: Target
    requests: tuple[RequestSpec, ...]
    rows: list[dict[str, str]]


class _Where:
    """File and line bookkeeping for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, message: str, line: int | None, key: str | None = None) -> ScenarioError:
        return ScenarioError(message, path=self.path, line=line, key=key)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(
    node: yaml.Node, where: _Where, key: str, known: set[str] | None = None
) -> dict[str, yaml.Node]:
    """The mapping's values by key; an unknown key is reported at the key's own line."""
    if not isinstance(node, yaml.MappingNode):
        raise where.error("expected a mapping", _line(node), key or None)
    out: dict[str, yaml.Node] = {}
    for k, v in node.value:
        name = str(k.value)
        if known is not None and name not in known:
            full = f"{key}.{name}" if key else name
            raise where.error(f"unknown key (known: {', '.join(sorted(known))})", _line(k), full)
        out[name] = v
    return out


def _plain(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def load_scenario(path: Path, *, base_url: str | None = None, data: Path | None = None) -> Scenario:
    """Load a YAML (``.yaml``/``.yml``) or JSONL (``.jsonl``) scenario."""
    path = Path(path)
    where = _Where(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror}", path=path) from None
    if path.suffix == ".jsonl":
        raw = _jsonl_requests(text, where)
        top: dict[str, Any] = {}
    else:
        raw, top = _yaml_requests(text, where)
    url = top.get("base_url") or base_url
    if not url:
        raise where.error("no target: set base_url in the file or give a URL", None, "base_url")
    try:
        target = parse_target(str(url))
    except BenchError as exc:
        raise where.error(str(exc), top.get("_base_url_line"), "base_url") from None
    shared = top.get("headers") or {}
    requests = tuple(_request(item, line, shared, target, where) for item, line in raw)
    data_path = data or (path.parent / str(top["data"]) if top.get("data") else None)
    rows = load_rows(data_path) if data_path else []
    names = set().union(*(r.variables for r in requests))
    if names and rows:
        missing = names - set(rows[0])
        if missing:
            raise where.error(
                f"variable(s) {', '.join(sorted(missing))} not in the data file", None, "data"
            )
    elif names:
        raise where.error(f"uses ${{{sorted(names)[0]}}} but no data file is given", None, "data")
    return Scenario(target=target, requests=requests, rows=rows)


def _yaml_requests(
    text: str, where: _Where
) -> tuple[list[tuple[dict[str, Any], int]], dict[str, Any]]:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise where.error(f"not valid YAML: {getattr(exc, 'problem', exc)}", line) from None
    if root is None:
        raise where.error("the file is empty", None, "requests")
    top_nodes = _mapping(root, where, "", _TOP_KEYS)
    top = {k: _plain(v) for k, v in top_nodes.items() if k != "requests"}
    if "base_url" in top_nodes:
        top["_base_url_line"] = _line(top_nodes["base_url"])
    if "headers" in top_nodes:
        _mapping(top_nodes["headers"], where, "headers")
    node: yaml.Node | None = top_nodes.get("requests")
    if node is None:
        raise where.error("missing: a list of requests", None, "requests")
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise where.error("expected a non-empty list of requests", _line(node), "requests")
    out = []
    for i, item in enumerate(node.value):
        fields = _mapping(item, where, f"requests[{i}]", _REQUEST_KEYS)
        parsed = {k: (_plain(v), _line(v)) for k, v in fields.items()}
        out.append((parsed, _line(item)))
    return out, top


def _jsonl_requests(text: str, where: _Where) -> list[tuple[dict[str, Any], int]]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise where.error(f"not JSON: {exc.msg}", number) from None
        if not isinstance(item, dict):
            raise where.error("expected a JSON object", number)
        for key in item:
            if key not in _REQUEST_KEYS:
                raise where.error(
                    f"unknown key (known: {', '.join(sorted(_REQUEST_KEYS))})", number, key
                )
        out.append(({k: (v, number) for k, v in item.items()}, number))
    if not out:
        raise where.error("no requests in the file", None)
    return out


def _request(
    item: dict[str, tuple[Any, int]],
    line: int,
    shared: dict[str, Any],
    target: Target,
    where: _Where,
) -> RequestSpec:
    def get(key: str, default: Any = None) -> tuple[Any, int]:
        return item.get(key, (default, line))

    method, mline = get("method", "GET")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise where.error(f"expected one of {', '.join(sorted(_METHODS))}", mline, "method")
    url, uline = get("url", get("path", None)[0])
    if not isinstance(url, str) or not url:
        raise where.error("expected a URL or a path starting with /", uline, "url")
    if url.startswith(("http://", "https://")):
        other = parse_target(url)
        if other.origin != target.origin:
            raise where.error(f"all requests must go to one origin ({target.origin})", uline, "url")
        url = other.path
    elif not url.startswith("/"):
        raise where.error("expected a URL or a path starting with /", uline, "url")
    headers_raw, hline = get("headers", {})
    if not isinstance(headers_raw, dict):
        raise where.error("expected a mapping of header names to values", hline, "headers")
    headers = {str(k): str(v) for k, v in {**shared, **headers_raw}.items()}
    body: bytes = b""
    if "json" in item:
        if "body" in item:
            raise where.error("give either body or json, not both", item["json"][1], "json")
        body = json.dumps(item["json"][0]).encode()
        headers.setdefault("Content-Type", "application/json")
    elif "body" in item:
        raw_body, bline = item["body"]
        if not isinstance(raw_body, str):
            raise where.error("expected text (use json: for structured bodies)", bline, "body")
        body = raw_body.encode()
    weight, wline = get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise where.error("expected a number above 0", wline, "weight")
    expect, eline = get("expect", None)
    statuses = _expect(expect, eline, where)
    name, _ = get("name", "")
    return RequestSpec(
        method=method.upper(),
        path=url,
        headers=tuple(headers.items()),
        body=body,
        expect=statuses,
        weight=float(weight),
        label=str(name or ""),
    )


def _expect(value: Any, line: int, where: _Where) -> frozenset[int]:
    if value is None:
        return default_expect()
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and 100 <= v <= 599 for v in values):
        raise where.error("expected a status code or a list of them (100-599)", line, "expect")
    return frozenset(values)


def load_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (header row first) or JSONL data file, as string dicts."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read: {exc.strerror}", path=path) from None
    rows: list[dict[str, str]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScenarioError(f"not JSON: {exc.msg}", path=path, line=number) from None
            if not isinstance(item, dict):
                raise ScenarioError("expected a flat JSON object", path=path, line=number)
            rows.append(
                {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in item.items()}
            )
    else:
        reader = csv.reader(text.splitlines())
        header = next(reader, None)
        if not header:
            raise ScenarioError("empty data file (expected a header row)", path=path, line=1)
        for number, record in enumerate(reader, 2):
            if len(record) != len(header):
                raise ScenarioError(
                    f"expected {len(header)} fields, found {len(record)}", path=path, line=number
                )
            rows.append(dict(zip(header, record, strict=True)))
    if not rows:
        raise ScenarioError("no data rows", path=path)
    return rows
