"""Helpers for lock fault tests: start worker processes, poll for files and conditions."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gyroscope.chaos import ManagedProcess

WORKER = str(Path(__file__).with_name("worker.py"))


def spawn(mode: str, url: str, name: str, ttl: float, out: Path, *extra: str) -> ManagedProcess:
    out.mkdir(parents=True, exist_ok=True)
    return ManagedProcess([sys.executable, WORKER, mode, url, name, str(ttl), str(out), *extra])


def wait_file(path: Path, timeout: float = 30.0, proc: ManagedProcess | None = None) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and not proc.running:
            raise AssertionError(f"worker exited with {proc.returncode} before writing {path.name}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)
    return path.read_text()


def result(out: Path, proc: ManagedProcess) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(wait_file(out / "result.json", proc=proc))
    return data


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> float:
    """Poll ``check`` until true; the seconds it took. Fails after ``timeout``."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start
