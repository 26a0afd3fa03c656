"""A LogQL subset: parsing into a small AST. Evaluation lives in ``_query``.

Supported::

    {service="api", level=~"err|warn"}            label matchers  =  !=  =~  !~
      |= "timeout" != "health" |~ "5\\d\\d" !~ "x"    line filters
      | json | status >= 500 | path=~"/v1/.*"      JSON field extraction and field filters
    count_over_time({service="api"} |= "x" [1m])   counts over time (volume histograms)
    sum by (level) (count_over_time({service="api"}[5m]))   also rate(), sum without by

>>> q = parse_query('{app="api"} |= "err" | json | status >= 500')
>>> [m.name for m in q.matchers], [type(s).__name__ for s in q.stages]
(['app'], ['LineFilter', 'JsonStage', 'FieldFilter'])
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gyroscope.logs._errors import QuerySyntaxError

__all__ = [
    "FieldFilter",
    "JsonStage",
    "LineFilter",
    "LogQuery",
    "Matcher",
    "MetricQuery",
    "parse_duration",
    "parse_query",
    "parse_selector",
]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
     |(?P<dur>\[\s*\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y)\s*\])
     |(?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|=|>|<|\||\{|\}|\(|\)|,)
     |(?P<num>-?\d+(?:\.\d+)?)
     |(?P<name>[a-zA-Z_][a-zA-Z0-9_.]*)
    )""",
    re.VERBOSE,
)
_UNITS = {
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
    "y": 365 * 86400 * 10**9,
}


def parse_duration(text: str) -> int:
    """``5m`` -> nanoseconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)\s*", text)
    if match is None:
        raise QuerySyntaxError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h, 7d)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "regex", _compile(self.value))

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True, slots=True)
class LineFilter:
    op: str  # |= != |~ !~
    value: str


@dataclass(frozen=True, slots=True)
class JsonStage:
    pass


@dataclass(frozen=True, slots=True)
class FieldFilter:
    name: str
    op: str  # = != =~ !~ == > >= < <=
    value: str


Stage = LineFilter | JsonStage | FieldFilter


@dataclass(frozen=True, slots=True)
class LogQuery:
    matchers: tuple[Matcher, ...]
    stages: tuple[Stage, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricQuery:
    fn: str  # count_over_time | rate
    inner: LogQuery
    range_ns: int
    agg: str | None = None  # sum
    by: tuple[str, ...] | None = None


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise QuerySyntaxError(f"invalid regular expression {pattern!r}: {exc}") from exc


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise QuerySyntaxError(
                    f"unexpected {text[pos:].strip()[:10]!r} at position {pos + 1}"
                )
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.tokens):
            return False
        return value is None or self.tokens[self.i][1] == value

    def next(self, kind: str | None = None, value: str | None = None) -> str:
        if self.i >= len(self.tokens):
            raise QuerySyntaxError(f"query ends early: expected {value or kind} in {self.text!r}")
        k, v, pos = self.tokens[self.i]
        if (kind and k != kind) or (value and v != value):
            raise QuerySyntaxError(f"expected {value or kind} at position {pos + 1}, got {v!r}")
        self.i += 1
        return v

    def string(self) -> str:
        raw = self.next("str")
        if raw.startswith("`"):
            return raw[1:-1]
        return re.sub(
            r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), raw[1:-1]
        )

    def selector(self) -> tuple[Matcher, ...]:
        self.next(value="{")
        matchers = []
        while not self.peek("}"):
            name = self.next("name")
            op = self.next("op")
            if op not in ("=", "!=", "=~", "!~"):
                raise QuerySyntaxError(f"label matcher {name}: unknown operator {op!r}")
            matchers.append(Matcher(name, op, self.string()))
            if not self.peek("}"):
                self.next(value=",")
        self.next(value="}")
        if not matchers:
            raise QuerySyntaxError('a stream selector needs at least one matcher, e.g. {job="api"}')
        return tuple(matchers)

    def log_query(self) -> LogQuery:
        matchers = self.selector()
        stages: list[Stage] = []
        while self.peek() and self.tokens[self.i][1] in ("|=", "!=", "|~", "!~", "|"):
            op = self.next()
            if op != "|":
                if op in ("|~", "!~"):
                    _compile(value := self.string())
                else:
                    value = self.string()
                stages.append(LineFilter(op, value))
            elif self.peek("json"):
                self.next()
                stages.append(JsonStage())
            else:
                name = self.next("name")
                cmp = self.next("op")
                if cmp not in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="):
                    raise QuerySyntaxError(f"field filter {name}: unknown operator {cmp!r}")
                value = (
                    self.string()
                    if self.peek() and self.tokens[self.i][0] == "str"
                    else self.next("num")
                )
                stages.append(FieldFilter(name, cmp, value))
        return LogQuery(matchers, tuple(stages))

    def metric(self) -> MetricQuery:
        name = self.next("name")
        if name in ("sum",):
            by = None
            if self.peek("by"):
                self.next()
                by = self.names()
            self.next(value="(")
            inner = self.metric()
            self.next(value=")")
            if by is None and self.peek("by"):
                self.next()
                by = self.names()
            return MetricQuery(inner.fn, inner.inner, inner.range_ns, "sum", by or ())
        if name not in ("count_over_time", "rate"):
            raise QuerySyntaxError(
                f"unsupported function {name!r} (use count_over_time, rate or sum)"
            )
        self.next(value="(")
        selected = self.log_query()
        rng = self.next("dur")
        self.next(value=")")
        return MetricQuery(name, selected, parse_duration(rng.strip("[] ")))

    def names(self) -> tuple[str, ...]:
        self.next(value="(")
        out = []
        while not self.peek(")"):
            out.append(self.next("name"))
            if not self.peek(")"):
                self.next(value=",")
        self.next(value=")")
        return tuple(out)

    def done(self) -> None:
        if self.i < len(self.tokens):
            _, v, pos = self.tokens[self.i]
            raise QuerySyntaxError(f"unexpected {v!r} at position {pos + 1}")


def parse_query(text: str) -> LogQuery | MetricQuery:
    """Parse a LogQL query; ``QuerySyntaxError`` names the position of the first problem."""
    parser = _Parser(text)
    if not parser.tokens:
        raise QuerySyntaxError('empty query (try {job="app"})')
    query: LogQuery | MetricQuery = parser.log_query() if parser.peek("{") else parser.metric()
    parser.done()
    return query


def parse_selector(text: str) -> tuple[Matcher, ...]:
    """Just a stream selector, as retention rules and ``/labels?query=`` use."""
    parser = _Parser(text)
    matchers = parser.selector()
    parser.done()
    return matchers
