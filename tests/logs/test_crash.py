"""kill -9 of the log server during ingest: every acknowledged line is there after restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from gyroscope.logs import LogStore, verify_store
from gyroscope.testing import free_port, wait_for_port

SERVE = (
    "import sys; from gyroscope.cli.logs import logs; "
    "logs(['serve', '--data-dir', sys.argv[1], '--listen', sys.argv[2]])"
)


def _client(
    url: str, worker: int, acked: list[tuple[int, list[str]]], stop: threading.Event
) -> None:
    with httpx.Client(timeout=10) as client:
        for batch in range(100_000):
            if stop.is_set():
                return
            ids = [f"w{worker}-b{batch}-i{i}" for i in range(20)]
            body = "\n".join(
                json.dumps(
                    {"labels": {"job": "crash", "worker": str(worker)}, "line": f"{i} " + "p" * 150}
                )
                for i in ids
            )
            try:
                resp = client.post(url + "/api/logs/push", content=body)
            except httpx.HTTPError:
                return  # the server is gone: nothing more can be acknowledged
            if resp.status_code == 200:
                acked.append((resp.json()["first_seq"], ids))


def test_kill_9_during_ingest_loses_no_acknowledged_line(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(tmp_path), f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        acked: list[tuple[int, list[str]]] = []
        stop = threading.Event()
        workers = [
            threading.Thread(target=_client, args=(f"http://127.0.0.1:{port}", w, acked, stop))
            for w in range(4)
        ]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while len(acked) < 60 and time.monotonic() < deadline:  # ingest well under way
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        stop.set()
        for w in workers:
            w.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(acked) >= 60
    store = LogStore(tmp_path / "logs").open()
    try:
        for first, ids in acked:
            for k, ident in enumerate(ids):
                assert store.get(first + k).line.decode().startswith(ident + " ")
        assert store.damage == []
        assert verify_store(store).ok
    finally:
        store.close()
