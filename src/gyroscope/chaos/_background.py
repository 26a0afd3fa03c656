"""Run a ``FaultProxy`` on its own event loop in a daemon thread, for synchronous code.

The proxy's control methods notice they are called from another thread and carry the call over to
the proxy's loop, so the object handed out is the proxy itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gyroscope.core import uvloop_available
from gyroscope.errors import ProxyError

if TYPE_CHECKING:
    from gyroscope.chaos._proxy import FaultProxy

__all__ = ["run_in_background"]


def _new_loop() -> asyncio.AbstractEventLoop:
    if uvloop_available():
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


@contextlib.contextmanager
def run_in_background(proxy: FaultProxy, *, grace: float = 0.0) -> Iterator[FaultProxy]:
    """Start ``proxy`` in a thread; on exit stop it (resetting open connections) and join."""
    loop = _new_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"gyro-chaos-{proxy.name}", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=15.0)
        yield proxy
    finally:
        try:
            if loop.is_running():
                stopping = asyncio.run_coroutine_threadsafe(proxy.stop(grace), loop)
                with contextlib.suppress(Exception):
                    stopping.result(timeout=grace + 10.0)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10.0)
            if thread.is_alive():  # pragma: no cover - a wedged loop; leave the daemon thread
                raise ProxyError(f"{proxy.name}: background event loop did not stop")
            _close_loop(loop)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left (e.g. connect attempts) and close the loop without warnings."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
