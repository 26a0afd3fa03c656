"""The LogQL subset: parsing, errors that name the position, and query semantics."""

from __future__ import annotations

import json

import pytest

from gyroscope.logs import Entry, LogStore, QuerySyntaxError, canonical, parse_query, run_log_query
from gyroscope.logs._logql import FieldFilter, JsonStage, LineFilter, LogQuery, MetricQuery


def test_parses_the_supported_forms() -> None:
    q = parse_query(
        '{a="1", b!="2", c=~"x|y", d!~"z.*"} |= "p" != `q` |~ "r+" !~ "s" | json | n > 3'
    )
    assert isinstance(q, LogQuery)
    assert [(m.name, m.op) for m in q.matchers] == [
        ("a", "="),
        ("b", "!="),
        ("c", "=~"),
        ("d", "!~"),
    ]
    assert q.stages == (
        LineFilter("|=", "p"),
        LineFilter("!=", "q"),
        LineFilter("|~", "r+"),
        LineFilter("!~", "s"),
        JsonStage(),
        FieldFilter("n", ">", "3"),
    )
    m = parse_query('sum(count_over_time({a="1"}[5m])) by (level)')
    assert isinstance(m, MetricQuery) and m.by == ("level",) and m.range_ns == 300 * 10**9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty query"),
        ("{}", "at least one matcher"),
        ('{a="1"', "ends early"),
        ("{a=1}", "expected str at position 4"),
        ('{a="1"} |= "x" extra', "unexpected 'extra' at position 16"),
        ('{a=~"("}', "invalid regular expression"),
        ('topk(3, {a="1"})', "unsupported function 'topk'"),
        ('count_over_time({a="1"}[5parsecs])', "unexpected"),
    ],
)
def test_bad_queries_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(QuerySyntaxError, match=message.replace("(", r"\(")):
        parse_query(text)


def test_semantics_of_filters_and_direction(store: LogStore) -> None:
    rows = [
        ("api", "error", {"status": 500, "path": "/v1/chat"}),
        ("api", "info", {"status": 200, "path": "/v1/models"}),
        ("web", "error", {"status": 502, "path": "/"}),
        ("api", "error", {"status": 404, "path": "/v1/x"}),
    ]
    store.append(
        [
            Entry(canonical({"service": s, "level": lv}), json.dumps(b).encode(), i)
            for i, (s, lv, b) in enumerate(rows)
        ]
    )

    def run(q: str, **kw: object) -> list[int]:
        res = run_log_query(
            store,
            parse_query(q),
            start_ns=0,
            end_ns=100,
            limit=kw.pop("limit", 10),  # type: ignore[arg-type]
            **kw,
        )  # type: ignore[arg-type]
        return [ln.seq for ln in res.lines]

    assert run('{service="api"}') == [3, 1, 0]
    assert run('{service="api"}', backward=False, limit=2) == [0, 1]
    assert run('{service!="api"}') == [2]
    assert run('{service=~"a.*", level!~"info"}') == [3, 0]
    assert run('{service=~".+"} |= "v1" != "models"') == [3, 0]
    assert run('{service=~".+"} |~ "50[02]"') == [2, 0]
    assert run('{service=~".+"} | json | status >= 500 | path =~ "/v1/.*"') == [0]
    assert run('{service=~".+"} | json | status == 404') == [3]
    assert run('{service="nope"}') == []
