"""Pure parts: fault values, the token bucket, the process-fault schedule, config, exports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gyroscope.chaos as chaos
from gyroscope.chaos import (
    ChaosConfig,
    FaultProxy,
    Faults,
    build_services,
    parse_assignments,
)
from gyroscope.chaos._bucket import TokenBucket
from gyroscope.chaos._schedule import Progress, Schedule, next_event, parse_duration
from gyroscope.core import validate_config
from gyroscope.errors import ChaosError, ConfigError, ProxyError
from gyroscope.platform import parse_config
from gyroscope.testing import FakeClock


def test_exports_do_not_drift() -> None:
    assert sorted(chaos.__all__) == sorted(
        name for name in dir(chaos) if not name.startswith("_") and name not in {"annotations"}
    )
    for name in (
        "FaultProxy",
        "Faults",
        "ProcessFault",
        "kill",
        "pause",
        "resume",
        "ManagedProcess",
        "build_services",
    ):
        assert name in chaos.__all__


def test_faults_default_to_none_and_round_trip_json() -> None:
    assert not Faults().active()
    faults = Faults(latency_ms=5, direction="upstream", blackhole=True)
    assert Faults.model_validate_json(faults.model_dump_json()) == faults
    assert faults.describe() == "latency_ms=5 blackhole=True direction=upstream"
    assert faults.applies_to("upstream") and not faults.applies_to("downstream")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"latency_ms": -1},
            "faults: latency_ms: Input should be greater than or equal to 0, got -1",
        ),
        ({"bandwidth_bps": "lots"}, "faults: bandwidth_bps: Input should be a valid integer"),
        (
            {"direction": "up"},
            "faults: direction: Input should be 'both', 'upstream' or 'downstream'",
        ),
        ({"latency": 1}, "faults: unknown field 'latency' (known fields: latency_ms, jitter_ms"),
    ],
)
def test_bad_faults_are_one_line(data: dict[str, object], message: str) -> None:
    with pytest.raises(ProxyError) as info:
        Faults.parse(data)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_parse_merges_over_base() -> None:
    base = Faults(latency_ms=10, reset=True)
    assert Faults.parse({"reset": False}, base=base) == Faults(latency_ms=10)


def test_assignments_parse_json_values_and_bare_words() -> None:
    assert parse_assignments(["latency_ms=100", "blackhole=true", "direction=upstream"]) == {
        "latency_ms": 100,
        "blackhole": True,
        "direction": "upstream",
    }
    with pytest.raises(ProxyError, match="expected key=value"):
        parse_assignments(["=1"])


def test_token_bucket_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1000, clock=clock)
    assert bucket.burst == 50
    assert bucket.take(500) == 50  # only the burst at first
    assert bucket.take(1) == 0
    assert bucket.wait(10) == pytest.approx(0.01)
    clock.advance(0.02)
    assert bucket.take(100) == 20
    clock.advance(10)
    assert bucket.take(1000) == 50  # never more than one burst, however long it waited
    bucket.set_rate(100)
    assert bucket.burst == 5


@given(
    rate=st.integers(1, 10_000_000),
    steps=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 1 << 20)), max_size=40),
)
def test_token_bucket_never_exceeds_rate_plus_burst(
    rate: int, steps: list[tuple[float, int]]
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=rate, clock=clock)
    taken = 0
    for dt, wanted in steps:
        clock.advance(dt)
        taken += bucket.take(wanted)
        assert taken <= bucket.burst + rate * clock.monotonic() + 1e-6


def test_durations() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("10s") == parse_duration("10") == 10.0
    assert parse_duration("1h") == 3600.0
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration("-1s")


def test_schedule_picks_the_earliest_fault() -> None:
    start = Progress(started=0.0, last_restart=0.0, last_pause=0.0)
    assert next_event(Schedule(), start) is None
    both = Schedule(restart_every=10, pause_every=4, pause_for=1)
    assert next_event(both, start) == (4, "pause")
    assert next_event(both, Progress(started=0, last_restart=0, last_pause=8)) == (10, "restart")
    assert next_event(Schedule(restart_every=5, kill_after=5), start) == (5, "kill")
    with pytest.raises(ChaosError, match="--pause-for"):
        Schedule(pause_every=1, pause_for=2)
    with pytest.raises(ChaosError, match="--restart-every must be more than 0"):
        Schedule(restart_every=0)


def test_config_and_build_services() -> None:
    cfg = parse_config(
        {
            "chaos": {
                "proxies": [
                    {
                        "name": "redis",
                        "listen": "127.0.0.1:0",
                        "upstream": "127.0.0.1:16379",
                        "control": "127.0.0.1:0",
                        "faults": {"latency_ms": 20},
                    },
                ]
            }
        }
    )
    assert cfg.chaos is not None
    specs = build_services(cfg.chaos, None)
    assert [s.name for s in specs] == ["chaos/redis"]
    service = specs[0].factory()
    assert isinstance(service, FaultProxy)
    assert service.faults.latency_ms == 20 and service.health().status == "down"


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ({"name": "a", "listen": "x", "upstream": "127.0.0.1:1"}, "chaos.proxies[0].listen"),
        (
            {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1", "faults": {"lag": 1}},
            "chaos.proxies[0].faults.lag: unknown key",
        ),
        (
            {
                "name": "a",
                "listen": "127.0.0.1:0",
                "upstream": "127.0.0.1:1",
                "control": "0.0.0.0:1",
            },
            "needs control_token",
        ),
    ],
)
def test_bad_config_names_the_key(proxy: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config({"chaos": {"proxies": [proxy]}})


def test_duplicate_proxy_names_rejected() -> None:
    p = {"name": "a", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}
    with pytest.raises(ConfigError, match="repeated: a"):
        validate_config(ChaosConfig, {"proxies": [p, p]})


def test_constructor_checks_addresses_without_io() -> None:
    with pytest.raises(ProxyError, match="upstream: expected host:port"):
        FaultProxy(upstream="localhost")
    with pytest.raises(ProxyError, match="needs a token"):
        FaultProxy(upstream="127.0.0.1:1", control="10.0.0.1:8474")


@pytest.mark.parametrize(
    "module",
    [
        "_bucket",
        "_client",
        "_config",
        "_faults",
        "_managed",
        "_process",
        "_proxy",
        "_schedule",
        "_services",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"gyroscope.chaos.{module}"))
    assert result.failed == 0
