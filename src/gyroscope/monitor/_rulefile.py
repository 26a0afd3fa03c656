"""Prometheus rule files, loaded as they are, with errors that name the file, line, rule and reason.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "r.yaml"
>>> _ = path.write_text("groups:\\n- name: g\\n  rules:\\n  - alert: Down\\n    expr: up == \\n")
>>> [str(e).split(": ", 1)[1] for e in check_rule_file(path)]  # doctest: +NORMALIZE_WHITESPACE
["rule 'Down': expr: bad PromQL at position 5: invalid promql query (the query ends too early) (in: up ==)"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gyroscope.monitor._config import parse_duration
from gyroscope.monitor._errors import PromQLError, RuleFileError
from gyroscope.monitor._promql import parse_query
from gyroscope.monitor._template import TemplateError, check_template

__all__ = ["Rule", "RuleGroup", "check_rule_file", "load_rule_file", "parse_rule_groups"]

_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
_GROUP_KEYS = {"name", "interval", "rules", "limit", "query_offset", "labels"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """An alerting rule (``alert`` set) or a recording rule (``record`` set)."""

    expr: str
    alert: str = ""
    record: str = ""
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def name(self) -> str:
        return self.alert or self.record


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleGroup:
    name: str
    rules: list[Rule]
    interval_s: float | None = None
    path: str = ""


def _rule_lines(text: str) -> list[list[int]]:
    """1-based line of every rule, per group, from the YAML node tree."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    out: list[list[int]] = []
    if not isinstance(root, yaml.MappingNode):
        return out
    for key, value in root.value:
        if key.value == "groups" and isinstance(value, yaml.SequenceNode):
            for group in value.value:
                lines: list[int] = []
                if isinstance(group, yaml.MappingNode):
                    for gkey, gvalue in group.value:
                        if gkey.value == "rules" and isinstance(gvalue, yaml.SequenceNode):
                            lines = [r.start_mark.line + 1 for r in gvalue.value]
                out.append(lines)
    return out


def _duration(raw: Any, what: str) -> float:
    try:
        return parse_duration(raw if raw is not None else 0)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _strings(raw: Any, what: str, key_pattern: re.Pattern[str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{what}: expected a mapping")
    for key in raw:
        if not isinstance(key, str) or not key_pattern.match(key):
            raise ValueError(f"{what}: invalid label name {key!r}")
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def _rule(raw: Any, line: int) -> Rule:
    if not isinstance(raw, dict):
        raise ValueError("a rule must be a mapping with alert or record, and expr")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    alert, record = str(raw.get("alert") or ""), str(raw.get("record") or "")
    if bool(alert) == bool(record):
        raise ValueError("set exactly one of alert and record")
    if record and not _METRIC.match(record):
        raise ValueError(f"record: invalid metric name {record!r}")
    if record and ("for" in raw or "annotations" in raw or "keep_firing_for" in raw):
        raise ValueError("a recording rule takes no for, keep_firing_for or annotations")
    expr = raw.get("expr")
    if not isinstance(expr, str | int | float) or not str(expr).strip():
        raise ValueError("expr: missing (a PromQL expression)")
    try:
        parse_query(str(expr))
    except PromQLError as exc:
        raise ValueError(f"expr: {exc}") from None
    labels = _strings(raw.get("labels"), "labels", _LABEL)
    annotations = _strings(raw.get("annotations"), "annotations", _LABEL)
    for key, text in {**labels, **annotations}.items():
        try:
            check_template(text)
        except TemplateError as exc:
            raise ValueError(f"template of {key}: {exc}") from None
    return Rule(
        expr=str(expr),
        alert=alert,
        record=record,
        for_s=_duration(raw.get("for"), "for"),
        keep_firing_for_s=_duration(raw.get("keep_firing_for"), "keep_firing_for"),
        labels=labels,
        annotations=annotations,
        line=line,
    )


def parse_rule_groups(text: str, path: str) -> tuple[list[RuleGroup], list[RuleFileError]]:
    """Every group that loads, and every problem found (all of them, not just the first)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark is not None else None
        return [], [RuleFileError(f"invalid YAML: {problem}", path=path, line=line)]
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        return [], [RuleFileError("expected a mapping with a 'groups' list", path=path, line=1)]
    lines = _rule_lines(text)
    groups: list[RuleGroup] = []
    errors: list[RuleFileError] = []
    seen: set[str] = set()
    for gi, raw_group in enumerate(data["groups"]):
        glines = lines[gi] if gi < len(lines) else []
        if not isinstance(raw_group, dict) or not raw_group.get("name"):
            errors.append(RuleFileError(f"group {gi + 1}: needs a name", path=path))
            continue
        name = str(raw_group["name"])
        unknown = set(raw_group) - _GROUP_KEYS
        if unknown:
            errors.append(
                RuleFileError(
                    f"group {name!r}: unknown key(s) {sorted(map(str, unknown))}", path=path
                )
            )
        if name in seen:
            errors.append(RuleFileError(f"group {name!r}: defined twice", path=path))
        seen.add(name)
        rules: list[Rule] = []
        for ri, raw_rule in enumerate(raw_group.get("rules") or []):
            line = glines[ri] if ri < len(glines) else 0
            label = ""
            if isinstance(raw_rule, dict):
                label = str(raw_rule.get("alert") or raw_rule.get("record") or f"#{ri + 1}")
            try:
                rules.append(_rule(raw_rule, line))
            except ValueError as exc:
                errors.append(RuleFileError(str(exc), path=path, line=line or None, rule=label))
        interval = None
        if raw_group.get("interval") is not None:
            try:
                interval = parse_duration(raw_group["interval"])
            except ValueError as exc:
                errors.append(RuleFileError(f"group {name!r}: interval: {exc}", path=path))
        groups.append(RuleGroup(name=name, rules=rules, interval_s=interval, path=path))
    return groups, errors


def check_rule_file(path: Path) -> list[RuleFileError]:
    """Every problem in one rule file (empty when it is valid)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [RuleFileError(f"cannot read: {exc}", path=str(path))]
    return parse_rule_groups(text, str(path))[1]


def load_rule_file(path: Path) -> list[RuleGroup]:
    """The groups of one rule file; raises the first ``RuleFileError`` when it has problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(f"cannot read: {exc}", path=str(path)) from None
    groups, errors = parse_rule_groups(text, str(path))
    if errors:
        raise errors[0]
    return groups
