"""Routing, grouping, silences, inhibition, flapping, acknowledgement and escalation; time is an
argument everywhere, so nothing sleeps."""

from __future__ import annotations

from typing import Any

from gyroscope.monitor import AmAlert, Dispatcher, Silence
from gyroscope.monitor._config import AlertingConfig

T0 = 1_700_000_000.0


def dispatcher(**route: Any) -> Dispatcher:
    cfg: dict[str, Any] = {
        "route": {
            "receiver": "default",
            "group_by": ["alertname"],
            "group_wait": 10,
            "group_interval": 60,
            "repeat_interval": 3600,
            **route,
        },
        "receivers": [{"name": n} for n in ("default", "pager", "db-team", "boss")],
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["instance"],
            }
        ],
        "flap_threshold": 4,
        "flap_window": 300,
    }
    return Dispatcher(AlertingConfig.model_validate(cfg))


def fire(d: Dispatcher, now: float, **labels: str) -> AmAlert:
    alert = AmAlert(labels={"alertname": "Down", **labels}, starts_at=now, ends_at=now + 240)
    d.put([alert], now)
    return alert


def resolve(d: Dispatcher, now: float, **labels: str) -> None:
    d.put([AmAlert(labels={"alertname": "Down", **labels}, starts_at=now - 1, ends_at=now)], now)


def names(notes: list[Any]) -> list[list[tuple[str, str]]]:
    return [
        [(a["labels"].get("instance", ""), a["status"]) for a in n.payload["alerts"]] for n in notes
    ]


def test_group_wait_then_one_message_per_group() -> None:
    d = dispatcher()
    fire(d, T0, instance="a")
    fire(d, T0 + 1, instance="b")
    assert d.tick(T0 + 5) == []
    notes = d.tick(T0 + 10)
    assert names(notes) == [[("a", "firing"), ("b", "firing")]]
    assert notes[0].payload["groupLabels"] == {"alertname": "Down"}
    assert notes[0].payload["commonLabels"] == {"alertname": "Down"}


def test_duplicate_alerts_are_one_alert() -> None:
    d = dispatcher(group_wait=0)
    for i in range(5):
        fire(d, T0 + i, instance="a")
    assert names(d.tick(T0 + 5)) == [[("a", "firing")]]
    assert d.tick(T0 + 6) == []


def test_alert_joining_an_existing_group_is_sent_at_once() -> None:
    d = dispatcher()
    fire(d, T0, instance="a")
    assert len(d.tick(T0 + 10)) == 1
    fire(d, T0 + 12, instance="b")
    notes = d.tick(T0 + 12)  # not after group_interval (60 s): now
    assert names(notes) == [[("a", "firing"), ("b", "firing")]]


def test_resolution_waits_for_group_interval_and_repeat_interval_repeats() -> None:
    d = dispatcher(group_wait=0)
    fire(d, T0, instance="a")
    assert len(d.tick(T0)) == 1
    resolve(d, T0 + 5, instance="a")
    assert d.tick(T0 + 30) == []
    assert names(d.tick(T0 + 60)) == [[("a", "resolved")]]
    assert d.tick(T0 + 61) == []
    fire(d, T0 + 100, instance="b")
    assert len(d.tick(T0 + 100)) == 1
    fire(d, T0 + 2000, instance="b")  # still firing, refreshed by the rule
    assert d.tick(T0 + 2000) == []
    fire(d, T0 + 3700, instance="b")
    assert names(d.tick(T0 + 3700)) == [[("b", "firing")]]


def test_routing_tree_first_match_and_continue() -> None:
    d = dispatcher(
        group_wait=0,
        routes=[
            {"matchers": ['team="db"'], "receiver": "db-team", "continue": True},
            {"matchers": ['severity=~"critical|page"'], "receiver": "pager"},
            {"matchers": ['severity="page"'], "receiver": "boss"},
        ],
    )
    fire(d, T0, instance="a", team="db", severity="page")
    fire(d, T0, instance="b", severity="page")
    fire(d, T0, instance="c")
    got = sorted((n.receiver, tuple(i for i, _ in names([n])[0])) for n in d.tick(T0))
    assert got == [("db-team", ("a",)), ("default", ("c",)), ("pager", ("a", "b"))]


