"""Evaluating rules: alert state (inactive -> pending -> firing -> resolved) and recording rules.

An alert is pending from the first evaluation that returns its series and fires once it has been
returned continuously for ``for``. With ``keep_firing_for`` a firing alert whose series vanished
keeps firing that long. Resolved alerts are reported for 15 minutes (so a receiver that missed one
message still hears the resolution), like Prometheus. Time is passed in (seconds), never read.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from gyroscope.monitor._errors import PromQLError
from gyroscope.monitor._exposition import Labels
from gyroscope.monitor._promql import Engine
from gyroscope.monitor._rulefile import Rule, RuleGroup
from gyroscope.monitor._template import TemplateError, render

__all__ = ["ActiveAlert", "GroupEvaluator", "fingerprint"]

log = logging.getLogger(__name__)

RESOLVED_RETENTION = 900.0


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id of an alert's label set (16 hex digits)."""
    text = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class ActiveAlert:
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # pending | firing | resolved
    active_at: float
    value: float
    fired_at: float | None = None
    resolved_at: float | None = None
    missing_since: float | None = None
    rule: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "state": self.state,
            "activeAt": self.active_at,
            "value": repr(self.value),
            "fingerprint": fingerprint(self.labels),
        }


@dataclass(slots=True)
class _RuleState:
    rule: Rule
    active: dict[str, ActiveAlert] = field(default_factory=dict)
    health: str = "unknown"
    last_error: str = ""


class GroupEvaluator:
    """Evaluates one rule group; ``evaluate(t)`` returns recorded samples and alerts to send."""

    def __init__(
        self, group: RuleGroup, engine: Engine, external_labels: dict[str, str] | None = None
    ) -> None:
        self.group = group
        self.engine = engine
        self.external = external_labels or {}
        self.rules = [_RuleState(rule) for rule in group.rules]

    def restore(self, t: float) -> int:
        """Bring back pending/firing alerts from ``ALERTS_FOR_STATE`` (written every evaluation),
        so a restart does not make an alert wait its whole ``for`` again. Returns how many."""
        restored = 0
        for state in self.rules:
            if not state.rule.alert:
                continue
            query = f'ALERTS_FOR_STATE{{alertname="{state.rule.alert}"}}'
            try:
                found = self.engine.instant(query, t)
            except PromQLError:
                continue
            for labels, active_at in found if isinstance(found, list) else []:  # type: ignore[misc]
                alert_labels = {k: v for k, v in labels if k != "__name__"}
                fp = fingerprint(alert_labels)
                state.active[fp] = ActiveAlert(
                    alert_labels,
                    {},
                    "pending",
                    float(active_at),
                    float("nan"),
                    rule=state.rule.alert,
                )
                restored += 1
        return restored

    def evaluate(self, t: float) -> tuple[list[tuple[Labels, float]], list[ActiveAlert]]:
        recorded: list[tuple[Labels, float]] = []
        for state in self.rules:
            try:
                value = self.engine.instant(state.rule.expr, t)
            except PromQLError as exc:
                state.health, state.last_error = "err", str(exc)
                log.warning("rule %s in group %s: %s", state.rule.name, self.group.name, exc)
                continue
            vector = [((), value)] if isinstance(value, float) else value
            if not isinstance(vector, list):
                state.health, state.last_error = "err", "the expression is not a vector"
                continue
            state.health, state.last_error = "ok", ""
            if state.rule.record:
                recorded += self._record(state.rule, vector)  # type: ignore[arg-type]
            else:
                self._alert(state, vector, t)  # type: ignore[arg-type]
        return recorded, self.alerts()

    def _record(self, rule: Rule, vector: list[tuple[Labels, float]]) -> list[tuple[Labels, float]]:
        out = []
        for labels, value in vector:
            merged = {k: v for k, v in labels if k != "__name__"}
            merged.update(rule.labels)
            merged["__name__"] = rule.record
            out.append((tuple(sorted(merged.items())), value))
        return out

    def _alert(self, state: _RuleState, vector: list[tuple[Labels, float]], t: float) -> None:
        rule = state.rule
        seen: set[str] = set()
        for labels, value in vector:
            base = {k: v for k, v in labels if k != "__name__"}
            try:
                extra = {k: render(v, base, value, self.external) for k, v in rule.labels.items()}
                notes = {
                    k: render(v, base, value, self.external) for k, v in rule.annotations.items()
                }
            except TemplateError as exc:
                state.health, state.last_error = "err", str(exc)
                continue
            alert_labels = {**base, **extra, "alertname": rule.alert}
            fp = fingerprint(alert_labels)
            seen.add(fp)
            current = state.active.get(fp)
            if current is None or current.state == "resolved":
                current = ActiveAlert(alert_labels, notes, "pending", t, value, rule=rule.alert)
                state.active[fp] = current
            current.value, current.annotations, current.missing_since = value, notes, None
            if current.state == "pending" and t - current.active_at >= rule.for_s:
                current.state, current.fired_at = "firing", t
        for fp, alert in list(state.active.items()):
            if fp in seen:
                continue
            if alert.state == "pending":
                del state.active[fp]
            elif alert.state == "firing":
                if alert.missing_since is None:
                    alert.missing_since = t
                if t - alert.missing_since >= rule.keep_firing_for_s:
                    alert.state, alert.resolved_at = "resolved", t
            elif alert.resolved_at is not None and t - alert.resolved_at > RESOLVED_RETENTION:
                del state.active[fp]

    def alerts(self) -> list[ActiveAlert]:
        return [a for s in self.rules for a in s.active.values()]

    def as_dict(self) -> dict[str, object]:
        """The group as Prometheus's /api/v1/rules shows it."""
        rules = []
        for state in self.rules:
            rule = state.rule
            item: dict[str, object] = {
                "name": rule.name,
                "query": rule.expr,
                "labels": rule.labels,
                "health": state.health,
                "lastError": state.last_error,
                "type": "alerting" if rule.alert else "recording",
            }
            if rule.alert:
                active = [a for a in state.active.values() if a.state != "resolved"]
                item.update(
                    duration=rule.for_s,
                    keepFiringFor=rule.keep_firing_for_s,
                    annotations=rule.annotations,
                    alerts=[a.as_dict() for a in active],
                    state="firing"
                    if any(a.state == "firing" for a in active)
                    else "pending"
                    if active
                    else "inactive",
                )
            rules.append(item)
        return {
            "name": self.group.name,
            "file": self.group.path,
            "rules": rules,
            "interval": self.group.interval_s,
        }
