"""A lock client process for fault and history tests: ``python tests/lock/worker.py MODE ...``.

hold URL NAME TTL DIR   acquire, write DIR/ready (the token), wait for DIR/go, then do one fenced
                        write and release; write DIR/result.json with what happened.
churn URL NAME TTL DIR N  N rounds of acquire, fenced write, short work, release, recording every
                        step to DIR/history.jsonl (see gyroscope.testing.lock_history).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path

from gyroscope.lock import (
    FencedResource,
    LeaseLostError,
    Lock,
    LockBackendError,
    LockNotHeldError,
    StaleTokenError,
)
from gyroscope.testing.lock_history import Recorder


async def hold(url: str, name: str, ttl: float, out: Path) -> None:
    lock = Lock(name, url, ttl=ttl)
    token = await lock.acquire(timeout=60)
    assert token is not None
    (out / "ready.tmp").write_text(str(token))
    os.replace(out / "ready.tmp", out / "ready")
    while not (out / "go").exists():
        await asyncio.sleep(0.02)
    result: dict[str, object] = {"token": token}
    store = FencedResource(out / "store.db", name="shared")
    try:
        store.write("owner", f"worker-{os.getpid()}", token=token)
        result["write"] = "accepted"
    except StaleTokenError as exc:
        result["write"] = "rejected"
        result["highest"] = exc.highest
    result["held"] = lock.held
    result["lease_lost_event"] = lock.lease_lost.is_set()
    try:
        await lock.release()
        result["release"] = "ok"
    except LeaseLostError:
        result["release"] = "LeaseLostError"
    (out / "result.tmp").write_text(json.dumps(result))
    os.replace(out / "result.tmp", out / "result.json")
    await lock.aclose()


async def churn(url: str, name: str, ttl: float, out: Path, rounds: int) -> None:
    rec = Recorder(out / "history.jsonl", process=f"p{os.getpid()}")
    store = FencedResource(out / "store.db", name="shared")
    lock = Lock(name, url, ttl=ttl, auto_renew=False)
    for _ in range(rounds):
        rec.record("acquire_invoke", ttl=ttl)
        token = await lock.acquire(timeout=60)
        if token is None:
            rec.record("acquire_fail")
            continue
        rec.record("acquire_ok", token=token)
        try:
            store.write("k", str(token), token=token)
            rec.record("write_ok", token=token)
        except StaleTokenError:
            rec.record("write_rejected", token=token)
        await asyncio.sleep(random.uniform(0, 0.01))
        rec.record("release_invoke")
        try:
            await lock.release()
            rec.record("release_ok")
        except LockNotHeldError:
            rec.record("lost")
        except LockBackendError:
            pass  # outcome unknown (engine unreachable): the lease runs out on its own
    await lock.aclose()


def main() -> None:
    mode, url, name, ttl, out = sys.argv[1:6]
    if mode == "hold":
        asyncio.run(hold(url, name, float(ttl), Path(out)))
    else:
        asyncio.run(churn(url, name, float(ttl), Path(out), int(sys.argv[6])))


if __name__ == "__main__":
    main()
