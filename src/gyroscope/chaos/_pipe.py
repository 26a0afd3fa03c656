"""One direction of a proxied connection: latency, bandwidth, blackhole, slow close, back-pressure.

A ``Pipe`` takes chunks read from its source socket and writes them to its destination socket. With
no fault acting on its direction it writes at once (the fast path). Otherwise each chunk is queued
with a release time (arrival + latency + jitter, never earlier than the chunk before it, so order
holds) and a timer pumps the queue, paced by a token bucket when a bandwidth limit is set.

Back-pressure: the source stops being read while the destination's write buffer is full or while
more than ``HIGH_WATER`` bytes wait in the queue, so memory stays bounded whatever the faults.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Literal

from gyroscope.chaos._bucket import TokenBucket

if TYPE_CHECKING:
    from gyroscope.chaos._link import Link

__all__ = ["HIGH_WATER", "LOW_WATER", "Pipe"]

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024

PipeDirection = Literal["upstream", "downstream"]


class _LoopClock:
    """The event loop's clock, as the ``Clock`` the token bucket takes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def monotonic(self) -> float:
        return self._loop.time()

    def time(self) -> float:
        return time.time()


class Pipe:
    """Forward one direction (``upstream`` = client to server) of one connection."""

    def __init__(self, link: Link, direction: PipeDirection) -> None:
        self.link = link
        self.direction = direction
        self.source: asyncio.Transport | None = None
        self.dest: asyncio.Transport | None = None
        self.finished = False  # EOF passed on, or the destination is gone
        self._loop = link.loop
        self._queue: deque[tuple[float, bytes | None]] = deque()
        self._queued = 0
        self._last_release = 0.0
        # uvloop turns a call_at whose time has passed into a plain Handle with no when(), so
        # the deadline of the pending pump is kept here.
        self._timer: asyncio.Handle | None = None
        self._timer_when = 0.0
        self._eof_timer: asyncio.TimerHandle | None = None
        self._bucket: TokenBucket | None = None
        self._dest_blocked = False
        self._source_paused = False
        self._eof_fed = False

    # -- input ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        faults = self.link.faults_for(self.direction)
        if faults.stalled or self.finished:  # blackholed, or nobody left to receive it
            self.link.count_dropped(len(data))
            return
        direct = not (faults.latency_ms or faults.jitter_ms or faults.rate)
        if direct and not self._queue and self.dest is not None:
            self._write(data)
            return
        # From a fresh reading of the clock: uvloop's loop.time() is taken once per loop pass and
        # in whole milliseconds, so a chunk read late in a pass would leave early. pump() waits
        # until loop.time() (never ahead of this clock) reaches it: a delay is never cut short.
        release = max(time.monotonic() + faults.delay, self._last_release)
        self._last_release = release
        self._queue.append((release, data))
        self._queued += len(data)
        self._update_flow()
        self._schedule(release)

    def feed_eof(self) -> None:
        """The source will send no more; pass the FIN on once everything before it has gone."""
        if self._eof_fed:
            return
        self._eof_fed = True
        release = max(self._loop.time(), self._last_release)
        self._queue.append((release, None))
        self._schedule(release)

    def dest_lost(self) -> None:
        """The destination socket is gone: drop what waits for it."""
        self.finished = True
        self._queue.clear()
        self._queued = 0
        self._cancel_timer()
        self._update_flow()

    def set_dest_blocked(self, blocked: bool) -> None:
        self._dest_blocked = blocked
        self._update_flow()
        if not blocked:
            self.pump()

    def close(self) -> None:
        self._cancel_timer()
        if self._eof_timer is not None:
            self._eof_timer.cancel()
            self._eof_timer = None
        self._queue.clear()
        self._queued = 0

    # -- output -----------------------------------------------------------------------------
    def pump(self) -> None:
        """Forward every chunk whose time has come, as far as bandwidth and the destination allow."""
        self._cancel_timer()
        # Until the upstream connection exists (dest is None) chunks wait; connecting pumps them.
        while (
            self._queue and self.dest is not None and not self.finished and not self._dest_blocked
        ):
            release, chunk = self._queue[0]
            now = self._loop.time()
            if release > now:
                self._schedule(release)
                break
            if chunk is None:
                self._queue.popleft()
                self._pass_eof()
                break
            if not self._forward_head(chunk, release):
                break
        self._update_flow()

    def _forward_head(self, chunk: bytes, release: float) -> bool:
        """Forward (part of) the first chunk; False when the bucket says wait."""
        faults = self.link.faults_for(self.direction)
        if faults.stalled:
            self._pop(len(chunk))
            self.link.count_dropped(len(chunk))
            return True
        if faults.rate:
            bucket = self._bucket_for(faults.rate)
            granted = bucket.take(len(chunk))
            if granted < len(chunk):
                if granted:
                    self._queue[0] = (release, chunk[granted:])
                    self._queued -= granted
                    self._write(chunk[:granted])
                self._schedule(self._loop.time() + max(bucket.wait(len(chunk) - granted), 0.001))
                return False
        self._pop(len(chunk))
        self._write(chunk)
        return True

    def _pop(self, size: int) -> None:
        self._queue.popleft()
        self._queued -= size

    def _bucket_for(self, rate: int) -> TokenBucket:
        if self._bucket is None:
            self._bucket = TokenBucket(rate, clock=_LoopClock(self._loop))
        elif self._bucket.rate != rate:
            self._bucket.set_rate(rate)
        return self._bucket

    def _write(self, data: bytes) -> None:
        if self.dest is None or self.finished or self.dest.is_closing():
            self.link.count_dropped(len(data))
            return
        self.dest.write(data)
        self.link.count_forwarded(self.direction, len(data))

    def _pass_eof(self) -> None:
        delay = self.link.faults_for(self.direction).slow_close
        if delay > 0:
            self._eof_timer = self._loop.call_later(delay, self._send_eof)
        else:
            self._send_eof()

    def _send_eof(self) -> None:
        self._eof_timer = None
        if self.finished:
            return
        self.finished = True
        dest = self.dest
        if dest is not None and not dest.is_closing():
            if dest.can_write_eof():
                try:
                    dest.write_eof()
                except OSError:
                    dest.abort()
            else:
                dest.close()
        self.link.pipe_finished()

    # -- timers and flow control -------------------------------------------------------------
    def _schedule(self, when: float) -> None:
        if self._timer is not None:
            if self._timer_when <= when:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self.pump)
        self._timer_when = when

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _update_flow(self) -> None:
        """Pause the source while the destination or our queue is full; resume once drained."""
        source = self.source
        if source is None or source.is_closing():
            return
        full = self._queued >= HIGH_WATER or (self._dest_blocked and not self.finished)
        drained = self._queued <= LOW_WATER and (not self._dest_blocked or self.finished)
        if full and not self._source_paused:
            self._source_paused = True
            source.pause_reading()
        elif drained and self._source_paused:
            self._source_paused = False
            source.resume_reading()
