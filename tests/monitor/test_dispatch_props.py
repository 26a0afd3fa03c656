"""Properties of the dispatcher over random histories: never notify a silenced alert, never
repeat an unchanged group before repeat_interval, and always notify a live, unsilenced alert."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.monitor import AmAlert, Dispatcher, Silence
from gyroscope.monitor._config import AlertingConfig

T0 = 1_700_000_000.0
REPEAT = 300.0

ops = st.lists(
    st.tuples(
        st.sampled_from(["fire", "resolve", "silence", "tick"]),
        st.integers(0, 3),  # instance
        st.floats(0.1, 40.0),  # time step
        st.floats(1.0, 120.0),  # silence length
    ),
    max_size=60,
)


def labels(i: int) -> dict[str, str]:
    return {"alertname": "Down", "instance": f"i{i}"}


@settings(max_examples=150, deadline=None)
@given(ops)
def test_dispatcher_properties(history: list[tuple[str, int, float, float]]) -> None:
    d = Dispatcher(
        AlertingConfig.model_validate(
            {
                "route": {
                    "receiver": "default",
                    "group_by": ["alertname"],
                    "group_wait": 5,
                    "group_interval": 30,
                    "repeat_interval": REPEAT,
                },
                "flap_threshold": 1000,
            }
        )
    )
    now = T0
    last_sent: dict[str, tuple[float, frozenset[tuple[str, str]]]] = {}
    told: dict[str, str] = {}  # what the receiver last heard about each alert

    def check(notes: list[Any]) -> None:
        for note in notes:
            state = frozenset((a["fingerprint"], a["status"]) for a in note.payload["alerts"])
            previous = last_sent.get(note.group_key)
            if previous is not None and previous[1] == state:
                assert now - previous[0] >= REPEAT, "an unchanged group was repeated early"
            last_sent[note.group_key] = (now, state)
            for alert in note.payload["alerts"]:
                told[alert["fingerprint"]] = alert["status"]
                if alert["status"] == "firing":
                    live = d.alerts[alert["fingerprint"]]
                    assert not d.silenced_by(live, now), "a silenced alert was notified"
                    assert not live.resolved(now)

    for op, i, step, length in history:
        now += step
        if op == "fire":
            d.put([AmAlert(labels=labels(i), starts_at=now, ends_at=now + 1e6)], now)
        elif op == "resolve":
            d.put([AmAlert(labels=labels(i), starts_at=now, ends_at=now)], now)
        elif op == "silence":
            d.add_silence(Silence.create([f'instance="i{i}"'], starts_at=now, ends_at=now + length))
        check(d.tick(now))
    now += 200.0  # every silence has ended, every group_wait and group_interval has passed
    check(d.tick(now))
    for fp, alert in d.alerts.items():
        if not alert.resolved(now):
            assert told.get(fp) == "firing", "the receiver does not know a live alert fires"
    for fp, status in told.items():
        if status == "firing":
            assert fp in d.alerts and not d.alerts[fp].resolved(now), "a resolution was never sent"
