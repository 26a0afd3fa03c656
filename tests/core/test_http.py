"""The HTTP kernel, driven over real sockets on both event loops it runs on (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvloop

from gyroscope.core import HttpServer, Request, Response, StreamResponse
from gyroscope.errors import AddressInUseError

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def on_loops(test: Callable[[], Awaitable[None]]) -> Any:
    """Run an async scenario once on each loop (the daemon uses uvloop; libraries may not)."""

    @pytest.mark.parametrize("loop_name", list(LOOPS))
    def wrapper(loop_name: str) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
            runner.run(asyncio.wait_for(test(), timeout=30))

    wrapper.__name__ = test.__name__
    return wrapper


class App:
    """A handler with a few routes that tests steer."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self, request: Request) -> Response | StreamResponse:
        if request.path == "/slow":
            await asyncio.sleep(float(request.query_params().get("s", ["0.05"])[0]))
            return Response.text(f"slow {request.query}")
        if request.path == "/wait":
            self.started.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            return Response.text("released")
        if request.path == "/stream":
            return StreamResponse(self._chunks(), headers=[("content-type", "text/plain")])
        if request.path == "/broken-stream":
            return StreamResponse(self._broken())
        if request.path == "/boom":
            raise RuntimeError("handler bug")
        if request.path == "/echo":
            return Response(request.body, headers=[("x-method", request.method)])
        return Response.text(f"hello {request.path}")

    async def _chunks(self) -> AsyncIterator[bytes]:
        for i in range(3):
            await asyncio.sleep(0.01)
            yield f"chunk{i};".encode()

    async def _broken(self) -> AsyncIterator[bytes]:
        yield b"first;"
        await asyncio.sleep(0.01)
        raise RuntimeError("stream bug")


@contextlib.asynccontextmanager
async def serving(**kwargs: Any) -> AsyncIterator[tuple[HttpServer, App]]:
    app = App()
    server = HttpServer(app, port=0, **kwargs)
    await server.start()
    try:
        yield server, app
    finally:
        app.release.set()
        await server.stop(grace=1.0)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One content-length response from a raw connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return status, headers, body


async def read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 10)


async def poll(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@on_loops
async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with serving() as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for i in range(3):
            writer.write(f"GET /r{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            status, headers, body = await read_response(reader)
            assert (status, body) == (200, f"hello /r{i}".encode())
            assert "connection" not in headers
        assert len(server.connections) == 1
        writer.write(b"GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert headers["connection"] == "close"
        assert await read_all(reader) == b""  # the server closed after answering
        writer.close()


@on_loops
async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serving() as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # The first request is the slowest: answers must still come back in request order.
        writer.write(
            b"GET /slow?s=0.1 HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /slow?s=0 HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nabcde"
        )
        answers = [await read_response(reader) for _ in range(3)]
        assert [a[2] for a in answers] == [b"slow s=0.1", b"slow s=0", b"abcde"]
        writer.close()


@on_loops
async def test_garbage_after_a_good_request_is_answered_400_in_order() -> None:
    async with serving() as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /slow?s=0.05 HTTP/1.1\r\nhost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
        first = await read_response(reader)
        second = await read_response(reader)
        assert (first[0], first[2]) == (200, b"slow s=0.05")
        assert second[0] == 400 and b"malformed request" in second[2]
        assert await read_all(reader) == b""
        writer.close()


@on_loops
async def test_oversized_headers_get_431_and_large_bodies_413() -> None:
    async with serving(max_header_bytes=1024, max_body_bytes=100) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 2000 + b"\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 431 and b"headers too large" in body
        writer.close()
        # Declared too large: refused before the body is even sent.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 101\r\n\r\n")
        assert (await read_response(reader))[0] == 413
        writer.close()
        # Chunked, growing past the limit.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        chunk = b"40\r\n" + b"b" * 64 + b"\r\n"
        writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(chunk * 2)
        assert (await read_response(reader))[0] == 413
        writer.close()


@on_loops
async def test_head_sends_headers_without_body() -> None:
    async with serving() as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"HEAD /thing HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"content-length: 12" in head  # len("hello /thing")
        writer.write(b"GET /next HTTP/1.1\r\nhost: x\r\n\r\n")
        status, _, body = await read_response(reader)  # no stray body bytes in between
        assert (status, body) == (200, b"hello /next")
        writer.close()


@on_loops
async def test_chunked_stream_and_errors_with_a_real_client() -> None:
    async with serving() as (server, _), httpx.AsyncClient(base_url=server.url) as client:
        async with client.stream("GET", "/stream") as response:
            assert response.headers["transfer-encoding"] == "chunked"
            body = b"".join([part async for part in response.aiter_raw()])
        assert body == b"chunk0;chunk1;chunk2;"
        boom = await client.get("/boom")
        assert boom.status_code == 500 and boom.json()["error"]["message"]
        # The same pooled connection still works after a handler failure.
        assert (await client.get("/after")).text == "hello /after"
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/broken-stream")  # cut mid-body: the client must notice


@on_loops
async def test_expect_100_continue_is_honoured() -> None:
    async with serving() as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"xyz")
        assert (await read_response(reader))[2] == b"xyz"
        writer.close()


@on_loops
async def test_client_disconnect_cancels_the_handler() -> None:
    async with serving() as (server, app):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.wait_for(app.started.wait(), 10)
        writer.close()
        await asyncio.wait_for(app.cancelled.wait(), 10)
        await poll(lambda: not server.connections)


@on_loops
async def test_graceful_stop_finishes_in_flight_then_refuses() -> None:
    app = App()
    server = HttpServer(app, port=0)
    await server.start()
    port = server.port
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
    await asyncio.wait_for(app.started.wait(), 10)
    stopping = asyncio.ensure_future(server.stop(grace=10.0))
    assert await read_all(idle_reader) == b""  # idle keep-alive connections are closed at once
    await poll(lambda: not server.listening)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    app.release.set()
    status, headers, body = await read_response(reader)
    assert (status, body, headers["connection"]) == (200, b"released", "close")
    await asyncio.wait_for(stopping, 10)
    assert not app.cancelled.is_set()
    writer.close()
    idle_writer.close()


@on_loops
async def test_stop_cancels_what_outlives_the_grace() -> None:
    app = App()
    server = HttpServer(app, port=0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
    await asyncio.wait_for(app.started.wait(), 10)
    await asyncio.wait_for(server.stop(grace=0.2), 10)
    assert app.cancelled.is_set()
    with contextlib.suppress(ConnectionError):
        assert await read_all(reader) == b""
    writer.close()


@on_loops
async def test_stop_listening_then_listen_again_on_the_same_port() -> None:
    async with serving() as (server, _):
        port = server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await server.stop_listening()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /still HTTP/1.1\r\nhost: x\r\n\r\n")  # open connections carry on
        assert (await read_response(reader))[2] == b"hello /still"
        await server.start()
        assert server.port == port
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/again")).status_code == 200
        writer.close()


@on_loops
async def test_port_in_use_is_a_clear_error() -> None:
    async with serving() as (server, _):
        other = HttpServer(App(), port=server.port, name="second")
        with pytest.raises(AddressInUseError, match="address already in use"):
            await other.start()


@on_loops
async def test_idle_and_half_sent_requests_time_out() -> None:
    async with serving(keepalive_timeout=0.2) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        await read_response(reader)
        assert await read_all(reader) == b""  # idle keep-alive connection closed by the server
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n")  # headers never finished
        assert await read_all(reader) == b""
        writer.close()
        await poll(lambda: not server.connections)
