"""Processes that open one new SQLite file in the same instant all get in.

Switching a new file to WAL answers "database is locked" at once (no busy wait) while another
process opens it; CI lost a four-worker lock history test to that once.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

PROCESSES = 6
ROUNDS = 30


def _fenced_write(path: str, start: Barrier) -> str:
    from gyroscope.lock import FencedResource

    start.wait()
    try:
        store = FencedResource(path, name="shared")
        store.write("k", "v", token=1)
        store.close()
    except Exception as exc:  # reported to the test, which names it
        return repr(exc)
    return ""


def _lock_once(url: str, start: Barrier) -> str:
    """One try at the lock table itself: ``Lock.acquire`` would retry past an engine error."""
    from gyroscope.lock._backend import Busy, open_backend

    async def once() -> None:
        backend = open_backend(url)
        try:
            grant = await backend.try_acquire(
                "first-open", f"p{mp.current_process().pid}", 5, fair=False
            )
            if not isinstance(grant, Busy):
                await backend.release("first-open", f"p{mp.current_process().pid}", grant.token)
        finally:
            await backend.aclose()

    start.wait()
    try:
        asyncio.run(once())
    except Exception as exc:
        return repr(exc)
    return ""


@pytest.mark.parametrize("kind", ["fenced_resource", "lock_table"])
def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path, kind: str) -> None:
    ctx = mp.get_context("fork")
    worker = _fenced_write if kind == "fenced_resource" else _lock_once
    with ctx.Manager() as manager, ctx.Pool(PROCESSES) as pool:
        for n in range(ROUNDS):
            path = tmp_path / f"{n}.db"
            target = str(path) if kind == "fenced_resource" else f"sqlite://{path}"
            start = manager.Barrier(PROCESSES)
            errors = [e for e in pool.starmap(worker, [(target, start)] * PROCESSES) if e]
            assert errors == [], f"round {n}: {errors}"
