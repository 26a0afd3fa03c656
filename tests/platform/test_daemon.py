"""The daemon's lifecycle, embedded: start, health, reload (good and bad), stop, data-dir lock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from gyroscope.core import Health, Service, ServiceSpec
from gyroscope.errors import ConfigError, DataDirLockedError, ServiceError
from gyroscope.platform import Daemon, GyroConfig, load_config, parse_config

events: list[str] = []


class Recorder(Service):
    """A service that records its lifecycle; `fail` / `hang` come from the replica's model name."""

    def __init__(self, name: str, behaviour: str) -> None:
        super().__init__(name)
        self.behaviour = behaviour
        self.state = "new"
        self.registry = CollectorRegistry()
        Counter("recorder_starts", "Starts", registry=self.registry).inc()

    async def start(self) -> None:
        if self.behaviour == "fail":
            raise ServiceError("cannot start", service=self.name)
        self.state = "running"
        events.append(f"start {self.name}")

    async def stop(self, grace: float = 5.0) -> None:
        events.append(f"stop {self.name}")
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        self.state = "stopped"

    def health(self) -> Health:
        status = "down" if self.behaviour == "down" else "ok"
        return Health(name=self.name, status=status)

    async def reconfigure(self, config: Any) -> bool:
        if self.behaviour != "inplace":
            return False
        events.append(f"reconfigure {self.name} slots={config.slots}")
        return True


def build(config: GyroConfig, data_dir: Path) -> list[ServiceSpec]:
    replicas = config.demo.replicas if config.demo else []
    return [
        ServiceSpec(f"demo/{r.name}", r, lambda r=r: Recorder(f"demo/{r.name}", r.model))
        for r in replicas
    ]


def config_dict(*names: str, behaviour: dict[str, str] | None = None) -> dict[str, Any]:
    behaviour = behaviour or {}
    replicas = [
        {"name": n, "listen": "127.0.0.1:0", "model": behaviour.get(n, "ok")} for n in names
    ]
    return {
        "platform": {"listen": "127.0.0.1:0", "shutdown_grace": 0.5},
        "demo": {"replicas": replicas},
    }


def yaml_for(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data)


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    events.clear()


async def test_start_health_metrics_stop(tmp_path: Path) -> None:
    daemon = Daemon(parse_config(config_dict("a", "b")), data_dir=tmp_path, build=build)
    await daemon.start()
    try:
        assert events == ["start demo/a", "start demo/b"]
        async with httpx.AsyncClient(base_url=daemon.api_url or "") as client:
            health = (await client.get("/healthz")).json()
            assert health["status"] == "ok"
            assert [s["name"] for s in health["services"]] == ["demo/a", "demo/b"]
            metrics = (await client.get("/metrics")).text
            assert 'gyro_service_up{service="demo/a"} 1.0' in metrics
            own = await client.get("/metrics/demo/b")
            assert own.status_code == 200 and "recorder_starts_total 1.0" in own.text
            assert "recorder_starts" not in metrics
            assert (await client.get("/metrics/demo/zz")).status_code == 404
            assert (await client.get("/nope")).status_code == 404
            assert (await client.delete("/healthz")).status_code == 405
    finally:
        await daemon.stop()
    assert events[-2:] == ["stop demo/b", "stop demo/a"]


async def test_down_service_makes_healthz_503(tmp_path: Path) -> None:
    cfg = parse_config(config_dict("a", behaviour={"a": "down"}))
    daemon = Daemon(cfg, data_dir=tmp_path, build=build)
    await daemon.start()
    try:
        async with httpx.AsyncClient(base_url=daemon.api_url or "") as client:
            response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "down"
    finally:
        await daemon.stop()