def test_silence_one_off_and_expiry() -> None:
    d = dispatcher(group_wait=0)
    silence = Silence.create(['instance="a"'], starts_at=T0, ends_at=T0 + 100)
    d.add_silence(silence)
    fire(d, T0, instance="a")
    assert d.tick(T0) == []
    fire(d, T0 + 50, instance="a")
    assert d.tick(T0 + 50) == []
    d.expire_silence(silence.id, T0 + 60)
    fire(d, T0 + 61, instance="a")
    assert names(d.tick(T0 + 61)) == [[("a", "firing")]]


def test_recurring_silence_only_inside_its_window() -> None:
    d = dispatcher(group_wait=0)
    saturday_23h = 1700953200.0  # 2023-11-25 23:00 UTC, a Saturday
    d.add_silence(
        Silence.create(
            ['alertname="Down"'], starts_at=0, ends_at=2e9, weekdays=[5], start="22:00", end="06:00"
        )
    )
    fire(d, saturday_23h, instance="a")
    assert d.tick(saturday_23h) == []
    sunday_5h = saturday_23h + 6 * 3600  # still inside the window that began on Saturday
    fire(d, sunday_5h, instance="a")
    assert d.tick(sunday_5h) == []
    sunday_7h = saturday_23h + 8 * 3600
    fire(d, sunday_7h, instance="a")
    assert names(d.tick(sunday_7h)) == [[("a", "firing")]]


def test_inhibition_needs_equal_labels() -> None:
    d = dispatcher(group_wait=0, group_by=["instance"])
    fire(d, T0, instance="a", severity="critical")
    fire(d, T0, instance="a", severity="warning")
    fire(d, T0, instance="b", severity="warning")
    got = sorted(str(n.payload["alerts"][0]["labels"]) for n in d.tick(T0))
    assert len(got) == 2 and all("critical" in g or "'b'" in g for g in got)


def test_flapping_alert_is_held_firing_until_quiet() -> None:
    d = dispatcher(group_wait=0, group_interval=10)
    sent: list[list[tuple[str, str]]] = []
    t = T0
    for _ in range(4):  # firing, resolved, firing, resolved... every 20 s
        fire(d, t, instance="a")
        sent += names(d.tick(t))
        resolve(d, t + 10, instance="a")
        sent += names(d.tick(t + 20))
        t += 30
    assert sent == [[("a", "firing")], [("a", "resolved")], [("a", "firing")]]
    assert d.tick(t + 100) == []  # still flapping: held
    assert names(d.tick(t + 400)) == [[("a", "resolved")]]


def test_acknowledged_alert_is_not_repeated_or_escalated() -> None:
    d = dispatcher(group_wait=0, escalate=[{"after": 600, "receiver": "boss"}])
    a = fire(d, T0, instance="a")
    fire(d, T0, instance="b")
    assert len(d.tick(T0)) == 1
    assert d.acknowledge([a.fp], by="alice", comment="on it", now=T0 + 5) == [a.fp]
    sent: list[tuple[float, str]] = []
    for t in range(int(T0) + 60, int(T0) + 3601, 60):
        fire(d, t, instance="a")
        fire(d, t, instance="b")
        sent += [(t - T0, n.receiver) for n in d.tick(t) for _ in n.payload["alerts"]]
    # b escalates once after 600 s; the repeat after 3600 s carries both; a never escalates
    assert sent == [(600, "boss"), (3600, "default"), (3600, "default")]
    events = [e["event"] for e in d.drain_events()]
    assert "acknowledged" in events and "escalated" in events


def test_ack_clears_when_the_alert_fires_again() -> None:
    d = dispatcher(group_wait=0)
    a = fire(d, T0, instance="a")
    d.tick(T0)
    d.acknowledge([a.fp], by="x", comment="", now=T0)
    resolve(d, T0 + 10, instance="a")
    d.tick(T0 + 100)
    fire(d, T0 + 200, instance="a")
    assert a.fp not in d.acks
    assert names(d.tick(T0 + 200)) == [[("a", "firing")]]


def test_pushed_alert_without_end_resolves_after_resolve_timeout() -> None:
    d = dispatcher(group_wait=0)
    d.put([AmAlert(labels={"alertname": "Down", "instance": "p"}, starts_at=T0)], T0)
    assert len(d.tick(T0)) == 1
    assert names(d.tick(T0 + 301)) == [[("p", "resolved")]]
