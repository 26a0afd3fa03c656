"""One client connection to the gateway: parse requests with httptools, one exchange at a time.

Pipelined requests are parsed ahead and wait (bodies buffered, reading paused) until the answer
before them is complete, so responses leave in order. Malformed input gets 400 (oversized heads
431) and the connection closes; nothing a client sends can raise out of here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from gyroscope.gateway._exchange import Exchange
from gyroscope.gateway._request import PlainRequest, plain_head, plain_request
from gyroscope.gateway._response import error_body, render_head
from gyroscope.gateway._upstream import set_nodelay, write_nowhere

if TYPE_CHECKING:
    from gyroscope.gateway._gateway import Gateway

__all__ = ["ClientConnection"]

log = logging.getLogger(__name__)


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class ClientConnection:
    """The downstream side of the proxy."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        # ``transport.write``, bound once: compiled code then calls it without a method lookup
        self.send: Callable[[bytes], object] = write_nowhere
        self.peer_ip = ""
        self.peer_ip_bytes = b""
        # At a message boundary as far as the parser's callbacks tell: a plain request may skip
        # httptools (see ``_request.plain_request``). ``used_parser``: it has seen bytes since.
        self.between = True
        self.used_parser = False
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.current: Exchange | None = None  # being answered
        self.receiving: Exchange | None = None  # being parsed
        self.waiting: deque[Exchange] = deque()  # pipelined, parsed ahead
        self.keep_alive = True
        self.closing = False
        self.closed = False
        self.activity = 0
        self.seen_activity = 0
        self.idle_since = gw.clock()
        self.reading_paused = False
        # Answered before its body was read (413, 429): read and drop the rest for a moment
        # before closing, or the kernel resets the connection and the client never sees the answer.
        self.lingering_since: float | None = None
        # While corked, writes collect here and leave in one send (head + body of a response
        # parsed from one upstream read): one syscall instead of two.
        self.corked = False
        self.out: list[bytes] = []

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement its interface
        self.transport = cast(asyncio.Transport, transport)
        self.send = self.transport.write
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if isinstance(peer, tuple) else "unix"
        self.peer_ip_bytes = self.peer_ip.encode()
        set_nodelay(transport)
        self.gw.clients.add(self)

    def eof_received(self) -> bool:
        return False  # the peer finished sending: close (what asyncio.Protocol's default does)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gw.forget_client(self)
        current, self.current = self.current, None
        if current is not None:
            current.client_gone()
        for ex in self.waiting:
            ex.client_gone()
        self.waiting.clear()

    def data_received(self, data: bytes) -> None:
        self.activity += 1
        if self.between and self.current is None:
            plain = plain_request(data)
            if plain is not None and self._begin_plain(plain, len(data)):
                return
        self.between = False
        self.used_parser = True
        try:
            self.parser.feed_data(data)
        # One name per clause: compiled (mypyc) code gives a name one type for the whole function.
        except _Reject as rejected:
            self.reject(rejected.status, str(rejected))
        except httptools.HttpParserCallbackError as failed:
            cause = failed.__context__
            if isinstance(cause, _Reject):
                self.reject(cause.status, str(cause))
            else:
                log.exception("%s: bug while handling a request", self.gw.name)
                self.reject(500, "internal error")
        except httptools.HttpParserUpgrade:
            self.reject(501, "protocol upgrade is not supported")
        except httptools.HttpParserError as malformed:
            self.reject(400, f"malformed request: {malformed}")

    def _begin_plain(self, plain: PlainRequest, size: int) -> bool:
        """Start a plain request without httptools; False leaves it to the parser."""
        gw = self.gw
        method, url, block, keep_alive = plain
        route = gw.routes[0] if gw.single_route else gw.match(url)
        if not route.plain or size > gw.max_header_bytes or self.lingering_since is not None:
            return False
        if self.used_parser:
            # httptools may hold the first bytes of a request it saw begin; start it afresh
            self.parser = httptools.HttpRequestParser(self)
            self.used_parser = False
        request_id = gw.next_request_id()
        head = plain_head(method, url, block, self.peer_ip_bytes, request_id)
        self.keep_alive = keep_alive
        self.current = ex = Exchange.plain(gw, self, method, url, route, head, request_id)
        ex.begin()
        return True

    def pause_writing(self) -> None:
        # the client reads slower than the replica writes: stop reading from the replica
        current = self.current
        if current is not None and current.upconn is not None:
            current.upconn.pause_reading()

    def resume_writing(self) -> None:
        current = self.current
        if current is not None and current.upconn is not None:
            current.upconn.resume_reading()

    # -- httptools callbacks -----------------------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        self.between = False
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.gw.limits.max_header_bytes:
            raise _Reject(414, "request URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.gw.limits.max_header_bytes:
            raise _Reject(431, "request headers too large")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        for name, value in self.headers:
            if name == b"content-length" and int(value) > self.gw.limits.max_body_bytes:
                raise _Reject(413, "request body too large")
        self.keep_alive = parser.should_keep_alive()
        ex = Exchange(
            self.gw, self, parser.get_method(), self.url, self.headers, parser.get_http_version()
        )
        # Ready for the next message (no on_message_begin callback: one call less per request).
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.receiving = ex
        if self.current is None:
            self.current = ex
            ex.begin()
        else:
            self.waiting.append(ex)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        if self.receiving is not None:
            self.receiving.request_body(body)

    def on_message_complete(self) -> None:
        self.between = True
        ex, self.receiving = self.receiving, None
        if ex is not None:
            ex.request_done()
        if self.lingering_since is not None and self.transport is not None:
            self.transport.close()

    # -- for exchanges -----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.corked:
            self.out.append(data)
        elif not self.closed:
            self.send(data)

    def cork(self) -> None:
        self.corked = True

    def uncork(self) -> None:
        self.corked = False
        out = self.out
        if out:
            self.out = []
            if not self.closed:
                self.send(out[0] if len(out) == 1 else b"".join(out))

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.out = []
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def exchange_done(self, ex: Exchange, now: float) -> None:
        if ex is not self.current:
            return
        self.current = None
        if self.closed or self.transport is None:
            return
        if self.out and (not self.keep_alive or self.closing or self.gw.draining):
            self.uncork()  # flush before closing
        if not self.keep_alive or self.closing or self.gw.draining:
            if self.receiving is ex:
                self.lingering_since = self.gw.clock()
                self.resume_reading()
                return
            self.transport.close()
            return
        self.idle_since = now
        if self.waiting:
            self.current = nxt = self.waiting.popleft()
            nxt.begin()
        if not self.waiting:
            self.resume_reading()

    def reject(self, status: int, message: str) -> None:
        """Answer a request the gateway cannot parse or accept, then close."""
        if self.transport is None or self.closed:
            return
        current = self.current
        if current is not None and current.responded:
            self.transport.abort()  # a response is already on the wire
            return
        if current is not None:
            current.client_gone()
            self.current = None
        self.gw.count_rejected(status)
        body = error_body(status, message)
        head = render_head(
            status, [(b"content-type", b"application/json")], b"%d" % len(body), False, False, b""
        )
        self.transport.write(head + body)
        self.transport.close()
        self.closed = True

    def close_if_idle(self) -> bool:
        if self.current is None and self.transport is not None and not self.closed:
            self.transport.close()
            return True
        return False
