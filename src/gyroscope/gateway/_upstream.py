"""Keep-alive connections to one replica: a LIFO pool of idle connections and the response parser.

LIFO (the most recently used idle connection first) keeps a small hot set busy and lets the rest
age out, so in steady state no new upstream connection is opened. A connection goes back to the
pool only after a complete response to a completely sent request, with keep-alive on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from gyroscope.gateway._head import simple_head

if TYPE_CHECKING:
    from gyroscope.gateway._endpoint import Endpoint
    from gyroscope.gateway._exchange import Exchange

__all__ = ["Pool", "UpstreamConnection", "as_protocol", "set_nodelay"]

log = logging.getLogger(__name__)


class _StopParsing(Exception):
    """Raised from a parser callback to stop at the end of a bodiless (HEAD) response."""


def as_protocol(handler: object) -> asyncio.Protocol:
    """A connection handler for asyncio's loop: our handlers implement the protocol's methods but
    do not subclass it, so compiled (mypyc) builds keep them native classes with fixed slots."""
    return cast(asyncio.Protocol, handler)


def write_nowhere(data: bytes) -> None:
    """What a connection writes to before its transport exists: nothing (it never started)."""


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class UpstreamConnection:
    """One connection to a replica; forwards parser events to the exchange that holds it."""

    __slots__ = (
        "closed",
        "exchange",
        "headers",
        "idle_since",
        "keep_alive",
        "parser",
        "parsing",
        "pool",
        "received",
        "remaining",
        "send",
        "transport",
        "uses",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        # ``transport.write``, bound once: compiled code then calls it without a method lookup
        self.send: Callable[[bytes], object] = write_nowhere
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.closed = False
        self.received = False  # any byte of the current response seen
        # httptools holds part of the current response: the rest must go to it as well
        self.parsing = False
        # body bytes still to come of a response the fast path (``simple_head``) started
        self.remaining = 0
        self.idle_since = 0.0
        self.uses = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement its interface
        self.transport = cast(asyncio.Transport, transport)
        self.send = self.transport.write
        set_nodelay(transport)
        self.pool.live += 1

    def eof_received(self) -> bool:
        return False  # the peer finished sending: close (what asyncio.Protocol's default does)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.live -= 1
        self.pool.forget(self)
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.upstream_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.abort()  # bytes nobody asked for: the connection is no longer in a known state
            return
        self.received = True
        if self.remaining:
            self._count_body(exchange, data)
            return
        if not self.parsing:
            head = simple_head(data)
            if head is not None and exchange.simple_response(self, head, data):
                return
        self._parse(exchange, data)

    def _count_body(self, exchange: Exchange, data: bytes) -> None:
        """Forward the rest of a Content-Length body the fast path started; complete at its end."""
        remaining = self.remaining - len(data)
        if remaining > 0:
            self.remaining = remaining
            exchange.response_body(data)
            return
        if remaining < 0:
            data = data[: self.remaining]
            self.keep_alive = False  # bytes after the answer: the connection's state is unknown
        self.remaining = 0
        exchange.response_body(data)
        if self.exchange is exchange:
            self.exchange = None
            exchange.response_complete(self)

    def _parse(self, exchange: Exchange, data: bytes) -> None:
        """The full path: httptools, one callback per header (1xx, chunked, HEAD, odd heads)."""
        self.parsing = True
        client = exchange.client
        client.corked = True
        try:
            self.parser.feed_data(data)
        except _StopParsing:
            self.parser = httptools.HttpResponseParser(self)
            self.parsing = False
        except httptools.HttpParserCallbackError as failed:
            if isinstance(failed.__context__, _StopParsing):
                self.parser = httptools.HttpResponseParser(self)
                self.parsing = False
            else:
                raise
        except httptools.HttpParserError as garbage:  # its own name: see _client.data_received
            current = self.exchange
            self.exchange = None
            self.abort()
            if current is not None:
                current.upstream_garbage(self, str(garbage))
        finally:
            client.uncork()

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        headers, self.headers = self.headers, []  # ready for the next message
        if exchange is None or status < 200:
            return  # 1xx interim answers are not forwarded; the final one follows
        self.keep_alive = self.parser.should_keep_alive()
        bodiless = exchange.response_head(self, status, headers)
        if bodiless and self.exchange is exchange:
            # HEAD: the parser would wait for Content-Length bytes that never come.
            self.exchange = None
            exchange.response_complete(self)
            raise _StopParsing

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        if status < 200:
            return
        self.parsing = False  # at a message boundary again: the next answer may take the fast path
        if exchange is None:
            return
        self.exchange = None
        exchange.response_complete(self)

    # -- for the exchange and the pool -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closed:
            self.send(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class Pool:
    """Idle keep-alive connections to one replica, most recently used first."""

    def __init__(self, endpoint: Endpoint, *, max_idle: int, keepalive: float) -> None:
        self.endpoint = endpoint
        self.max_idle = max_idle
        self.keepalive = keepalive
        self.idle: list[UpstreamConnection] = []
        self.opened = 0  # connections ever opened (a metric: flat in steady state)
        self.live = 0
        self.closing = False

    def acquire(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.uses += 1
                return conn
        return None

    def release(self, conn: UpstreamConnection, now: float) -> None:
        if self.closing or conn.closed or not conn.keep_alive or len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = now
        conn.received = False
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    async def connect(self, limit: float) -> UpstreamConnection:
        """Open a new connection; raises ``OSError`` or ``TimeoutError``."""
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: as_protocol(UpstreamConnection(self)), ep.host, ep.port),
            limit,
        )
        conn = cast(UpstreamConnection, protocol)
        self.opened += 1
        conn.uses = 1
        return conn

    def expire(self, now: float) -> None:
        """Close connections idle longer than ``keepalive`` (before the replica closes them)."""
        while self.idle and now - self.idle[0].idle_since > self.keepalive:
            self.idle.pop(0).close()

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
