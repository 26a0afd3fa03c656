"""Parsing what clients send into entries: JSON lines, the Loki push API (JSON), syslog.

Batch semantics (documented for users): a request is all or nothing. Every line of a request is
validated before anything is written; the first problem is answered with HTTP 400 naming the line
(or stream and entry) and what to fix, and nothing of that request is stored. A request that was
answered 2xx is durable (fsynced) in full.

>>> parse_json_lines(b'{"labels": {"job": "api"}, "line": "hi", "ts": 5}')[0].ts_ns
5
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import orjson

from gyroscope.logs._errors import BadInputError
from gyroscope.logs._labels import canonical
from gyroscope.logs._record import MAX_LINE_BYTES
from gyroscope.logs._store import Entry

__all__ = ["parse_json_lines", "parse_loki_push", "parse_syslog", "parse_time"]


def parse_time(value: Any, *, where: str, default: int | None = None) -> int:
    """Nanoseconds from an integer (ns), a number string, a float of seconds or RFC 3339."""
    if value is None or value == "":
        if default is None:
            raise BadInputError("missing timestamp", where=where)
        return default
    if isinstance(value, bool):
        raise BadInputError(f"invalid timestamp {value!r}", where=where)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value * 1e9)
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        n = int(text)
        return n if n > 10**14 else n * 10**9  # a bare small number is seconds (Loki accepts both)
    if re.fullmatch(r"\d+\.\d*", text):
        whole, _, frac = text.partition(".")
        return int(whole) * 10**9 + int((frac + "000000000")[:9])
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInputError(
            f"invalid timestamp {text!r} (use nanoseconds, seconds or RFC 3339)", where=where
        ) from exc
    return int(dt.replace(microsecond=0).timestamp()) * 10**9 + dt.microsecond * 1000


def _line(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise BadInputError(f"line must be a string, got {type(value).__name__}", where=where)
    data = value.encode()
    if len(data) > MAX_LINE_BYTES:
        raise BadInputError(f"line of {len(data)} bytes exceeds {MAX_LINE_BYTES}", where=where)
    return data


def _labels(value: Any, where: str) -> str:
    if not isinstance(value, dict):
        raise BadInputError("labels must be an object of strings", where=where)
    try:
        return canonical(value)
    except BadInputError as exc:
        raise BadInputError(str(exc), where=where) from None


def parse_json_lines(body: bytes, *, now_ns: int | None = None) -> list[Entry]:
    """One JSON object per line: ``{"labels": {...}, "line": "...", "ts": <ns|seconds|RFC 3339>}``.

    The hot path of HTTP ingest: orjson, one label validation per distinct label set, and
    integer timestamps taken as they are.
    """
    now = now_ns if now_ns is not None else time.time_ns()
    loads, limit = orjson.loads, MAX_LINE_BYTES
    entries: list[Entry] = []
    add = entries.append
    seen: dict[tuple[tuple[object, object], ...], str] = {}  # lines of a batch share few label sets
    for n, raw in enumerate(body.splitlines(), 1):
        try:
            obj = loads(raw)
        except orjson.JSONDecodeError as exc:
            if not raw.strip():
                continue
            raise BadInputError(f"invalid JSON: {exc}", where=f"line {n}") from None
        if type(obj) is not dict or "line" not in obj or "labels" not in obj:
            raise BadInputError(
                'expected {"labels": {...}, "line": "...", "ts": ...}', where=f"line {n}"
            )
        labels = obj["labels"]
        try:
            key = tuple(labels.items()) if type(labels) is dict else None
            text = seen.get(key) if key is not None else None
        except TypeError:  # an unhashable value: let validation say what is wrong with it
            key, text = None, None
        if text is None:
            text = _labels(labels, f"line {n}")
            if key is not None:
                seen[key] = text
        line = obj["line"]
        data = line.encode() if type(line) is str else b""
        if type(line) is not str or len(data) > limit:
            data = _line(line, f"line {n}")  # raises with the reason
        ts = obj.get("ts")
        if type(ts) is not int:
            ts = parse_time(ts, where=f"line {n}", default=now)
        add(Entry(text, data, ts))
    return entries


def parse_loki_push(body: bytes) -> list[Entry]:
    """Loki's JSON push body: ``{"streams": [{"stream": {...}, "values": [["<ns>", "line"], ...]}]}``."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInputError(f"invalid JSON: {exc}") from None
    streams = obj.get("streams") if isinstance(obj, dict) else None
    if not isinstance(streams, list):
        raise BadInputError(
            'expected {"streams": [{"stream": {...}, "values": [[ts, line], ...]}]}'
        )
    entries: list[Entry] = []
    add = entries.append
    for i, st in enumerate(streams):
        where = f"streams[{i}]"
        if not isinstance(st, dict) or not isinstance(st.get("values"), list):
            raise BadInputError('expected {"stream": {...}, "values": [...]}', where=where)
        labels = _labels(st.get("stream"), f"{where}.stream")
        for j, value in enumerate(st["values"]):
            if type(value) is list and len(value) in (2, 3):
                ts, line = value[0], value[1]
                # the usual entry: a string of digits (ns) and a short string line
                if type(ts) is str and len(ts) > 15 and ts.isascii() and ts.isdigit():
                    data = line.encode() if type(line) is str else b""
                    if data and len(data) <= MAX_LINE_BYTES:
                        add(Entry(labels, data, int(ts)))
                        continue
            at = f"{where}.values[{j}]"
            if not isinstance(value, list) or len(value) not in (2, 3):
                raise BadInputError('expected ["<unix ns>", "line"]', where=at)
            add(Entry(labels, _line(value[1], at), parse_time(value[0], where=at)))
    return entries


_SEVERITY = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_FACILITY = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
)
_RFC5424 = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?\Z", re.S
)
_RFC3164 = re.compile(
    r"<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([^:\[\s]+)(?:\[(\d+)\])?: ?(.*)\Z",
    re.S,
)


def parse_syslog(msg: bytes, *, now_ns: int | None = None, peer: str = "") -> Entry:
    """One RFC 5424 or RFC 3164 message as an entry labelled job, host, app, facility, severity."""
    now = now_ns if now_ns is not None else time.time_ns()
    text = msg.decode("utf-8", "replace").rstrip("\r\n\x00")
    if text.startswith("\ufeff"):
        text = text[1:]
    m = _RFC5424.match(text)
    if m:
        pri, stamp, host, app = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        line = m.group(8) or ""
        line = line.removeprefix("\ufeff")
        ts = now if stamp == "-" else parse_time(stamp, where="syslog timestamp")
    else:
        m = _RFC3164.match(text)
        if m is None:
            raise BadInputError(f"not an RFC 5424 or RFC 3164 syslog message: {text[:60]!r}")
        pri, host, app, line = int(m.group(1)), m.group(3), m.group(4), m.group(6)
        ts = now  # RFC 3164 timestamps have no year or zone; the receive time is more honest
    if pri > 191:
        raise BadInputError(f"syslog priority {pri} out of range 0-191")
    labels = {
        "job": "syslog",
        "host": host if host != "-" else (peer or "unknown"),
        "app": app if app != "-" else "unknown",
        "facility": _FACILITY[pri >> 3],
        "severity": _SEVERITY[pri & 7],
    }
    return Entry(canonical(labels), _line(line, "syslog message"), ts)