async def test_bad_reload_keeps_running_services(tmp_path: Path) -> None:
    path = tmp_path / "gyroscope.yaml"
    path.write_text(yaml_for(config_dict("a", "b")))
    daemon = Daemon(load_config(path), data_dir=tmp_path / "data", config_path=path, build=build)
    await daemon.start()
    try:
        before = {name: svc for name, (_, svc) in daemon.running.items()}
        path.write_text("demo:\n  replicas:\n    - name: a\n      slots: lots\n")
        assert await daemon.reload() is False
        assert daemon.last_reload_error is not None
        assert "demo.replicas[0].slots" in daemon.last_reload_error
        after = {name: svc for name, (_, svc) in daemon.running.items()}
        assert after == before
        assert all(svc.state == "running" for svc in after.values())  # type: ignore[attr-defined]
        async with httpx.AsyncClient(base_url=daemon.api_url or "") as client:
            metrics = (await client.get("/metrics")).text
            assert 'gyro_reloads_total{result="rejected"} 1.0' in metrics
            assert (await client.post("/v1/reload")).status_code == 409
    finally:
        await daemon.stop()


async def test_good_reload_applies_a_diff(tmp_path: Path) -> None:
    path = tmp_path / "gyroscope.yaml"
    path.write_text(yaml_for(config_dict("a", "b", "c")))
    daemon = Daemon(load_config(path), data_dir=tmp_path / "data", config_path=path, build=build)
    await daemon.start()
    try:
        kept = daemon.running["demo/a"][1]
        changed = daemon.running["demo/b"][1]
        new = config_dict("a", "b", "d")
        new["demo"]["replicas"][1]["slots"] = 3
        path.write_text(yaml_for(new))
        events.clear()
        assert await daemon.reload() is True
        assert daemon.running["demo/a"][1] is kept
        assert daemon.running["demo/b"][1] is not changed
        assert set(daemon.running) == {"demo/a", "demo/b", "demo/d"}
        assert sorted(events) == ["start demo/b", "start demo/d", "stop demo/b", "stop demo/c"]
    finally:
        await daemon.stop()


async def test_a_service_that_can_reconfigure_in_place_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "gyroscope.yaml"
    data = config_dict("a", "b", behaviour={"a": "inplace"})
    path.write_text(yaml_for(data))
    daemon = Daemon(load_config(path), data_dir=tmp_path / "data", config_path=path, build=build)
    await daemon.start()
    try:
        a, b = daemon.running["demo/a"][1], daemon.running["demo/b"][1]
        for replica in data["demo"]["replicas"]:
            replica["slots"] = 2
        path.write_text(yaml_for(data))
        events.clear()
        assert await daemon.reload() is True
        assert daemon.running["demo/a"][1] is a
        assert daemon.running["demo/a"][0].config.slots == 2
        assert daemon.running["demo/b"][1] is not b
        assert sorted(events) == ["reconfigure demo/a slots=2", "start demo/b", "stop demo/b"]
    finally:
        await daemon.stop()


async def test_failed_start_stops_what_started_and_frees_the_data_dir(tmp_path: Path) -> None:
    cfg = parse_config(config_dict("a", "b", behaviour={"b": "fail"}))
    daemon = Daemon(cfg, data_dir=tmp_path, build=build)
    with pytest.raises(ServiceError, match="demo/b: cannot start"):
        await daemon.start()
    assert events == ["start demo/a", "stop demo/a"]
    again = Daemon(parse_config(config_dict("a")), data_dir=tmp_path, build=build)
    await again.start()
    await again.stop()


async def test_second_daemon_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = Daemon(parse_config(config_dict("a")), data_dir=tmp_path, build=build)
    await first.start()
    try:
        second = Daemon(parse_config(config_dict("b")), data_dir=tmp_path, build=build)
        with pytest.raises(DataDirLockedError, match="already in use"):
            await second.start()
    finally:
        await first.stop()


async def test_stop_is_bounded_when_a_service_hangs(tmp_path: Path) -> None:
    cfg = parse_config(config_dict("a", "b", behaviour={"a": "hang"}))
    daemon = Daemon(cfg, data_dir=tmp_path, build=build)
    await daemon.start()
    await asyncio.wait_for(daemon.stop(), timeout=10)
    assert "stop demo/a" in events and "stop demo/b" in events


