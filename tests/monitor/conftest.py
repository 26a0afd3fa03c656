"""Helpers for monitor tests: a webhook receiver that records what it gets, and polling."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gyroscope.core import HttpServer, Request, Response


class Receiver:
    """A local webhook endpoint; answers ``fail_first`` requests with 500, then 200."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failed = 0
        self.fail_first = 0
        self.server = HttpServer(self.handle, port=0, name="receiver")

    async def handle(self, request: Request) -> Response:
        if self.failed < self.fail_first:
            self.failed += 1
            return Response.text("down\n", status=500)
        self.received.append(json.loads(request.body))
        return Response.text("ok\n")

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    await rx.server.start()
    yield rx
    await rx.server.stop(0.5)


async def wait_until(
    check: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
