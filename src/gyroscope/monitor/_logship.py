"""Alert events to the log store (Loki push JSON), so the audit trail lives with the logs.

Best effort without loss while the process lives: events queue (bounded) and are posted in batches
every second; a failed post keeps them for the next try. The alert history in SQLite is the record
of truth; this is a copy for searching alongside application logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

import httpx
from pydantic import SecretStr

from gyroscope.monitor._redact import reveal, safe_url, scrub_url

__all__ = ["LogShipper"]

log = logging.getLogger(__name__)


class LogShipper:
    """``add(events)``; ``run()`` posts them to ``{url}/loki/api/v1/push`` with job=gyro-monitor."""

    def __init__(
        self,
        url: str | SecretStr,
        client: httpx.AsyncClient,
        *,
        token: SecretStr | None = None,
        max_queue: int = 10_000,
    ) -> None:
        self.url = reveal(url).rstrip("/") + "/loki/api/v1/push"
        secret = token.get_secret_value() if token is not None else ""
        # a log server with logs.token set (required off loopback) wants it on every push
        self.headers = {"authorization": f"Bearer {secret}"} if secret else {}
        self.shown = safe_url(self.url)  # for messages: the URL may carry user:password
        self.client = client
        self.queue: deque[dict[str, Any]] = deque(maxlen=max_queue)
        self.shipped = 0
        self.failing = False

    def add(self, events: list[dict[str, Any]]) -> None:
        self.queue.extend(events)

    def _body(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        streams: dict[str, list[list[str]]] = {}
        for event in events:
            line = json.dumps(event, separators=(",", ":"), default=str, sort_keys=True)
            streams.setdefault(event["event"], []).append([str(int(event["time"] * 1e9)), line])
        return {
            "streams": [
                {"stream": {"job": "gyro-monitor", "event": kind}, "values": values}
                for kind, values in streams.items()
            ]
        }

    async def flush(self) -> None:
        if not self.queue:
            return
        batch = list(self.queue)
        try:
            response = await self.client.post(
                self.url, json=self._body(batch), headers=self.headers, timeout=10.0
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            if not self.failing:
                log.warning(
                    "cannot ship alert events to the log store at %s: %s",
                    self.shown,
                    scrub_url(str(exc), self.url),
                )
            self.failing = True
            return
        for _ in batch:
            self.queue.popleft()
        self.shipped += len(batch)
        self.failing = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.flush()
