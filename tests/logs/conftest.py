"""Helpers for the log store tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gyroscope.logs import Entry, LogsConfig, LogServer, LogStore, canonical


def entries(
    n: int, *, start: int = 0, labels: dict[str, str] | None = None, size: int = 40
) -> list[Entry]:
    text = canonical(labels or {"service": "api", "level": "info"})
    return [
        Entry(text, (f"line {start + i} " + "x" * size).encode(), 1_000_000_000 + start + i)
        for i in range(n)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    s = LogStore(tmp_path / "logs", segment_bytes=4096, checkpoint_every=50).open()
    yield s
    s.close()


@contextlib.asynccontextmanager
async def running_log_server(data_dir: Path, **settings: Any) -> AsyncIterator[LogServer]:
    """A log server on a free loopback port with ``settings`` (e.g. ``token``), background
    checkpoints and scrubs off so tests see only what they do; stopped on exit."""
    cfg = LogsConfig.model_validate(
        {"listen": "127.0.0.1:0", "checkpoint_seconds": 0, "scrub_seconds": 0, **settings}
    )
    server = LogServer(cfg, data_dir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(1.0)
