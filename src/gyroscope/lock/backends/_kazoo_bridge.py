"""Hand kazoo replies to an asyncio loop with one thread hop instead of two or three.

kazoo runs ``rawlink`` callbacks on its completion thread: the connection thread queues them,
that thread wakes and runs them, and only then does our callback wake the event loop. ``create``
even chains two results that way (an inner request result, then the public one). For a lock
whose uncontended path is one request each way, those hops were a fifth of the latency.

So this handler runs ``rawlink`` callbacks on the thread that sets the result (kazoo's
connection thread). That is safe for the one client that uses it (``ZooKeeperBackend``'s own,
never shared): the only callbacks on its results are ours, which just call
``loop.call_soon_threadsafe``, and kazoo's own chaining in ``create``/``ensure_path``, which
only set other results or queue requests — none blocks. Watch callbacks are unaffected: kazoo
still dispatches them on its completion thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from kazoo.handlers.threading import AsyncResult, SequentialThreadingHandler

__all__ = ["LoopHandler", "to_future"]


class _DirectResult(AsyncResult):  # type: ignore[misc]
    def _do_callbacks(self) -> None:
        for callback in self._callbacks:
            callback(self)


class LoopHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler whose results wake asyncio directly (see the module doc)."""

    def async_result(self) -> AsyncResult:
        return _DirectResult(self)


class _Wake:
    """Settle an asyncio future from a kazoo result; runs on whichever thread sets the result."""

    __slots__ = ("fut", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.fut = fut

    def __call__(self, result: Any) -> None:
        # Never raise into kazoo's connection thread: a closed loop has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.fut, result)


def _settle(fut: asyncio.Future[Any], result: Any) -> None:
    if fut.done():
        return
    try:
        fut.set_result(result.get_nowait())
    except Exception as exc:
        fut.set_exception(exc)


def to_future(result: Any) -> asyncio.Future[Any]:
    """An asyncio future for a kazoo ``IAsyncResult`` (call on the event loop's thread)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    result.rawlink(_Wake(loop, fut))
    return fut
