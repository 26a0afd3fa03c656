"""WebSocket sessions (RFC 6455) on the HTTP kernel: the kernel checks the handshake, wsproto frames.

A handler answers a request whose ``Upgrade: websocket`` handshake the kernel has already checked
(``request.websocket`` is true; a malformed one never reaches the handler: it gets a 400) with a
``WebSocketResponse(session)``. The kernel then writes ``101 Switching Protocols`` with the RFC 6455
accept hash and runs ``session(ws)``. Frames are parsed and built by wsproto (a maintained sans-IO
library): pings are answered, a close frame from the client is answered and ends the session,
messages larger than the server's body limit close the connection with 1009.

When the client goes away (close frame or a cut connection) the session task is cancelled, like an
HTTP handler whose client hung up, so whatever it holds (a live tail) is freed at once. ``send_text``
waits while the client's socket buffer is full (the transport's pause_writing / resume_writing), so a
slow reader slows the sender instead of growing memory.

>>> async def echo(ws: WebSocket) -> None:
...     while (msg := await ws.receive()) is not None:
...         await ws.send_text(f"echo {msg}")
>>> async def handler(request):          # served by HttpServer(handler)
...     return WebSocketResponse(echo) if request.websocket else Response.text("use a WebSocket")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import generate_accept_token

__all__ = ["WebSocket", "WebSocketResponse", "accept_head", "handshake_problem", "is_websocket"]

Session = Callable[["WebSocket"], Awaitable[None]]

_CLOSE_WAIT = 5.0  # how long a server-initiated close waits for the client's close frame


class WebSocketResponse:
    """Upgrade this request to a WebSocket and run ``session(ws)`` on it.

    ``headers`` are added to the 101 answer (e.g. a chosen ``sec-websocket-protocol``).
    """

    __slots__ = ("headers", "session")

    def __init__(self, session: Session, *, headers: list[tuple[str, str]] | None = None) -> None:
        self.session = session
        self.headers = headers or []


def is_websocket(headers: Mapping[str, str]) -> bool:
    """Whether a request asks for a WebSocket (``Upgrade: websocket``)."""
    return "websocket" in headers.get("upgrade", "").lower()


def handshake_problem(method: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
    """(status, message) when a WebSocket handshake is malformed (RFC 6455 section 4.2.1)."""
    if method != "GET":
        return 400, f"a WebSocket handshake must be a GET, not {method}"
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if "upgrade" not in tokens:
        return 400, "WebSocket handshake without 'Connection: Upgrade'"
    key = headers.get("sec-websocket-key", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return 400, "WebSocket handshake needs Sec-WebSocket-Key: base64 of 16 random bytes"
    if headers.get("sec-websocket-version", "").strip() != "13":
        return 426, "unsupported Sec-WebSocket-Version (this server speaks 13)"
    return None


def accept_head(headers: Mapping[str, str], extra: list[tuple[str, str]]) -> bytes:
    """The ``101 Switching Protocols`` answer to a checked handshake."""
    accept = generate_accept_token(headers["sec-websocket-key"].strip().encode("latin-1"))
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
        b"sec-websocket-accept: %s\r\n" % accept,
    ]
    lines.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in extra)
    lines.append(b"\r\n")
    return b"".join(lines)


class WebSocket:
    """One server-side WebSocket: ``send_text``/``send_bytes``, ``receive``, ``close``.

    Built by the kernel (``Connection``); the transport callbacks are the connection's.
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        drain: Callable[[], Awaitable[None]],
        close_transport: Callable[[], None],
        on_remote_close: Callable[[], None],
        *,
        max_message: int,
        pause_reading: Callable[[bool], None] = lambda _pause: None,
    ) -> None:
        self._ws = WsConnection(ConnectionType.SERVER)
        self._write = write
        self._drain = drain
        self._close_transport = close_transport
        self._on_remote_close = on_remote_close
        self._pause_reading = pause_reading
        self._max_message = max_message
        self._parts: list[str | bytes] = []
        self._part_bytes = 0
        self._inbox: deque[str | bytes | None] = deque()
        self._arrived = asyncio.Event()
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- from the kernel -----------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes from the client (after the handshake)."""
        if self.closed:
            return
        self._ws.receive_data(data)
        self._handle_events()

    def connection_lost(self) -> None:
        if not self.closed:
            self._finish(1006, "connection lost")

    # -- for sessions --------------------------------------------------------------------------
    async def send_text(self, text: str) -> None:
        """Send one text message; waits while the client reads slower than we send."""
        await self._send(TextMessage(data=text))

    async def send_bytes(self, data: bytes) -> None:
        await self._send(BytesMessage(data=data))

    async def receive(self) -> str | bytes | None:
        """The next message from the client, or None once the connection is closed."""
        while not self._inbox:
            if self.closed:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        msg = self._inbox.popleft()
        if len(self._inbox) < 8:
            self._pause_reading(False)
        return msg

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close handshake: send a close frame, wait (briefly) for the client's, then hang up."""
        if self._ws.state is ConnectionState.OPEN:
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), _CLOSE_WAIT)
        if not self.closed:
            self._finish(code, reason)

    def close_now(self, code: int, reason: str) -> None:
        """Send a close frame and hang up without waiting for the answer (server shutdown)."""
        if self._ws.state is ConnectionState.OPEN:
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
        if not self.closed:
            self._finish(code, reason)

    # -- internals -----------------------------------------------------------------------------
    async def _send(self, event: TextMessage | BytesMessage) -> None:
        if self.closed or self._ws.state is not ConnectionState.OPEN:
            raise ConnectionResetError("the WebSocket is closed")
        self._write(self._ws.send(event))
        await self._drain()

    def _handle_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._on_message(event)
            elif isinstance(event, Ping):
                self._write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                state = self._ws.state
                if state is ConnectionState.REMOTE_CLOSING:
                    self._write(self._ws.send(event.response()))  # answer, then hang up
                elif state is ConnectionState.OPEN:  # wsproto's verdict on a malformed frame
                    self._write(self._ws.send(CloseConnection(event.code, event.reason)))
                self._finish(event.code, event.reason or "")
                if state is not ConnectionState.CLOSED:  # not the answer to our own close
                    self._on_remote_close()
                return
            if self.closed:
                return

    def _on_message(self, event: TextMessage | BytesMessage) -> None:
        self._parts.append(bytes(event.data) if isinstance(event.data, bytearray) else event.data)
        self._part_bytes += len(event.data)
        if self._part_bytes > self._max_message:
            self.close_now(1009, f"message larger than {self._max_message} bytes")
            self._on_remote_close()
            return
        if event.message_finished:
            parts, self._parts, self._part_bytes = self._parts, [], 0
            msg: str | bytes = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)  # type: ignore[arg-type]
            self._inbox.append(msg)
            self._arrived.set()
            if len(self._inbox) > 32:
                self._pause_reading(True)  # a client sending faster than the session reads

    def _finish(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self._closed.set()
        self._arrived.set()
        self._close_transport()
