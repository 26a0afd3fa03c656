"""One background event loop per process for the sync facade (``with lock:``, ``SyncLock``).

The lock's logic exists once, as coroutines; sync callers submit them to this loop and block on
the result. One loop (not ``asyncio.run`` per call) because a held lock keeps a renewal task and
engine connections alive between calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Portal", "portal"]

T = TypeVar("T")


class Portal:
    """A daemon thread running an event loop; ``call(coro)`` runs ``coro`` there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="gyroscope-lock-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync lock call from inside the lock loop would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


_portal: Portal | None = None
_portal_guard = threading.Lock()


def portal() -> Portal:
    global _portal  # noqa: PLW0603 - one loop per process is the point
    with _portal_guard:
        if _portal is None:
            _portal = Portal()
        return _portal
