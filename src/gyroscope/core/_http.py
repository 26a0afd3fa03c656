"""A small, fast HTTP/1.1 server on asyncio Protocols and httptools.

The demo model server, the platform API and the fault proxy's control API all serve HTTP through
this module. It parses with httptools (the parser uvicorn uses), keeps connections alive, answers
pipelined requests in order, streams chunked bodies (SSE) with back-pressure, and cancels a
request's handler the moment its client goes away, so simulated work (a GPU slot) is freed at once.
A handler may upgrade a request to a WebSocket by returning a ``WebSocketResponse`` (see
``_websocket.py``: the kernel checks the handshake, wsproto handles the frames). Other upgrade
requests (``h2c``) are answered as plain HTTP/1.1 and the connection is closed.

>>> async def hello(request: Request) -> Response:
...     return Response.text("hello\\n")
>>> server = HttpServer(hello, port=0)   # await server.start(); ...; await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import cast

import httptools

from gyroscope.core._browser import origin_problem
from gyroscope.core._config import is_loopback
from gyroscope.core._messages import (
    REASONS,
    Handler,
    Request,
    Response,
    StreamResponse,
    date_header,
)
from gyroscope.core._websocket import (
    WebSocket,
    WebSocketResponse,
    accept_head,
    handshake_problem,
    is_websocket,
)
from gyroscope.errors import AddressInUseError, ServiceError

__all__ = [
    "Connection",
    "Handler",
    "HttpServer",
    "Request",
    "Response",
    "StreamResponse",
    "WebSocket",
    "WebSocketResponse",
]

log = logging.getLogger(__name__)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class _Reject:
    """A protocol error queued behind the requests before it, so answers stay in order."""

    __slots__ = ("message", "status")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Connection(asyncio.Protocol):
    """One client connection. Handlers reach it as ``request.conn`` to inject faults."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        # Each entry is answered in turn: (request, keep-alive) or a queued protocol error.
        self._pending: deque[tuple[Request, bool] | _Reject] = deque()
        self._task: asyncio.Task[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._reading = True
        self._broken = False  # a protocol error was seen: parse nothing more
        self._upgraded = b""  # bytes that followed an upgrade request, before we answered it
        self._upgrading = False
        self.websocket: WebSocket | None = None
        self.closed = False

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        self._server.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.forget(self)
        self._cancel_idle_timer()
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client went away: stop the work it asked for
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ConnectionResetError("client disconnected"))
            self._writable.exception()  # retrieved here so nobody logs it when no one awaits
        if self.websocket is not None:
            self.websocket.connection_lost()

    def data_received(self, data: bytes) -> None:
        self._cancel_idle_timer()
        if self.websocket is not None:
            self.websocket.feed(data)
            return
        if self._upgrading:  # frames sent before our 101: kept for the WebSocket (bounded)
            self._upgraded += data
            if len(self._upgraded) > self._server.max_header_bytes:
                self._fail(400, "data after an upgrade request before it was answered")
            return
        if self._broken:
            return
        try:
            self._parser.feed_data(data)
        except _BadRequest as exc:
            self._fail(exc.status, str(exc))
        except httptools.HttpParserUpgrade as exc:
            # The upgrade request itself is queued already; the rest of the bytes are not HTTP.
            self._upgrading = True
            self._upgraded = data[exc.args[0] :] if exc.args else b""
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raised; our own refusals keep their status.
            inner = exc.__context__
            if isinstance(inner, _BadRequest):
                self._fail(inner.status, str(inner))
            else:
                self._fail(400, f"malformed request: {exc}")
            return
        if self._task is None:
            self._arm_idle_timer()  # a request that stalls half-sent must not hold us forever

    # No eof_received: a client's FIN closes the connection and cancels its work, as nginx and
    # uvicorn do, because for a model server a client that hung up is far likelier than a
    # half-close that still wants its answer.

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self._server.max_header_bytes:
            raise _BadRequest(414, "request URL too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self._server.max_header_bytes:
            raise _BadRequest(431, "request headers too large")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > self._server.max_body_bytes:
            raise _BadRequest(413, "request body too large")
        if (
            self._headers.get("expect", "").lower() == "100-continue"
            and self.transport is not None
            and not self._pending
            and self._task is None
        ):
            self.transport.write(_CONTINUE)  # curl waits a second for this before a large body

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._server.max_body_bytes:
            raise _BadRequest(413, "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self._url)
        request = Request(
            self._parser.get_method().decode("ascii"),
            (parsed.path or b"/").decode("utf-8", "replace"),
            (parsed.query or b"").decode("utf-8", "replace"),
            self._headers,
            b"".join(self._body),
            self._parser.get_http_version(),
            self,
        )
        self._enqueue((request, self._parser.should_keep_alive()))

    # -- serving -------------------------------------------------------------------------------
    def _enqueue(self, item: tuple[Request, bool] | _Reject) -> None:
        self._pending.append(item)
        if self._task is None:
            self._task = self._loop.create_task(self._serve())
        if len(self._pending) > 32 and self._reading and self.transport is not None:
            self._reading = False
            self.transport.pause_reading()  # a client pipelining without reading answers

    def _fail(self, status: int, message: str) -> None:
        """A protocol error: answer it after what came before, then close."""
        self._broken = True
        if self._reading and self.transport is not None:
            self._reading = False
            self.transport.pause_reading()
        self._enqueue(_Reject(status, message))

    async def _serve(self) -> None:
        keep_alive = False
        try:
            while self._pending and not self.closed:
                item = self._pending.popleft()
                if not self._reading and not self._broken and len(self._pending) < 8:
                    self._reading = True
                    if self.transport is not None:
                        self.transport.resume_reading()
                if isinstance(item, _Reject):
                    self._reject(item.status, item.message)
                    return
                request, keep_alive = item
                keep_alive = await self._respond(request, keep_alive)
                if not keep_alive:
                    return
        except asyncio.CancelledError:
            pass
        except ConnectionError:
            self.abort()
        finally:
            self._task = None
        if self.closed or self.transport is None:
            return
        if self._server.draining:
            self.close()
        elif keep_alive:
            self._arm_idle_timer()

    async def _respond(self, request: Request, keep_alive: bool) -> bool:
        """Answer one request; returns whether the connection stays open."""
        refused = origin_problem(request.headers, check_host=self._server.check_host)
        if refused is not None:
            log.warning("%s: %s %s: %s", self._server.name, request.method, request.path, refused)
            self._reject(403, refused)
            return False
        if is_websocket(request.headers):
            problem = handshake_problem(request.method, request.headers)
            if problem is not None:
                self._reject(*problem)
                return False
            request.websocket = True
        if self._upgrading:
            keep_alive = False  # after an upgrade request the connection speaks HTTP no more
        try:
            response = await self._server.handler(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "%s: handler failed for %s %s", self._server.name, request.method, request.path
            )
            response = Response.error(500, "internal server error")
        if self.closed or self.transport is None:
            if isinstance(response, StreamResponse):
                await _aclose(response.chunks)
            return False
        if isinstance(response, WebSocketResponse):
            if request.websocket:
                await self._websocket(request, response)
                return False
            response = Response.error(426, "this endpoint speaks WebSocket (Upgrade: websocket)")
            response.headers.append(("upgrade", "websocket"))
        keep_alive = keep_alive and not self._server.draining  # a stop began meanwhile
        head_only = request.method == "HEAD"
        if isinstance(response, Response):
            self.transport.write(
                self._head(response.status, response.headers, len(response.body), keep_alive)
                + (b"" if head_only or response.status in (204, 304) else response.body)
            )
            if not keep_alive:
                self.close()
            return keep_alive
        await self._stream(request, response, keep_alive, head_only)
        return keep_alive and not self.closed

    async def _stream(
        self, request: Request, response: StreamResponse, keep_alive: bool, head_only: bool
    ) -> None:
        assert self.transport is not None
        self.transport.write(self._head(response.status, response.headers, None, keep_alive))
        try:
            if head_only:
                return
            async for chunk in response.chunks:
                if self.closed:
                    return
                if chunk:
                    self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    if self._writable is not None and not self._writable.done():
                        await self._writable
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            # The status line is gone already; a cut connection is the only honest signal left.
            log.exception(
                "%s: stream failed for %s %s", self._server.name, request.method, request.path
            )
            self.abort()
            return
        finally:
            await _aclose(response.chunks)
        if not self.closed:
            self.transport.write(b"0\r\n\r\n")
            if not keep_alive:
                self.close()

    async def _websocket(self, request: Request, response: WebSocketResponse) -> None:
        assert self.transport is not None
        transport = self.transport
        self.transport.write(accept_head(request.headers, response.headers))
        ws = WebSocket(
            transport.write,
            self._drain,
            self.close,
            self._cancel_session,
            max_message=self._server.max_body_bytes,
            pause_reading=self._pause_ws_reading,
        )
        self.websocket = ws
        pending, self._upgraded = self._upgraded, b""
        if pending:
            ws.feed(pending)
        try:
            await response.session(ws)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            log.exception("%s: WebSocket session failed for %s", self._server.name, request.path)
            ws.close_now(1011, "internal server error")
            return
        await ws.close(1000)

    async def _drain(self) -> None:
        if self._writable is not None and not self._writable.done():
            await self._writable

    def _cancel_session(self) -> None:
        """The client closed its WebSocket: stop the session, as for a client that hung up."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _pause_ws_reading(self, pause: bool) -> None:
        if self.transport is None or self.closed or pause != self._reading:
            return
        self._reading = not pause
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def _head(
        self, status: int, headers: list[tuple[str, str]], length: int | None, keep_alive: bool
    ) -> bytes:
        lines = [
            b"HTTP/1.1 %d %s\r\nserver: gyroscope\r\ndate: %s\r\n"
            % (status, REASONS.get(status, b"Unknown"), date_header())
        ]
        lines.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
        if length is None:
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            lines.append(b"content-length: %d\r\n" % length)
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _reject(self, status: int, message: str) -> None:
        if self.transport is None or self.closed:
            return
        response = Response.error(status, message)
        self.transport.write(
            self._head(status, response.headers, len(response.body), False) + response.body
        )
        self.close()

    def _arm_idle_timer(self) -> None:
        timeout = self._server.keepalive_timeout
        if timeout > 0 and self.transport is not None and self._idle_timer is None:
            self._idle_timer = self._loop.call_later(timeout, self._close_if_idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        if self._task is None:
            self.close()

    # -- for handlers and fault injection -----------------------------------------------------
    @property
    def idle(self) -> bool:
        return self._task is None

    def abort(self) -> None:
        """Drop the connection at once (the peer sees a reset); nothing more is written."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close the connection after what was already written; nothing more is written."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class HttpServer:
    (
        """Serve ``handler`` on ``host:port`` (port 0 picks a free one; read ``.port`` after start).

    Requests a web page of another site sends (an ``Origin`` that is not this server) are refused
    with 403; with ``check_host`` a server bound to loopback also refuses non-loopback ``Host``
    names (DNS rebinding). See ``_browser``.
    """
        ""
    )

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "http",
        max_header_bytes: int = 64 * 1024,
        max_body_bytes: int = 16 * 1024 * 1024,
        keepalive_timeout: float = 75.0,
        backlog: int = 2048,
        check_host: bool = False,
    ) -> None:
        self.handler = handler
        self.host = host
        # Control APIs ask for it: on loopback, refuse Host names a DNS-rebinding page would send.
        self.check_host = check_host and is_loopback(host)
        self.port = port
        self.name = name
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout = keepalive_timeout
        self.backlog = backlog
        self.connections: set[Connection] = set()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._all_closed = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start accepting; raises ``AddressInUseError`` when the port is taken."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: Connection(self),
                self.host,
                self.port,
                reuse_address=True,
                backlog=self.backlog,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(self.host, self.port, service=self.name) from exc
            raise ServiceError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}", service=self.name
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self.draining = False

    def forget(self, conn: Connection) -> None:
        """Called by a connection when it closes."""
        self.connections.discard(conn)
        if not self.connections:
            self._all_closed.set()

    async def stop_listening(self) -> None:
        """Stop accepting new connections (new ones are refused); existing ones carry on."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` seconds, then abort."""
        await self.stop_listening()
        self.draining = True
        for conn in list(self.connections):
            if conn.idle:
                conn.close()
            elif conn.websocket is not None:
                conn.websocket.close_now(1001, "server shutting down")
        self._all_closed.clear()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), timeout=grace)
        me = asyncio.current_task()  # stop() may run inside a handler (a shutdown endpoint)
        tasks = [c._task for c in self.connections if c._task is not None and c._task is not me]
        for conn in list(self.connections):
            conn.abort()
        if tasks:
            # Let the cancelled handlers run their cleanup before the caller tears down the loop.
            await asyncio.wait(tasks, timeout=2.0)
