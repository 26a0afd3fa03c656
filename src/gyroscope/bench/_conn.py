"""One keep-alive HTTP/1.1 client connection: an asyncio Protocol around httptools' parser.

The protocol does no scheduling of its own: it reports a complete response, a failure or its loss to
the engine that owns it (``Owner``), which decides what to send next. Everything here runs once per
response, so it is kept to attribute reads and a few calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any, Protocol

import httptools

__all__ = ["Conn", "Owner", "StreamConn", "classify"]


class Owner(Protocol):
    def on_ready(self, conn: Conn) -> None: ...
    def on_response(self, conn: Conn, status: int, keep_alive: bool) -> None: ...
    def on_failure(self, conn: Conn, kind: str) -> None: ...


_KINDS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (ConnectionRefusedError, "refused"),
    (TimeoutError, "timeout"),
    (socket.gaierror, "dns"),
    ((ssl.SSLError, ssl.CertificateError), "tls"),
    (httptools.HttpParserError, "protocol"),
    (ConnectionError, "reset"),  # RST (or EOF, below) while a request was in flight
    (OSError, "connect"),
)


def classify(exc: BaseException | None) -> str:
    """The error kind a failed request is counted under."""
    if exc is None:
        return "reset"
    for types, kind in _KINDS:
        if isinstance(exc, types):
            return kind
    return "other"


class Conn(asyncio.Protocol):
    """A client connection; ``start`` is the intended send time of the request in flight."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.start = 0.0
        self.sent = 0.0
        self.nbytes = 0
        self.expect: frozenset[int] = frozenset()
        self.closed = False
        self.retire = False
        self.slot: Any = None  # per-request state an engine may attach (the LLM stream tracker)
        self.sink: Any = None  # what a streaming connection feeds its body to (see StreamConn)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not a TCP socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.owner.on_ready(self)

    def send(self, data: bytes, start: float, expect: frozenset[int], now: float) -> None:
        self.busy = True
        self.start = start
        self.sent = now
        self.nbytes = 0
        self.expect = expect
        self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - we never ask for an upgrade
            self.fail("protocol")
        except httptools.HttpParserError:
            self.fail("protocol")

    def on_message_complete(self) -> None:
        if not self.busy:
            # A response nobody asked for: the server is not speaking HTTP/1.1 request/response.
            self.fail("protocol")
            return
        self.busy = False
        self.owner.on_response(self, self.parser.get_status_code(), self.parser.should_keep_alive())

    def fail(self, kind: str) -> None:
        """Count the request in flight (if any) as ``kind`` and drop the connection."""
        if self.closed:
            return
        self.closed = True
        busy, self.busy = self.busy, False
        if self.transport is not None:
            self.transport.abort()
        self.owner.on_failure(self, kind if busy else "")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        if self.busy and exc is None and self.nbytes and self.parser.get_status_code():
            # A response delimited by the end of the connection (no length, not chunked).
            self.busy = False
            self.closed = True
            self.owner.on_response(self, self.parser.get_status_code(), False)
            return
        self.closed = True
        busy, self.busy = self.busy, False
        self.owner.on_failure(self, classify(exc) if busy else "")

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Relay:
    """The parser callbacks of a streaming connection: the body goes to the sink, the end of the
    message to the connection. The parser looks its callbacks up once, when it is made, so each
    body chunk costs one Python call (the sink's), not a hop through the connection as well."""

    __slots__ = ("on_body", "on_message_complete")

    def __init__(self, on_body: Any, on_message_complete: Any) -> None:
        self.on_body = on_body
        self.on_message_complete = on_message_complete


class StreamConn(Conn):
    """A connection whose response body chunks go straight to ``sink.on_body(body)``.

    The sink (the LLM stream decoder) lives as long as the connection; the engine resets it for
    each request and attaches it as the connection's ``slot``.
    """

    def __init__(self, owner: Owner, sink: Any) -> None:
        super().__init__(owner)
        self.sink = sink
        self.parser = httptools.HttpResponseParser(_Relay(sink.on_body, self.on_message_complete))
