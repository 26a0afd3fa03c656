"""A ``logging.Handler`` that stores Python log records in a ``LogServer`` of the same process.

``gyro up`` attaches one to the root logger so the gateway's access logs and the demo replicas'
logs land in the log store. Records are buffered and written in batches by the server's event
loop (so a log call never blocks on an fsync); when the buffer is full, new records are counted in
``dropped`` and a warning is logged once, rather than stalling the service that logs.

>>> import logging
>>> handler = LogServerHandler(None, {"job": "gyroscope"})   # attach to a started LogServer
>>> handler.level == logging.NOTSET
True
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import TYPE_CHECKING

from gyroscope.logs._labels import canonical
from gyroscope.logs._store import Entry

if TYPE_CHECKING:
    from gyroscope.logs._service import LogServer

__all__ = ["LogServerHandler"]

_LEVELS = {"WARNING": "warn", "CRITICAL": "critical"}


class LogServerHandler(logging.Handler):
    """Store log records as JSON lines, labelled with ``labels``, the logger name and the level."""

    def __init__(
        self, server: LogServer | None, labels: dict[str, str], *, max_buffer: int = 100_000
    ) -> None:
        super().__init__()
        self.server = server
        self.labels = dict(labels)
        self.max_buffer = max_buffer
        self.dropped = 0
        self._buffer: list[Entry] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flushing = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the server runs on (records logged from other threads are handed to it)."""
        self._loop = loop

    def emit(self, record: logging.LogRecord) -> None:
        if self.server is None or record.name.startswith("gyroscope.logs"):
            return  # never feed the log store's own logs back into itself
        try:
            level = _LEVELS.get(record.levelname, record.levelname.lower())
            parts = record.name.split(".")
            # gyroscope.gateway._proxy -> "gateway": the subsystem is the useful stream label
            source = parts[1] if parts[0] == "gyroscope" and len(parts) > 1 else parts[0]
            labels = canonical({**self.labels, "logger": source, "level": level})
            body = {"msg": record.getMessage(), "logger": record.name}
            if record.exc_info:
                body["exc"] = self.format(record).splitlines()[-1]
            entry = Entry(labels, json.dumps(body).encode(), int(record.created * 1e9))
        except Exception:  # a broken record must not break the caller
            self.handleError(record)
            return
        with self._lock:
            if len(self._buffer) >= self.max_buffer:
                self.dropped += 1
                return
            self._buffer.append(entry)
            if self._flushing or self._loop is None:
                return
            self._flushing = True
        self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        assert self.server is not None
        try:
            while True:
                await asyncio.sleep(0.05)  # gather what arrives together into one batch
                with self._lock:
                    batch, self._buffer = self._buffer, []
                    if not batch:
                        self._flushing = False
                        return
                try:
                    await self.server.ingest(batch)
                except Exception as exc:  # the store is down: count, do not raise into logging
                    self.dropped += len(batch)
                    if self.dropped == len(batch):
                        logging.getLogger(__name__).warning("log records not stored: %s", exc)
        finally:
            with self._lock:
                self._flushing = False

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def wait_flushed(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._buffer and not self._flushing:
                    return True
            time.sleep(0.02)
        return False
