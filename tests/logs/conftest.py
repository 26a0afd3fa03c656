"""Helpers for the log store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gyroscope.logs import Entry, LogStore, canonical


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
