"""One proxied connection: the client's socket, the upstream socket, and a ``Pipe`` each way.

Closing follows TCP: an EOF from one side is passed on as a FIN (``write_eof``) once the data before
it has been forwarded, and the other direction keeps flowing (half-close). The link closes both
sockets when both directions are finished. ``reset_transport`` closes with SO_LINGER 0, so the kernel
sends RST instead of FIN: the peer sees ``ConnectionResetError``, as after a crash or a middlebox drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from dataclasses import dataclass, field
from typing import Literal, cast

from gyroscope.chaos._faults import Faults
from gyroscope.chaos._pipe import Pipe, PipeDirection

__all__ = ["Counters", "DirectionView", "Link", "Shared", "Side", "reset_transport"]

log = logging.getLogger(__name__)

Role = Literal["client", "upstream"]


def reset_transport(transport: asyncio.Transport) -> None:
    """Close ``transport`` with an RST rather than a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Forward small writes at once: a proxy must not add Nagle delays of its own."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DirectionView:
    """The faults as one direction sees them, precomputed each time the faults change."""

    __slots__ = ("jitter_ms", "latency_ms", "rate", "rng", "slow_close", "stalled")

    def __init__(self, faults: Faults, direction: PipeDirection, rng: random.Random) -> None:
        applies = faults.applies_to(direction)
        self.stalled = applies and (faults.blackhole or faults.timeout_ms > 0)
        self.latency_ms = faults.latency_ms if applies else 0
        self.jitter_ms = faults.jitter_ms if applies else 0
        self.rate = faults.bandwidth_bps if applies else 0
        self.slow_close = faults.slow_close_ms / 1000.0
        self.rng = rng

    @property
    def delay(self) -> float:
        """Seconds to hold the next chunk: latency plus a uniform draw from ``0..jitter``."""
        jitter = self.rng.uniform(0.0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000.0


@dataclass(slots=True)
class Counters:
    accepted: int = 0
    active: int = 0
    reset: int = 0
    cut: int = 0
    timed_out: int = 0
    upstream_errors: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0
    bytes_dropped: int = 0


@dataclass(slots=True)
class Shared:
    """What every link of one proxy reads: the loop, the upstream, the current faults, counters."""

    loop: asyncio.AbstractEventLoop
    name: str
    upstream: tuple[str, int]
    connect_timeout: float
    faults: Faults
    rng: random.Random
    views: dict[str, DirectionView] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    links: set[Link] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while no link is open

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self.views = {d: DirectionView(faults, d, self.rng) for d in ("upstream", "downstream")}


class Side(asyncio.Protocol):
    """The protocol of one socket of a link; it only routes events to the link."""

    def __init__(self, link: Link, role: Role) -> None:
        self.link = link
        self.role = role

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        set_nodelay(transport)
        if self.role == "client":
            self.link.client_made(transport)
        else:
            self.link.upstream_made(transport)

    def data_received(self, data: bytes) -> None:
        (self.link.up if self.role == "client" else self.link.down).feed(data)

    def eof_received(self) -> bool:
        (self.link.up if self.role == "client" else self.link.down).feed_eof()
        return True  # keep our sending half open: the other direction may still have data

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.side_lost(self.role)

    def pause_writing(self) -> None:
        (self.link.down if self.role == "client" else self.link.up).set_dest_blocked(True)

    def resume_writing(self) -> None:
        (self.link.down if self.role == "client" else self.link.up).set_dest_blocked(False)


class Link:
    """A client connection and its upstream connection."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.loop = shared.loop
        self.up = Pipe(self, "upstream")
        self.down = Pipe(self, "downstream")
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.closed = False
        self._connect_task: asyncio.Task[None] | None = None
        self._timeout: asyncio.TimerHandle | None = None
        self._timeout_ms = 0

    # -- events from the sides -------------------------------------------------------------------
    def client_made(self, transport: asyncio.Transport) -> None:
        shared = self.shared
        shared.counters.accepted += 1
        if shared.faults.reset:
            shared.counters.reset += 1
            reset_transport(transport)
            self.closed = True
            return
        self.client = transport
        self.up.source = transport
        self.down.dest = transport
        shared.links.add(self)
        shared.idle.clear()
        shared.counters.active += 1
        # Hold the client until the upstream connection exists, from the next loop pass: CPython
        # 3.11.2 (Debian 12's) starts reading once connection_made returns even if it paused, and
        # then takes every later pause for a no-op, so back-pressure would never apply.
        self.loop.call_soon(self._hold_client, transport)
        self._connect_task = self.loop.create_task(self._connect())
        self.faults_changed()

    def _hold_client(self, transport: asyncio.Transport) -> None:
        if self.upstream is None and not self.closed and not transport.is_closing():
            transport.pause_reading()

    async def _connect(self) -> None:
        host, port = self.shared.upstream
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: Side(self, "upstream"), host, port),
                timeout=self.shared.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.shared.counters.upstream_errors += 1
            log.warning(
                "%s: cannot connect to upstream %s:%s: %s", self.shared.name, host, port, exc
            )
            self.reset()

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self.closed:
            transport.close()
            return
        self.upstream = transport
        self.up.dest = transport
        self.down.source = transport
        if self.client is not None and not self.client.is_closing():
            self.client.resume_reading()
        self.up.pump()  # a FIN from the client may already be waiting

    def side_lost(self, role: Role) -> None:
        if self.closed:
            return
        sending, receiving = (self.up, self.down) if role == "client" else (self.down, self.up)
        sending.feed_eof()
        receiving.dest_lost()
        self.pipe_finished()

    def pipe_finished(self) -> None:
        if self.up.finished and self.down.finished:
            self.close()

    # -- pipes report to the proxy's counters ----------------------------------------------------
    def faults_for(self, direction: PipeDirection) -> DirectionView:
        return self.shared.views[direction]

    def count_forwarded(self, direction: PipeDirection, size: int) -> None:
        if direction == "upstream":
            self.shared.counters.bytes_upstream += size
        else:
            self.shared.counters.bytes_downstream += size

    def count_dropped(self, size: int) -> None:
        self.shared.counters.bytes_dropped += size

    # -- control ---------------------------------------------------------------------------------
    def faults_changed(self) -> None:
        """Apply new faults to this existing connection: re-pump queues, (re)arm the timeout."""
        timeout_ms = self.shared.faults.timeout_ms
        if timeout_ms != self._timeout_ms:
            self._timeout_ms = timeout_ms
            if self._timeout is not None:
                self._timeout.cancel()
                self._timeout = None
            if timeout_ms:
                self._timeout = self.loop.call_later(timeout_ms / 1000.0, self._time_out)
        if self.upstream is not None:
            self.up.pump()
            self.down.pump()

    def _time_out(self) -> None:
        self._timeout = None
        self.shared.counters.timed_out += 1
        self.close()

    def reset(self) -> None:
        """Drop both sockets with RST (the ``cut`` fault, or a failed upstream connect)."""
        for transport in (self.client, self.upstream):
            if transport is not None and not transport.is_closing():
                reset_transport(transport)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.shared.links.discard(self)
        self.shared.counters.active -= 1
        if not self.shared.links:
            self.shared.idle.set()
        if self._timeout is not None:
            self._timeout.cancel()
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        self.up.close()
        self.down.close()
        for transport in (self.client, self.upstream):
            if transport is not None and not transport.is_closing():
                transport.close()
