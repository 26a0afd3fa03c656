"""Rule files as Prometheus writes them: checking (file, line, rule, reason), the alert state
machine with ``for`` and ``keep_firing_for``, templated annotations and recording rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gyroscope.cli.monitor import monitor
from gyroscope.monitor import (
    TSDB,
    Engine,
    GroupEvaluator,
    RuleFileError,
    check_rule_file,
    load_rule_file,
)
from gyroscope.monitor._template import TemplateError, render

GOOD = """groups:
  - name: demo
    interval: 1s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: InstanceDown
        expr: up == 0
        for: 3s
        keep_firing_for: 2s
        labels:
          severity: page
          team: "{{ $labels.job }}"
        annotations:
          summary: "{{ $labels.instance }} down, value {{ $value }}"
          pct: "{{ 0.123 | humanizePercentage }}"
"""

BAD = """groups:
  - name: broken
    rules:
      - alert: NoExpr
        for: 5m
      - alert: BadExpr
        expr: sum(rate(x[5m])
      - record: bad name
        expr: up
      - alert: BadFor
        expr: up
        for: soon
      - alert: BadTemplate
        expr: up
        annotations: {summary: "{{ $labels.x | frobnicate }}"}
      - alert: Both
        record: both
        expr: up
      - alert: Typo
        expr: up
        anotations: {}
"""


def test_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    assert check_rule_file(path) == []
    (group,) = load_rule_file(path)
    assert [r.name for r in group.rules] == ["job:up:sum", "InstanceDown"]
    assert group.rules[1].for_s == 3.0 and group.rules[1].keep_firing_for_s == 2.0


def test_every_problem_is_reported_with_line_and_rule(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    errors = check_rule_file(path)
    got = [(e.line, e.rule) for e in errors]
    assert got == [
        (4, "NoExpr"),
        (6, "BadExpr"),
        (8, "bad name"),
        (10, "BadFor"),
        (13, "BadTemplate"),
        (16, "Both"),
        (19, "Typo"),
    ]
    reasons = [e.reason for e in errors]
    assert "expr: missing" in reasons[0]
    assert "unclosed left parenthesis" in reasons[1] and "position 3" in reasons[1]
    assert "invalid metric name" in reasons[2]
    assert "for:" in reasons[3]
    assert "frobnicate" in reasons[4]
    assert "exactly one of alert and record" in reasons[5]
    assert "anotations" in reasons[6]
    assert str(errors[0]).startswith(f"{path}:4: rule 'NoExpr':")
    with pytest.raises(RuleFileError):
        load_rule_file(path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "y.yaml"
    path.write_text("groups:\n  - name: x\n    rules: [\n")
    (error,) = check_rule_file(path)
    assert error.line is not None and "invalid YAML" in error.reason


def test_rules_check_cli(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    runner = CliRunner()
    ok = runner.invoke(monitor, ["rules", "check", str(good)])
    assert ok.exit_code == 0 and "1 file(s) OK" in ok.output
    failed = runner.invoke(monitor, ["rules", "check", str(good), str(bad)])
    assert failed.exit_code == 1
    assert f"{bad}:6: rule 'BadExpr':" in failed.output
    assert "Traceback" not in failed.output


def test_alert_state_machine(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    (group,) = load_rule_file(path)
    db = TSDB(tmp_path / "t.sqlite")
    labels = (("__name__", "up"), ("instance", "a:1"), ("job", "demo"))
    evaluator = GroupEvaluator(group, Engine(db))
    states = []
    ups = [1, 0, 0, 0, 0, 0, 1, 1, 1, 1]  # down from t=1 to t=5, then up
    for t, value in enumerate(ups):
        db.append(labels, t * 1000, float(value))
        recorded, alerts = evaluator.evaluate(float(t))
        states.append(alerts[0].state if alerts else "-")
        assert recorded == [((("__name__", "job:up:sum"), ("job", "demo")), float(value))]
    # pending from t=1, firing at t=4 (for 3 s), kept firing 2 s after t=6 (keep_firing_for)
    assert states == [
        "-",
        "pending",
        "pending",
        "pending",
        "firing",
        "firing",
        "firing",
        "firing",
        "resolved",
        "resolved",
    ]
    alert = evaluator.alerts()[0]
    assert alert.labels == {
        "alertname": "InstanceDown",
        "instance": "a:1",
        "job": "demo",
        "severity": "page",
        "team": "demo",
    }
    assert alert.annotations == {"summary": "a:1 down, value 0", "pct": "12.3%"}


def test_pending_alert_that_clears_never_fires(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    (group,) = load_rule_file(path)
    db = TSDB(tmp_path / "t.sqlite")
    evaluator = GroupEvaluator(group, Engine(db))
    labels = (("__name__", "up"), ("instance", "a:1"), ("job", "demo"))
    for t, value in enumerate([0, 0, 1, 1, 1]):
        db.append(labels, t * 1000, float(value))
        evaluator.evaluate(float(t))
    assert evaluator.alerts() == []


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ $labels.job }}/{{ .Labels.job }}", "api/api"),
        ('{{ $value | printf "%.2f" }}', "1234.57"),
        ('{{ printf "%.1f" $value }}', "1234.6"),
        ("{{ humanize $value }}", "1.235k"),
        ("{{ 90061 | humanizeDuration }}", "1d 1h 1m 1s"),
        ("{{ $labels.missing }}x", "x"),
        ("{{ $labels.job | toUpper }}", "API"),
    ],
)
def test_templates(template: str, expected: str) -> None:
    assert render(template, {"job": "api"}, 1234.5678) == expected


def test_unknown_template_function() -> None:
    with pytest.raises(TemplateError, match="nope"):
        render("{{ nope $value }}", {}, 1.0)
