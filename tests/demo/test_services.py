"""The demo server as a Service the daemon composes."""

from __future__ import annotations

from pathlib import Path

import gyroscope.demo
from gyroscope.demo import DemoConfig, DemoServer, DemoServerConfig, build_services
from gyroscope.platform import parse_config


def test_public_api_is_exported() -> None:
    assert set(gyroscope.demo.__all__) >= {
        "DemoServer", "DemoServerConfig", "DemoConfig", "Faults", "build_services"
    }  # fmt: skip
    for name in gyroscope.demo.__all__:
        assert getattr(gyroscope.demo, name) is not None


def test_build_services_one_spec_per_replica(tmp_path: Path) -> None:
    section = DemoConfig(
        replicas=[
            DemoServerConfig(name="a", listen="127.0.0.1:0"),
            DemoServerConfig(name="b", listen="127.0.0.1:0", slots=2, faults={"latency_ms": 5}),
        ]
    )
    specs = build_services(section, tmp_path)
    assert [s.name for s in specs] == ["demo/a", "demo/b"]
    built = [spec.factory() for spec in specs]
    assert all(isinstance(s, DemoServer) for s in built)
    assert [s.config.name for s in built] == ["a", "b"]  # each factory kept its own config
    assert built[1].faults.latency_ms == 5
    assert specs[1].config == section.replicas[1]
    assert not list(tmp_path.iterdir())  # building does no I/O


def test_yaml_section_validates_faults_and_knobs() -> None:
    cfg = parse_config(
        {"demo": {"replicas": [{"name": "r", "step_ms": 5, "faults": {"error_rate": 0.2}}]}}
    )
    assert cfg.demo is not None and cfg.demo.replicas[0].faults.error_rate == 0.2


async def test_lifecycle_and_health() -> None:
    server = DemoServer(DemoServerConfig(name="life", listen="127.0.0.1:0", seed=1))
    assert server.health().status == "down"
    await server.start()
    try:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        health = server.health()
        assert health.status == "ok" and health.name == "demo/life"
        assert health.data["slots"] == 64
        server.set_faults(latency_ms=10)
        assert server.health().status == "degraded"
    finally:
        await server.stop(grace=1.0)
        await server.stop(grace=1.0)  # safe twice
    assert server.health().status == "down"


async def test_demo_tests_run_on_uvloop() -> None:
    import asyncio

    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
