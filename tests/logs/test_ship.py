"""The file shipper: position, rotation, truncation, crash between send and save (no duplicates)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gyroscope.logs import LogsConfig, LogServer, Shipper, parse_query, run_log_query


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LogServer]:
    srv = LogServer(
        LogsConfig(listen="127.0.0.1:0", checkpoint_seconds=0, scrub_seconds=0), tmp_path / "logs"
    )
    await srv.start()
    yield srv
    await srv.stop(1.0)


def stored(server: LogServer) -> list[str]:
    res = run_log_query(
        server.store,
        parse_query('{job="app"}'),
        start_ns=0,
        end_ns=2**62,
        limit=10_000,
        backward=False,
    )
    return [ln.line for ln in res.lines]


def write(path: Path, *lines: str) -> None:
    with open(path, "a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def shipper(server: LogServer, path: Path, **kw: object) -> Shipper:
    return Shipper(
        path, server.http.url, {"job": "app"}, path.with_name("pos"), batch_lines=3, **kw
    )  # type: ignore[arg-type]


async def ship(s: Shipper) -> int:
    return await asyncio.to_thread(s.run, follow=False)


async def test_ships_once_and_resumes_from_its_position(server: LogServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "a", "b", "c", "d")
    with open(log, "a") as fh:
        fh.write("partial")  # not a complete line yet
    assert await ship(shipper(server, log)) == 4
    assert await ship(shipper(server, log)) == 0  # a fresh shipper reads the position file
    with open(log, "a") as fh:
        fh.write(" line\n")
    write(log, "e")
    await ship(shipper(server, log))
    assert stored(server) == ["a", "b", "c", "d", "partial line", "e"]


async def test_follows_rename_rotation_and_copytruncate(server: LogServer, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write(log, "one", "two")
    await ship(shipper(server, log))
    write(log, "three")  # written just before rotation, not shipped yet
    os.rename(log, tmp_path / "app.log.1")
    write(log, "four", "five")
    await ship(shipper(server, log))  # notices the new file, finishes the old one first
    await ship(shipper(server, log))
    assert stored(server) == ["one", "two", "three", "four", "five"]
    os.truncate(log, 0)  # copytruncate
    write(log, "six")
    await ship(shipper(server, log))
    assert stored(server)[-1] == "six"
    assert len(stored(server)) == 6


async def test_crash_between_send_and_save_does_not_duplicate(
    server: LogServer, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    write(log, "l1", "l2", "l3", "l4", "l5")
    first = shipper(server, log)
    saves = 0
    real_save = first.save_state

    def crash_after_send(state: object) -> None:
        nonlocal saves
        saves += 1
        if saves == 2:  # 1 = write-ahead of the batch, 2 = its acknowledgement
            raise KeyboardInterrupt("crash")
        real_save(state)  # type: ignore[arg-type]

    first.save_state = crash_after_send  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        await ship(first)
    write(log, "l6")  # the file grows while the shipper is down
    again = shipper(server, log)
    await ship(again)
    assert again.duplicates == 1
    assert stored(server) == ["l1", "l2", "l3", "l4", "l5", "l6"]