async def test_token_is_required_when_configured(tmp_path: Path) -> None:
    data = config_dict("a")
    data["platform"]["token"] = "t0ken"
    daemon = Daemon(parse_config(data), data_dir=tmp_path, build=build)
    await daemon.start()
    try:
        async with httpx.AsyncClient(base_url=daemon.api_url or "") as client:
            assert (await client.get("/healthz")).status_code == 401
            bad = await client.get("/healthz", headers={"authorization": "Bearer nope"})
            assert bad.status_code == 401
            good = await client.get("/healthz", headers={"authorization": "Bearer t0ken"})
            assert good.status_code == 200
    finally:
        await daemon.stop()


def test_exposed_listener_needs_a_token() -> None:
    with pytest.raises(
        ConfigError, match=r"platform: listening on 0\.0\.0\.0 .* needs platform\.token"
    ):
        parse_config({"platform": {"listen": "0.0.0.0:7070"}})


def test_token_is_masked_when_dumped() -> None:
    cfg = parse_config({"platform": {"token": "t0ken"}})
    assert "t0ken" not in repr(cfg)
    assert "t0ken" not in str(cfg.model_dump(mode="json"))


def test_duplicate_proxy_names_are_a_config_error() -> None:
    proxy = {"name": "p", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"}
    with pytest.raises(ConfigError, match=r"chaos\.proxies: .*unique.*p"):
        parse_config({"chaos": {"proxies": [proxy, proxy]}})


def test_services_from_two_sections_must_not_share_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gyroscope.platform import _registry

    monkeypatch.setitem(_registry.SECTIONS, "chaos", "tests.platform.test_daemon:clashing_specs")
    monkeypatch.setitem(_registry.SECTIONS, "demo", "tests.platform.test_daemon:clashing_specs")
    cfg = parse_config(config_dict("a"))
    cfg = cfg.model_copy(update={"chaos": cfg.demo})
    with pytest.raises(ConfigError, match="two services are named 'x'"):
        _registry.service_specs(cfg, tmp_path)


def clashing_specs(section: object, data_dir: Path) -> list[ServiceSpec]:
    return [ServiceSpec("x", section, lambda: Recorder("x", "ok"))]


async def test_reload_rotates_the_api_token(tmp_path: Path) -> None:
    path = tmp_path / "gyroscope.yaml"
    data = config_dict("a")
    data["platform"]["token"] = "old-token"
    path.write_text(yaml_for(data))
    daemon = Daemon(load_config(path), data_dir=tmp_path / "data", config_path=path, build=build)
    await daemon.start()
    try:
        async with httpx.AsyncClient(base_url=daemon.api_url or "") as client:
            old = {"authorization": "Bearer old-token"}
            new = {"authorization": "Bearer new-token"}
            assert (await client.get("/v1/services", headers=old)).status_code == 200
            data["platform"]["token"] = "new-token"
            path.write_text(yaml_for(data))
            assert (await client.post("/v1/reload", headers=old)).status_code == 200
            assert (await client.get("/v1/services", headers=old)).status_code == 401
            assert (await client.get("/v1/services", headers=new)).status_code == 200
    finally:
        await daemon.stop()


async def test_reload_that_would_leave_an_exposed_api_without_token_is_rejected(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gyroscope.yaml"
    data = config_dict("a")
    data["platform"].update({"listen": "0.0.0.0:0", "token": "t0ken"})  # traffic stays on loopback
    path.write_text(yaml_for(data))
    daemon = Daemon(load_config(path), data_dir=tmp_path / "data", config_path=path, build=build)
    await daemon.start()
    try:
        # valid on its own (a loopback API needs no token), but the API cannot move on a reload
        data["platform"] = {"listen": "127.0.0.1:0", "shutdown_grace": 0.5}
        path.write_text(yaml_for(data))
        assert await daemon.reload() is False
        assert "platform.token removed" in (daemon.last_reload_error or "")
        port = (daemon.api_url or "").rsplit(":", 1)[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/v1/services")).status_code == 401
    finally:
        await daemon.stop()
