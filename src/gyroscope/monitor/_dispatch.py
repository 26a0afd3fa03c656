"""Alert handling without I/O: grouping, de-duplication, silences, inhibition, flap hysteresis,
acknowledgement, escalation and repeat intervals. Time is an argument; ``tick(now)`` returns the
notifications that are due, and ``drain_events()`` the history to persist.

Differences from Alertmanager, on purpose:
- an alert that joins a group that has already notified is sent at the next tick, not after
  ``group_interval`` (a new problem is news now); resolutions still wait for ``group_interval``;
- a flapping alert (``flap_threshold`` state changes within ``flap_window``) is held firing until
  it has been quiet for the window, so receivers get one firing and one resolved message;
- an acknowledged alert is not repeated and not escalated until it resolves.

>>> from gyroscope.monitor._config import AlertingConfig
>>> d = Dispatcher(AlertingConfig.model_validate({"route": {"receiver": "default", "group_wait": 0}}))
>>> d.put([AmAlert.firing({"alertname": "Down"}, now=100.0)], now=100.0)
>>> [n.payload["status"] for n in d.tick(100.0)], d.tick(101.0)
(['firing'], [])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gyroscope.monitor._config import AlertingConfig
from gyroscope.monitor._routing import Route, build_route
from gyroscope.monitor._ruleeval import fingerprint
from gyroscope.monitor._silences import LabelMatcher, Silence, matches_all, parse_matcher

__all__ = ["AmAlert", "Dispatcher", "Notification"]


def iso(t: float | None) -> str:
    if t is None:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True, kw_only=True)
class AmAlert:
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: float
    ends_at: float | None = None
    generator_url: str = ""
    updated_at: float = 0.0
    fp: str = ""

    def __post_init__(self) -> None:
        self.fp = self.fp or fingerprint(self.labels)

    @classmethod
    def firing(cls, labels: Mapping[str, str], *, now: float, **kw: Any) -> AmAlert:
        return cls(labels=dict(labels), starts_at=now, updated_at=now, **kw)

    def resolved(self, now: float) -> bool:
        return self.ends_at is not None and self.ends_at <= now

    def as_webhook(self, status: str) -> dict[str, Any]:
        return {
            "status": status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": iso(self.starts_at),
            "endsAt": iso(self.ends_at if status == "resolved" else None),
            "generatorURL": self.generator_url,
            "fingerprint": self.fp,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    receiver: str
    group_key: str
    payload: dict[str, Any]
    fingerprints: tuple[str, ...]


@dataclass(slots=True)
class _Group:
    route: Route
    labels: tuple[tuple[str, str], ...]
    created: float
    fps: set[str] = field(default_factory=set)
    notified: dict[str, str] = field(default_factory=dict)
    last_flush: float | None = None
    last_notify: float | None = None
    escalated: set[tuple[str, int]] = field(default_factory=set)

    @property
    def key(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.route.id}:{{{inner}}}"


@dataclass(frozen=True, slots=True)
class _Inhibit:
    source: tuple[LabelMatcher, ...]
    target: tuple[LabelMatcher, ...]
    equal: tuple[str, ...]


class Dispatcher:
    """The alert manager's brain. Not thread-safe; call from one event loop."""

    def __init__(self, config: AlertingConfig, *, external_url: str = "") -> None:
        self.config = config
        self.route = build_route(config.route)
        self.receivers = {r.name: r for r in config.receivers}
        self.external_url = external_url
        self.inhibits = [
            _Inhibit(
                tuple(map(parse_matcher, r.source_matchers)),
                tuple(map(parse_matcher, r.target_matchers)),
                tuple(r.equal),
            )
            for r in config.inhibit_rules
        ]
        self.alerts: dict[str, AmAlert] = {}
        self.groups: dict[str, _Group] = {}
        self.silences: dict[str, Silence] = {}
        self.acks: dict[str, dict[str, Any]] = {}
        self._status: dict[str, str] = {}
        self._changes: dict[str, list[float]] = {}
        self._events: list[dict[str, Any]] = []
        self._restored: dict[str, dict[str, Any]] = {}
        self._dropped: list[str] = []

    # -- input -----------------------------------------------------------------------------------
    def put(self, alerts: Iterable[AmAlert], now: float) -> None:
        """Receive alerts (from rules or pushed): de-duplicated by label fingerprint."""
        for alert in alerts:
            old = self.alerts.get(alert.fp)
            if old is not None and not old.resolved(now):
                alert.starts_at = min(old.starts_at, alert.starts_at)
            elif old is not None and not alert.resolved(now):
                self.acks.pop(alert.fp, None)  # a new episode needs a new acknowledgement
            if alert.ends_at is None:
                alert.ends_at = now + self.config.resolve_timeout
            alert.updated_at = now
            self.alerts[alert.fp] = alert
            for route in self.route.match(alert.labels):
                glabels = route.group_key(alert.labels)
                group = _Group(route, glabels, now)
                if group.key not in self.groups:
                    self._seed(group)
                group = self.groups.setdefault(group.key, group)
                group.fps.add(alert.fp)
        self._track(now)

    # -- what survives a restart -------------------------------------------------------------------
    def restore_groups(self, saved: dict[str, dict[str, Any]]) -> None:
        """What each group last told its receiver (from ``group_state``), so that a restart does
        not notify again about alerts the receiver already knows."""
        self._restored = dict(saved)

    def _seed(self, group: _Group) -> None:
        saved = self._restored.pop(group.key, None)
        if saved is not None:
            group.notified = dict(saved["notified"])
            group.last_flush = group.last_notify = float(saved["last_notify"])

    def group_state(self, key: str) -> dict[str, Any] | None:
        group = self.groups.get(key)
        if group is None or group.last_notify is None:
            return None
        return {"notified": dict(group.notified), "last_notify": group.last_notify}

    def drain_dropped_groups(self) -> list[str]:
        dropped, self._dropped = self._dropped, []
        return dropped

    def _track(self, now: float) -> None:
        for fp, alert in self.alerts.items():
            status = "resolved" if alert.resolved(now) else "firing"
            if self._status.get(fp) != status:
                self._status[fp] = status
                self._changes.setdefault(fp, []).append(now)
                self._event(now, status, alert)

    def _event(self, now: float, kind: str, alert: AmAlert, **detail: Any) -> None:
        self._events.append(
            {
                "time": now,
                "event": kind,
                "fingerprint": alert.fp,
                "labels": alert.labels,
                "annotations": alert.annotations,
                **detail,
            }
        )

    def drain_events(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    # -- operator actions ------------------------------------------------------------------------
    def add_silence(self, silence: Silence) -> None:
        self.silences[silence.id] = silence

    def expire_silence(self, silence_id: str, now: float) -> bool:
        silence = self.silences.get(silence_id)
        if silence is None:
            return False
        self.silences[silence_id] = Silence(
            **{**_fields(silence), "ends_at": min(now, silence.ends_at)}
        )
        return True

    def acknowledge(self, fps: Iterable[str], *, by: str, comment: str, now: float) -> list[str]:
        done = []
        for fp in fps:
            alert = self.alerts.get(fp)
            if alert is not None and not alert.resolved(now):
                self.acks[fp] = {"by": by, "comment": comment, "at": now}
                self._event(now, "acknowledged", alert, by=by, comment=comment)
                done.append(fp)
        return done

    # -- state ----------------------------------------------------------------------------------
    def silenced_by(self, alert: AmAlert, now: float) -> list[str]:
        return [s.id for s in self.silences.values() if s.silences(alert.labels, now)]

    def inhibited(self, alert: AmAlert, now: float) -> bool:
        for rule in self.inhibits:
            if not matches_all(rule.target, alert.labels):
                continue
            for src in self.alerts.values():
                if (
                    src.fp == alert.fp
                    or src.resolved(now)
                    or not matches_all(rule.source, src.labels)
                ):
                    continue
                if all(src.labels.get(n, "") == alert.labels.get(n, "") for n in rule.equal):
                    return True
        return False

    def flapping(self, fp: str, now: float) -> bool:
        window = self.config.flap_window
        recent = [t for t in self._changes.get(fp, []) if now - t < window]
        self._changes[fp] = recent
        return len(recent) >= self.config.flap_threshold

    def _effective(self, alert: AmAlert, now: float, group: _Group) -> str:
        if not alert.resolved(now):
            return "firing"
        held = group.notified.get(alert.fp) == "firing" and self.flapping(alert.fp, now)
        return "firing" if held else "resolved"

    # -- the clock tick -------------------------------------------------------------------------
    def tick(self, now: float) -> list[Notification]:
        self._track(now)
        out: list[Notification] = []
        for key, group in list(self.groups.items()):
            out += self._group_tick(group, now)
            if not group.fps:
                del self.groups[key]
                self._dropped.append(key)
        return out

    def _group_tick(self, group: _Group, now: float) -> list[Notification]:
        route = group.route
        shown: list[tuple[AmAlert, str]] = []
        members = [(fp, self.alerts.get(fp)) for fp in list(group.fps)]
        for fp in [fp for fp, alert in members if alert is None]:
            group.fps.discard(fp)
        for _, alert in sorted(
            ((fp, a) for fp, a in members if a is not None),
            key=lambda m: sorted(m[1].labels.items()),
        ):
            if self.silenced_by(alert, now) or self.inhibited(alert, now):
                continue
            shown.append((alert, self._effective(alert, now, group)))
        new_firing = any(s == "firing" and group.notified.get(a.fp) != "firing" for a, s in shown)
        new_resolved = any(
            s == "resolved" and group.notified.get(a.fp) == "firing" for a, s in shown
        )
        unacked = any(s == "firing" and a.fp not in self.acks for a, s in shown)
        if group.last_flush is None:
            due = new_firing and now >= group.created + route.group_wait
        elif new_firing:
            due = True
        elif new_resolved:
            due = now >= group.last_flush + route.group_interval
        else:
            due = (
                unacked
                and group.last_notify is not None
                and now >= group.last_notify + route.repeat_interval
            )
        out = self._escalations(group, shown, now)
        if due:
            out.append(self._flush(group, shown, now))
        self._forget_resolved(group, now)
        return out

    def _flush(self, group: _Group, shown: list[tuple[AmAlert, str]], now: float) -> Notification:
        receiver = self.receivers.get(group.route.receiver)
        send_resolved = receiver.send_resolved if receiver is not None else True
        items = [
            (a, s)
            for a, s in shown
            if s == "firing" or (send_resolved and group.notified.get(a.fp) == "firing")
        ]
        for alert, status in shown:
            group.notified[alert.fp] = status
        group.last_flush = group.last_notify = now
        for alert, status in items:
            self._event(now, "notified", alert, receiver=group.route.receiver, status=status)
        return Notification(
            group.route.receiver,
            group.key,
            self._payload(group, group.route.receiver, items),
            tuple(a.fp for a, _ in items),
        )

    def _escalations(
        self, group: _Group, shown: list[tuple[AmAlert, str]], now: float
    ) -> list[Notification]:
        out = []
        for level, step in enumerate(group.route.escalate):
            due = [
                (a, s)
                for a, s in shown
                if s == "firing"
                and a.fp not in self.acks
                and (a.fp, level) not in group.escalated
                and now - a.starts_at >= step.after
            ]
            if not due:
                continue
            for alert, _ in due:
                group.escalated.add((alert.fp, level))
                self._event(now, "escalated", alert, receiver=step.receiver, level=level)
            key = f"{group.key}/escalation-{level}"
            out.append(
                Notification(
                    step.receiver,
                    key,
                    self._payload(group, step.receiver, due),
                    tuple(a.fp for a, _ in due),
                )
            )
        return out

    def _forget_resolved(self, group: _Group, now: float) -> None:
        for fp in list(group.fps):
            alert = self.alerts.get(fp)
            if alert is None or (alert.resolved(now) and group.notified.get(fp) != "firing"):
                group.fps.discard(fp)
                group.notified.pop(fp, None)
                group.escalated = {e for e in group.escalated if e[0] != fp}
        live = {fp for g in self.groups.values() for fp in g.fps}
        for fp in [fp for fp, a in self.alerts.items() if a.resolved(now) and fp not in live]:
            if now - (self.alerts[fp].ends_at or now) > self.config.flap_window:
                del self.alerts[fp]
                self.acks.pop(fp, None)

    def _payload(
        self, group: _Group, receiver: str, items: list[tuple[AmAlert, str]]
    ) -> dict[str, Any]:
        alerts = [a.as_webhook(s) for a, s in items]
        common_labels = _common([a.labels for a, _ in items])
        common_notes = _common([a.annotations for a, _ in items])
        return {
            "version": "4",
            "groupKey": group.key,
            "truncatedAlerts": 0,
            "status": "firing" if any(s == "firing" for _, s in items) else "resolved",
            "receiver": receiver,
            "groupLabels": dict(group.labels),
            "commonLabels": common_labels,
            "commonAnnotations": common_notes,
            "externalURL": self.external_url,
            "alerts": alerts,
        }

    def alert_view(self, alert: AmAlert, now: float) -> dict[str, Any]:
        """One alert as Alertmanager's v2 API lists it, plus acknowledgement and flapping."""
        silenced = self.silenced_by(alert, now)
        inhibited = self.inhibited(alert, now)
        state = "suppressed" if silenced or inhibited else "active"
        return {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": iso(alert.starts_at),
            "endsAt": iso(alert.ends_at),
            "updatedAt": iso(alert.updated_at),
            "generatorURL": alert.generator_url,
            "fingerprint": alert.fp,
            "receivers": [{"name": r.receiver} for r in self.route.match(alert.labels)],
            "status": {
                "state": "resolved" if alert.resolved(now) else state,
                "silencedBy": silenced,
                "inhibitedBy": ["inhibit_rule"] if inhibited else [],
            },
            "acknowledged": self.acks.get(alert.fp),
            "flapping": self.flapping(alert.fp, now),
        }


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _fields(silence: Silence) -> dict[str, Any]:
    return {f: getattr(silence, f) for f in silence.__dataclass_fields__}
