"""Bad input to the monitor is a 400 naming the problem (never a 500), and notifier URLs, which
carry secrets, are never shown: config check masks them, errors and logs show scheme://host/…"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gyroscope.cli import _main
from gyroscope.monitor import (
    DeliveryQueue,
    MonitorConfig,
    MonitorService,
    Notification,
    parse_weekdays,
)
from gyroscope.monitor._config import ReceiverConfig
from gyroscope.monitor._logship import LogShipper
from gyroscope.monitor._redact import safe_url
from gyroscope.testing import free_port
from tests.monitor.conftest import Receiver, wait_until
from tests.monitor.test_notify import note

SECRETS = ("HUNTER2", "T000", "B000", "SECRETPATH", "bob")


def gyro(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(_main.cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_config_check_masks_notifier_urls(tmp_path: Path) -> None:
    hook = "https://bob:HUNTER2@hooks.example.com/services/T000/B000/SECRETPATH"
    path = tmp_path / "g.yaml"
    path.write_text(
        "monitor:\n"
        "  alerting:\n"
        "    log_store_url: http://bob:HUNTER2@127.0.0.1:3100\n"
        "    receivers:\n"
        "      - name: default\n"
        f"        webhook: {{url: '{hook}'}}\n"
        f"        chat: {{url: '{hook}', channel: '#ops'}}\n"
    )
    code, out, err = gyro("config", "check", "--json", str(path))
    assert code == 0, err
    for secret in SECRETS:
        assert secret not in out
    receiver = json.loads(out)["monitor"]["alerting"]["receivers"][0]
    assert receiver["webhook"]["url"] == receiver["chat"]["url"] == "**********"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T000/B000/SECRETPATH", "https://hooks.slack.com/…"),
        ("http://bob:HUNTER2@127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://[::1]:9000/x?token=SECRETPATH", "http://[::1]:9000/…"),
        ("http://127.0.0.1:notaport/x", "<invalid URL>"),
    ],
)
def test_safe_url(url: str, shown: str) -> None:
    assert safe_url(url) == shown


async def test_delivery_errors_and_logs_hide_url_secrets(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.fail_first = 10**6  # the receiver answers 500 to everything
    port = receiver.server.url.rsplit(":", 1)[1]
    failing = f"http://bob:HUNTER2@127.0.0.1:{port}/services/T000/B000/SECRETPATH"
    dead = f"http://bob:HUNTER2@127.0.0.1:{free_port()}/services/T000/B000/SECRETPATH"
    receivers = [
        ReceiverConfig.model_validate({"name": "r", "webhook": {"url": failing}}),
        ReceiverConfig.model_validate({"name": "r2", "chat": {"url": dead}}),
    ]
    errors: list[str] = []
    with caplog.at_level(logging.WARNING, logger="gyroscope.monitor"):
        async with httpx.AsyncClient() as client:
            queue = DeliveryQueue(receivers, client, lambda n, i, err: errors.append(err or ""))
            task = asyncio.create_task(queue.run())
            try:
                queue.submit(note())
                queue.submit(Notification("r2", "g", note().payload, ("f",)))
                await wait_until(lambda: len(errors) >= 2, timeout=30, what="two failures")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    status = json.dumps(queue.status(), ensure_ascii=False)  # /api/v1/notifications
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (status, logged, *errors):
        for secret in SECRETS:
            assert secret not in text, text
    assert f"POST http://127.0.0.1:{port}/…: HTTP 500" in status
    assert "POST http://127.0.0.1:" in logged


async def test_log_shipper_warning_hides_credentials(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://bob:HUNTER2@127.0.0.1:{free_port()}"
    async with httpx.AsyncClient() as client:
        shipper = LogShipper(url, client)
        shipper.add([{"event": "firing", "time": 1.0}])
        with caplog.at_level(logging.WARNING, logger="gyroscope.monitor"):
            await shipper.flush()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "cannot ship alert events" in logged
    assert "HUNTER2" not in logged and "bob" not in logged


# -- the HTTP API --------------------------------------------------------------------------------


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    cfg = MonitorConfig.model_validate({"listen": "127.0.0.1:0", "host": {"enabled": False}})
    service = MonitorService(cfg, tmp_path / "data")
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            yield client
    finally:
        await service.stop(1.0)


SILENCE = {"matchers": [{"name": "job", "value": "x"}], "endsAt": "2030-01-01T00:00:00Z"}

BAD = [
    ("GET", "/api/v1/query?query=up&time=inf", None, "invalid parameter 'time'"),
    ("GET", "/api/v1/query?query=up&time=nan", None, "invalid parameter 'time'"),
    ("GET", "/api/v1/query?query=up&time=1e300", None, "out of range"),
    ("GET", "/api/v1/query?query=up&time=soon", None, "invalid time 'soon'"),
    ("GET", "/api/v1/query_range?query=up&start=0&end=inf&step=15", None, "parameter 'end'"),
    ("GET", "/api/v1/query_range?query=up&start=nan&end=9&step=15", None, "parameter 'start'"),
    ("GET", "/api/v1/query_range?query=up&start=100&end=10&step=15", None, "before start"),
    ("GET", "/api/v1/query_range?query=up&start=0&end=100&step=inf", None, "parameter 'step'"),
    ("GET", "/api/v1/query_range?query=up&start=0&end=100&step=-1", None, "parameter 'step'"),
    ("GET", "/api/v1/query_range?query=up&start=0&end=100&step=0", None, "parameter 'step'"),
    ("GET", "/api/v1/query_range?query=up&start=0&end=1e9&step=1", None, "11,000 points"),
    ("GET", "/api/v1/history?since=nan", None, "parameter 'since'"),
    ("GET", "/api/v1/history?limit=-5", None, "parameter 'limit'"),
    ("POST", "/api/v2/silences", "[1,2]", "the silence must be a JSON object, got an array"),
    ("POST", "/api/v2/silences", "", "the silence must be a JSON object, got null"),
    ("POST", "/api/v2/silences", {**SILENCE, "matchers": [1]}, "every matcher must be an object"),
    ("POST", "/api/v2/silences", {**SILENCE, "matchers": "x"}, "matchers must be a non-empty"),
    ("POST", "/api/v2/silences", {**SILENCE, "endsAt": "inf"}, "endsAt: time 'inf'"),
    ("POST", "/api/v2/silences", {**SILENCE, "endsAt": {"x": 1}}, "endsAt: expected a time"),
    ("POST", "/api/v2/silences", {"matchers": SILENCE["matchers"]}, "endsAt is required"),
    ("POST", "/api/v2/silences", {**SILENCE, "recurring": [1]}, "recurring must be a JSON obj"),
    (
        "POST",
        "/api/v2/silences",
        {**SILENCE, "recurring": {"weekdays": ["funday"]}},
        "unknown weekday 'funday': use mon, tue, wed, thu, fri, sat, sun",
    ),
    (
        "POST",
        "/api/v2/silences",
        {**SILENCE, "recurring": {"weekdays": [5], "start": 5}},
        "recurring start: expected a time of day HH:MM",
    ),
    (
        "POST",
        "/api/v2/silences",
        {**SILENCE, "matchers": [{"name": "job", "value": "(", "isRegex": True}]},
        "invalid regex in matcher 'job'",
    ),
    ("POST", "/api/v2/silences", {**SILENCE, "id": {"a": 1}}, "id must be a string"),
    ("POST", "/api/v2/alerts", "[1]", "alert 0 must be a JSON object, got a number"),
    ("POST", "/api/v2/alerts", '[{"labels":[1,2]}]', "alert 0: labels must be a JSON object"),
    ("POST", "/api/v2/alerts", '[{"labels":{"a":"b"},"startsAt":"inf"}]', "startsAt: time"),
    ("POST", "/api/v2/alerts", '[{"labels":{"a":"b"},"annotations":[1]}]', "annotations must"),
    ("POST", "/api/v1/alerts/abc/ack", "[1]", "the acknowledgement must be a JSON object"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), BAD)
async def test_bad_input_is_400_with_a_clear_message(
    api: httpx.AsyncClient, method: str, path: str, body: object, message: str
) -> None:
    content = body if isinstance(body, str | None) else json.dumps(body)
    resp = await api.request(method, path, content=content)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]


async def test_good_input_still_works_and_nothing_bad_was_stored(api: httpx.AsyncClient) -> None:
    for _, path, body, _ in BAD:
        if path == "/api/v2/silences":
            await api.post(path, content=body if isinstance(body, str) else json.dumps(body))
    good = {**SILENCE, "recurring": {"weekdays": ["sat", "Sunday", 0], "start": "22:00"}}
    resp = await api.post("/api/v2/silences", content=json.dumps(good))
    assert resp.status_code == 200, resp.text
    listed = (await api.get("/api/v2/silences")).json()
    assert len(listed) == 1 and listed[0]["recurring"]["weekdays"] == [0, 5, 6]
    resp = await api.get(
        "/api/v1/query_range", params={"query": "1", "start": 0, "end": 60, "step": "15s"}
    )
    assert resp.status_code == 200 and len(resp.json()["data"]["result"][0]["values"]) == 5


def test_parse_weekdays() -> None:
    assert parse_weekdays(["mon", "FRI", "saturday", 6]) == [0, 4, 5, 6]
    for bad in ("funday", "satx", "", 7, True):
        with pytest.raises(ValueError, match="use mon, tue, wed, thu, fri, sat, sun"):
            parse_weekdays([bad])


def test_cli_silence_add_bad_weekday_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_main.COMMANDS, "monitor", "gyroscope.cli.monitor:monitor")
    url = f"http://127.0.0.1:{free_port()}"  # never contacted: the weekday is checked first
    code, _, err = gyro(
        "monitor", "silence", "add", 'job="x"', "--weekdays", "sat,funday", "--url", url
    )
    assert code == 2 and err.count("\n") == 1
    assert "unknown weekday 'funday'" in err and "mon, tue, wed, thu, fri, sat, sun" in err
