"""Scenario files: weighted requests, data variables, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gyroscope.bench import LoadConfig, load_scenario, run_load
from gyroscope.errors import ScenarioError

GOOD = """\
base_url: {url}
data: rows.csv
requests:
  - name: page
    weight: 3
    url: /
    expect: 200
  - name: missing
    weight: 1
    url: /missing
    expect: [404]
  - name: echo
    weight: 1
    method: POST
    url: /echo?user=${{user}}
    headers: {{X-User: "${{user}}"}}
    json: {{user: "${{user}}"}}
"""


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


async def test_weighted_scenario_with_data_rows(nginx_url: str, tmp_path: Path) -> None:
    write(tmp_path, "rows.csv", "user\nalice\nbob\n")
    path = write(tmp_path, "s.yaml", GOOD.format(url=nginx_url))
    scenario = load_scenario(path)
    assert [r.name for r in scenario.requests] == ["page", "missing", "echo"]
    assert scenario.rows == [{"user": "alice"}, {"user": "bob"}]
    result = await run_load(LoadConfig(url="", scenario=path, connections=2, requests=500))
    status = result.data.status
    assert result.data.counters["errors"] == 0  # 404 is expected for "missing"
    assert status[404] == pytest.approx(100, abs=2)
    assert status[200] == pytest.approx(400, abs=2)


async def test_jsonl_scenario(nginx_url: str, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.jsonl",
        '{"url": "/", "weight": 1}\n\n{"url": "/missing", "expect": 404, "weight": 1}\n',
    )
    result = await run_load(LoadConfig(url=nginx_url, scenario=path, connections=1, requests=10))
    assert dict(result.data.status) == {200: 5, 404: 5}


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("requests:\n  - url: /\n    wieght: 2\n", 3, "requests[0].wieght", "unknown key"),
        ("requests:\n  - url: /\n  - url: /x\n    weight: -1\n", 4, "weight", "above 0"),
        ("requests:\n  - url: /\n    expect: [999]\n", 3, "expect", "status code"),
        ("requests:\n  - url: /\n    method: FETCH\n", 3, "method", "expected one of"),
        ("requests:\n  - url: relative\n", 2, "url", "path starting with /"),
        ("requests: [\n", 2, None, "not valid YAML"),
        ("requests: []\n", 1, "requests", "non-empty list"),
        ("reqests:\n  - url: /\n", 1, "reqests", "unknown key"),
        ("requests:\n  - url: /\n    body: {a: 1}\n", 3, "body", "json:"),
    ],
)
def test_yaml_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str | None, message: str
) -> None:
    path = write(tmp_path, "bad.yaml", "base_url: http://127.0.0.1:1\n" + text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line + 1  # the base_url line comes first
    assert err.key == key
    assert message in str(err)
    assert str(err).startswith(f"{path}:{line + 1}")


def test_jsonl_and_data_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "s.jsonl", '{"url": "/"}\n{"url": "/", "colour": 1}\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, base_url="http://127.0.0.1:1")
    assert (info.value.line, info.value.key) == (2, "colour")
    write(tmp_path, "rows.csv", "user,age\nalice,3\nbob\n")
    path = write(
        tmp_path,
        "v.yaml",
        "base_url: http://127.0.0.1:1\ndata: rows.csv\nrequests:\n  - url: /?u=${user}\n",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.path.endswith("rows.csv") and info.value.line == 3
    path = write(
        tmp_path, "w.yaml", "base_url: http://127.0.0.1:1\nrequests:\n  - url: /?u=${user}\n"
    )
    with pytest.raises(ScenarioError, match="no data file"):
        load_scenario(path)
