"""Delivery: a receiver that is down and comes back gets the alert exactly once; the chat, command
and email notifiers speak their formats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from gyroscope.monitor import DeliveryQueue, Notification
from gyroscope.monitor._config import ReceiverConfig
from tests.monitor.conftest import Receiver, wait_until


def note(group: str = "g", status: str = "firing", instance: str = "a") -> Notification:
    alert = {
        "status": status,
        "labels": {"alertname": "Down", "instance": instance},
        "annotations": {"summary": "it broke"},
        "startsAt": "",
        "endsAt": "",
        "generatorURL": "",
        "fingerprint": "f",
    }
    payload = {
        "version": "4",
        "groupKey": group,
        "status": status,
        "receiver": "r",
        "groupLabels": {"alertname": "Down"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "truncatedAlerts": 0,
        "alerts": [alert],
    }
    return Notification("r", group, payload, ("f",))


async def run_queue(queue: DeliveryQueue) -> asyncio.Task[None]:
    return asyncio.create_task(queue.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_down_then_up_delivers_exactly_once(receiver: Receiver) -> None:
    receiver.fail_first = 3
    results: list[str | None] = []
    async with httpx.AsyncClient() as client:
        queue = DeliveryQueue(
            [ReceiverConfig(name="r", webhook={"url": receiver.url})],
            client,
            lambda n, i, err: results.append(err),
        )
        task = await run_queue(queue)
        try:
            queue.submit(note())
            await wait_until(lambda: not queue.pending, timeout=30, what="delivery")
        finally:
            await stop(task)
    assert len(receiver.received) == 1
    assert receiver.received[0]["alerts"][0]["labels"]["instance"] == "a"
    assert [r is None for r in results] == [False, False, False, True]
    assert "HTTP 500" in (results[0] or "")


async def test_newer_state_replaces_a_failing_message(receiver: Receiver) -> None:
    receiver.fail_first = 2
    async with httpx.AsyncClient() as client:
        queue = DeliveryQueue([ReceiverConfig(name="r", webhook={"url": receiver.url})], client)
        task = await run_queue(queue)
        try:
            queue.submit(note(status="firing"))
            await wait_until(lambda: receiver.failed >= 1, what="first failure")
            queue.submit(note(status="resolved"))
            await wait_until(lambda: not queue.pending, timeout=30, what="delivery")
        finally:
            await stop(task)
    assert [r["status"] for r in receiver.received] == ["resolved"]


async def test_receiver_that_refuses_connections_is_retried(receiver: Receiver) -> None:
    url = receiver.url
    await receiver.server.stop(0.1)
    async with httpx.AsyncClient() as client:
        queue = DeliveryQueue([ReceiverConfig(name="r", webhook={"url": url})], client)
        task = await run_queue(queue)
        try:
            queue.submit(note())
            await wait_until(lambda: queue.failures >= 2, what="retries")
            assert queue.status()[0]["lastError"].startswith("receiver r: POST")
            await receiver.server.start()
            await wait_until(lambda: not queue.pending, timeout=30, what="delivery")
        finally:
            await stop(task)
    assert len(receiver.received) == 1


async def test_chat_and_command_notifiers(receiver: Receiver, tmp_path: Path) -> None:
    out = tmp_path / "payload.json"
    script = f"import sys, pathlib; pathlib.Path({str(out)!r}).write_text(sys.stdin.read())"
    receivers = [
        ReceiverConfig(
            name="r",
            chat={"url": receiver.url, "channel": "#ops"},
            command={"argv": [sys.executable, "-c", script]},
        )
    ]
    async with httpx.AsyncClient() as client:
        queue = DeliveryQueue(receivers, client)
        task = await run_queue(queue)
        try:
            queue.submit(note())
            await wait_until(lambda: not queue.pending, timeout=30, what="delivery")
        finally:
            await stop(task)
    (chat,) = receiver.received
    assert chat["channel"] == "#ops"
    assert chat["text"].startswith("[FIRING:1] alertname=Down")
    assert "it broke" in chat["text"]
    assert json.loads(out.read_text())["alerts"][0]["labels"]["instance"] == "a"


async def test_failing_command_is_reported() -> None:
    errors: list[str | None] = []
    receivers = [
        ReceiverConfig(
            name="r", command={"argv": [sys.executable, "-c", "import sys; sys.exit(3)"]}
        )
    ]
    async with httpx.AsyncClient() as client:
        queue = DeliveryQueue(receivers, client, lambda n, i, e: errors.append(e))
        task = await run_queue(queue)
        try:
            queue.submit(note())
            await wait_until(lambda: bool(errors), what="a failure")
        finally:
            await stop(task)
    assert "exited 3" in (errors[0] or "")


class _Smtp(asyncio.Protocol):
    """Just enough SMTP to accept one message."""

    messages: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""
        self.data: list[bytes] | None = None
        transport.write(b"220 test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            if self.data is not None:
                if line == b".":
                    _Smtp.messages.append(b"\r\n".join(self.data).decode())
                    self.data = None
                    self.t.write(b"250 queued\r\n")
                else:
                    self.data.append(line)
            elif line.upper().startswith(b"DATA"):
                self.data = []
                self.t.write(b"354 go on\r\n")
            elif line.upper().startswith(b"QUIT"):
                self.t.write(b"221 bye\r\n")
                self.t.close()
            else:
                self.t.write(b"250 ok\r\n")


async def test_email_notifier() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Smtp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    receivers = [
        ReceiverConfig(
            name="r", email={"to": ["ops@example.test"], "smarthost": f"127.0.0.1:{port}"}
        )
    ]
    try:
        async with httpx.AsyncClient() as client:
            queue = DeliveryQueue(receivers, client)
            task = await run_queue(queue)
            try:
                queue.submit(note())
                await wait_until(lambda: not queue.pending, timeout=30, what="delivery")
            finally:
                await stop(task)
    finally:
        server.close()
    message = _Smtp.messages[-1]
    assert "Subject: [FIRING:1] alertname=Down" in message
    assert "To: ops@example.test" in message
