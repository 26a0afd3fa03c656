"""WebSocket upgrades in the HTTP kernel, driven by a real client (``websockets``) and raw sockets,
on both event loops the kernel runs on."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gyroscope.core import HttpServer, Request, Response
from gyroscope.core._websocket import WebSocket, WebSocketResponse

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def on_loops(test: Callable[[], Awaitable[None]]) -> Any:
    @pytest.mark.parametrize("loop_name", list(LOOPS))
    def wrapper(loop_name: str) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            runner.run(asyncio.wait_for(test(), timeout=60))

    wrapper.__name__ = test.__name__
    return wrapper


class App:
    """/echo echoes; /bye sends one message and returns; /flood sends until stopped."""

    def __init__(self) -> None:
        self.sessions = 0
        self.ended = asyncio.Event()
        self.sent = 0

    async def __call__(self, request: Request) -> Response | WebSocketResponse:
        if request.path == "/plain":
            return WebSocketResponse(self.echo)  # whether or not the client asked for one
        session = {"/echo": self.echo, "/bye": self.bye, "/flood": self.flood}.get(request.path)
        if not request.websocket or session is None:
            return Response.text(f"plain {request.path}")
        return WebSocketResponse(session)

    async def echo(self, ws: WebSocket) -> None:
        self.sessions += 1
        try:
            while (msg := await ws.receive()) is not None:
                await ws.send_text(f"echo {msg!s}")
        finally:
            self.sessions -= 1
            self.ended.set()

    async def bye(self, ws: WebSocket) -> None:
        await ws.send_text("bye")

    async def flood(self, ws: WebSocket) -> None:
        chunk = "x" * 65536
        try:
            for _ in range(2000):
                await ws.send_text(chunk)
                self.sent += 1
        finally:
            self.ended.set()


async def started(app: App, **kw: Any) -> HttpServer:
    server = HttpServer(app, port=0, **kw)
    await server.start()
    return server


def ws_url(server: HttpServer, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def raw_request(server: HttpServer, head: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 30)
    writer.close()
    return data


@on_loops
async def test_text_ping_and_client_close_end_the_session() -> None:
    app = App()
    server = await started(app)
    try:
        async with connect(ws_url(server, "/echo")) as ws:
            await ws.send("hello")
            assert await ws.recv() == "echo hello"
            await ws.send(b"raw")
            assert await ws.recv() == "echo b'raw'"
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 30)  # answered by the kernel, not the session
            assert app.sessions == 1
        assert ws.close_code == 1000  # the close handshake completed
        await asyncio.wait_for(app.ended.wait(), 30)
        assert app.sessions == 0
    finally:
        await server.stop(1.0)


@on_loops
async def test_session_end_closes_cleanly_and_abrupt_disconnect_cancels() -> None:
    app = App()
    server = await started(app)
    try:
        async with connect(ws_url(server, "/bye")) as ws:
            assert await ws.recv() == "bye"
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1000
        # a client that vanishes without a close frame: the session is cancelled all the same
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 101 ")
        for _ in range(1000):
            if app.sessions == 1:
                break
            await asyncio.sleep(0.01)
        app.ended.clear()
        writer.transport.abort()
        await asyncio.wait_for(app.ended.wait(), 30)
        assert app.sessions == 0
    finally:
        await server.stop(1.0)


@on_loops
async def test_malformed_handshakes_are_refused_before_the_handler() -> None:
    app = App()
    server = await started(app)
    base = "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        no_key = await raw_request(server, base + "Sec-WebSocket-Version: 13\r\n\r\n")
        assert no_key.startswith(b"HTTP/1.1 400 ") and b"Sec-WebSocket-Key" in no_key
        bad_key = await raw_request(
            server, base + "Sec-WebSocket-Key: not-base64!\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert bad_key.startswith(b"HTTP/1.1 400 ")
        old = await raw_request(
            server, base + f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        assert old.startswith(b"HTTP/1.1 426 ")
        post = await raw_request(
            server,
            base.replace("GET", "POST")
            + f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        assert post.startswith(b"HTTP/1.1 400 ") and b"GET" in post
        assert app.sessions == 0
        with pytest.raises(InvalidStatus) as err:
            async with connect(ws_url(server, "/nothing-here")):
                pass
        assert err.value.response.status_code == 200  # the handler answered plain HTTP
    finally:
        await server.stop(1.0)


@on_loops
async def test_non_websocket_requests_are_unchanged() -> None:
    app = App()
    server = await started(app)
    try:
        plain = await raw_request(server, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 426 ") and b"upgrade: websocket" in plain
        h2c = await raw_request(
            server,
            "GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        )
        assert h2c.startswith(b"HTTP/1.1 200 ") and b"connection: close" in h2c
        assert h2c.endswith(b"plain /x")
    finally:
        await server.stop(1.0)


@on_loops
async def test_slow_reader_back_pressure_and_oversized_message() -> None:
    app = App()
    server = await started(app, max_body_bytes=1024)
    try:
        async with connect(ws_url(server, "/flood"), max_queue=4, max_size=None) as ws:
            # the client reads nothing: the session must stall on the full socket, not buffer 128 MB
            last = -1
            while last != app.sent:
                last = app.sent
                await asyncio.sleep(0.5)
            assert app.sent < 2000
            got = 0
            while got < 2000:
                assert len(await ws.recv()) == 65536
                got += 1
        await asyncio.wait_for(app.ended.wait(), 30)
        assert app.sent == 2000
        async with connect(ws_url(server, "/echo")) as ws:
            await ws.send("y" * 2048)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1009
    finally:
        await server.stop(1.0)


@on_loops
async def test_server_stop_closes_websockets_going_away() -> None:
    app = App()
    server = await started(app)
    async with connect(ws_url(server, "/echo")) as ws:
        await ws.send("hi")
        assert await ws.recv() == "echo hi"
        await server.stop(1.0)
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1001
    assert app.sessions == 0
