"""The exposition parser against prometheus_client's, and its handling of garbage."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gyroscope.monitor import ScrapeError, SeriesCache, format_labels, parse_text

TEXT = r"""# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
  # a comment with leading space
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
nan_metric NaN
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds_sum 1.7560473e+07
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
empty_label{a=""} 1
spaced{ a = "x" , b="y z" } 2
"""


def _reference(text: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.append(({"__name__": sample.name, **sample.labels}, sample.value))
    return out


def _norm(value: float) -> object:
    return "nan" if math.isnan(value) else value


def test_same_samples_as_prometheus_client() -> None:
    ours = [(dict(lb), _norm(v)) for lb, v, _ in parse_text(TEXT)]
    theirs = [({k: v for k, v in lb.items() if v != ""}, _norm(v)) for lb, v in _reference(TEXT)]
    key = lambda item: sorted(item[0].items())  # noqa: E731
    assert sorted(ours, key=key) == sorted(theirs, key=key)


def test_timestamps_and_extra_labels() -> None:
    samples = parse_text(TEXT, extra=(("job", "j"), ("method", "ignored")))
    first = samples[0]
    assert dict(first[0])["method"] == "ignored"  # the target's labels win, as in Prometheus
    assert dict(first[0])["exported_method"] == "post"
    assert dict(first[0])["job"] == "j"
    assert first[2] == 1395066363000
    assert samples[3][2] is None


def test_cache_reuses_parsed_labels() -> None:
    cache = SeriesCache()
    one = parse_text(TEXT, cache)
    two = parse_text(TEXT, cache)
    assert all(a[0] is b[0] for a, b in zip(one, two, strict=True))


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('ok 1\nbad{a="1" 2\n', 2),
        ("ok 1\n\nnovalue\n", 3),
        ('x{a="1"} notanumber\n', 1),
        ("<html><body>502 Bad Gateway</body></html>\n", 1),
        ("x{a=1} 2\n", 1),
        ("1leading_digit 3\n", 1),
    ],
)
def test_garbage_names_the_line(text: str, line: int) -> None:
    with pytest.raises(ScrapeError) as info:
        parse_text(text, target="http://t/metrics")
    assert info.value.line == line
    assert "http://t/metrics" in str(info.value)


def test_format_labels_round_trip() -> None:
    ((labels, _, _),) = parse_text('m{a="x\\"y",b="1"} 1\n')
    assert format_labels(labels) == 'm{a="x\\"y",b="1"}'
