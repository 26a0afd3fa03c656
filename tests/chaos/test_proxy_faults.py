"""Every fault of the proxy, measured from a real client through the proxy to a real upstream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from gyroscope.chaos import FaultProxy, Faults
from tests.chaos.conftest import Upstream

LONG = 10.0  # generous bound for anything that should happen "soon" on a loaded machine


@pytest.fixture
async def proxy(upstream: Upstream) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(upstream=upstream.address, name="test", seed=7)
    await p.start()
    yield p
    await p.stop(grace=0)


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> float:
    start = time.monotonic()
    writer.write(data)
    assert await asyncio.wait_for(reader.readexactly(len(data)), LONG) == data
    return time.monotonic() - start


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def test_transparent_by_default_many_connections(proxy: FaultProxy) -> None:
    async def one(i: int) -> None:
        reader, writer = await connect(proxy)
        payload = bytes([i]) * 65536
        writer.write(payload)
        assert await asyncio.wait_for(reader.readexactly(len(payload)), LONG) == payload
        await close(writer)

    await asyncio.gather(*(one(i) for i in range(20)))
    stats = proxy.stats()
    assert stats.connections_accepted == 20
    assert stats.bytes_upstream == stats.bytes_downstream == 20 * 65536
    await wait_for(lambda: proxy.stats().connections_active == 0)


async def test_half_close_passes_fin_and_data_back(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    payload = bytes(range(256)) * 4096
    writer.write(payload)
    writer.write_eof()  # half-close: the echo answers everything, then its own FIN
    echoed = await asyncio.wait_for(reader.read(), LONG)
    assert echoed == payload
    stats = proxy.stats()
    assert stats.bytes_upstream == stats.bytes_downstream == len(payload)
    await close(writer)
    await wait_for(lambda: proxy.stats().connections_active == 0)


async def wait_for(condition, timeout: float = LONG) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_latency_added_each_way_and_cleared(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"warm")
    proxy.update_faults(latency_ms=200)  # an existing connection feels it too
    assert await round_trip(reader, writer, b"ping") >= 0.4  # 200 ms up + 200 ms down
    proxy.clear_faults()
    assert await round_trip(reader, writer, b"ping") < 0.4
    await close(writer)


async def test_jitter_stays_within_bounds(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    proxy.update_faults(latency_ms=100, jitter_ms=100, direction="upstream")
    rtts = [await round_trip(reader, writer, b"ping") for _ in range(8)]
    assert min(rtts) >= 0.1  # never less than the latency
    assert max(rtts) <= 0.2 + 2.0  # latency + jitter, plus slack for a loaded machine
    assert max(rtts) - min(rtts) > 0.01  # the jitter really varies (8 draws from 0..100 ms)
    await close(writer)


async def test_chunks_never_overtake_each_other(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.update_faults(latency_ms=50, jitter_ms=200, direction="upstream")
    _reader, writer = await connect(proxy)
    expected = b"".join(b"%03d" % i for i in range(30))
    for i in range(30):
        writer.write(b"%03d" % i)
        await asyncio.sleep(0.005)  # separate chunks, each with its own random delay
    await upstream.wait_bytes(len(expected))
    assert b"".join(a.data for a in upstream.arrivals) == expected
    await close(writer)


async def test_direction_only_latency(proxy: FaultProxy, upstream: Upstream) -> None:
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"warm")
    proxy.update_faults(latency_ms=800, direction="downstream")
    start = time.monotonic()
    writer.write(b"ping")
    arrived = await upstream.wait_bytes(8)
    assert await asyncio.wait_for(reader.readexactly(4), LONG) == b"ping"
    total = time.monotonic() - start
    assert arrived - start < 0.8  # client to server was not delayed
    assert total >= 0.8  # server to client was
    proxy.update_faults(direction="upstream")
    start = time.monotonic()
    writer.write(b"pong")
    arrived = await upstream.wait_bytes(12)
    assert arrived - start >= 0.8
    await close(writer)


async def test_bandwidth_limits_transfer_time(proxy: FaultProxy, upstream: Upstream) -> None:
    rate, size = 50_000, 100_000
    proxy.update_faults(bandwidth_bps=rate, direction="upstream")
    _reader, writer = await connect(proxy)
    start = time.monotonic()
    writer.write(b"x" * size)
    done = await upstream.wait_bytes(size)
    burst = rate // 20
    assert done - start >= (size - burst) / rate  # >= 1.95 s for 100 kB at 50 kB/s
    assert upstream.bytes_received == size
    await close(writer)


async def test_blackhole_drops_everything_but_keeps_the_connection(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"warm")
    proxy.set_faults(Faults(blackhole=True))
    writer.write(b"lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.7)  # nothing back, and no EOF either
    assert upstream.bytes_received == 4  # only "warm" got through
    assert not reader.at_eof()
    assert proxy.stats().bytes_dropped >= 4
    # New connections are accepted and held open too.
    reader2, writer2 = await connect(proxy)
    writer2.write(b"also lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader2.read(1), 0.3)
    proxy.clear_faults()
    assert await round_trip(reader, writer, b"back") < LONG
    await close(writer)
    await close(writer2)


async def test_reset_resets_new_connections_only(proxy: FaultProxy) -> None:
    old_reader, old_writer = await connect(proxy)
    await round_trip(old_reader, old_writer, b"warm")
    proxy.update_faults(reset=True)
    # The kernel accepts, then the proxy answers with RST: it may beat the end of connect().
    with pytest.raises(ConnectionResetError):
        reader, writer = await connect(proxy)
        writer.write(b"hello")
        await asyncio.wait_for(reader.read(10), LONG)
    await round_trip(old_reader, old_writer, b"still fine")
    assert proxy.stats().connections_reset == 1
    proxy.clear_faults()
    reader, writer2 = await connect(proxy)
    await round_trip(reader, writer2, b"ok again")
    for w in (writer2, old_writer):
        await close(w)


async def test_refuse_then_listen_again_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    old_reader, old_writer = await connect(proxy)
    proxy.update_faults(refuse=True)
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy)
    assert not proxy.listening
    await round_trip(old_reader, old_writer, b"existing ones carry on")
    proxy.clear_faults()
    assert proxy.port == port
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"accepted again")
    await close(writer)
    await close(old_writer)


async def test_cut_resets_existing_connections_both_sides(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    pairs = [await connect(proxy) for _ in range(3)]
    for reader, writer in pairs:
        await round_trip(reader, writer, b"hi")
    assert proxy.cut() == 3
    for reader, writer in pairs:
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), LONG)
        await close(writer)
    await wait_for(lambda: upstream.resets == 3)  # the server side saw a reset too
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"new ones are fine")
    stats = proxy.stats()
    assert stats.connections_cut == 3 and stats.connections_active == 1
    await close(writer)


async def test_slow_close_delays_the_fin(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.update_faults(slow_close_ms=600)
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"data first")
    start = time.monotonic()
    writer.write_eof()
    await wait_for(lambda: len(upstream.eofs) == 1)
    assert upstream.eofs[0] - start >= 0.6
    # The echo answers our FIN with its own, slowed down the same way.
    assert await asyncio.wait_for(reader.read(), LONG) == b""
    assert time.monotonic() - start >= 1.2
    await close(writer)


async def test_timeout_stalls_then_closes(proxy: FaultProxy, upstream: Upstream) -> None:
    reader, writer = await connect(proxy)
    await round_trip(reader, writer, b"warm")
    start = time.monotonic()
    proxy.update_faults(timeout_ms=500)
    writer.write(b"dropped")
    assert await asyncio.wait_for(reader.read(), LONG) == b""  # closed, nothing forwarded
    assert time.monotonic() - start >= 0.5
    assert upstream.bytes_received == 4
    assert proxy.stats().connections_timed_out == 1
    await close(writer)


async def test_upstream_down_resets_the_client() -> None:
    async with FaultProxy(upstream="127.0.0.1:1", name="nowhere") as p:
        with pytest.raises(ConnectionResetError):
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            try:
                await asyncio.wait_for(reader.read(10), LONG)
            finally:
                writer.close()
        assert p.stats().upstream_errors == 1
    assert p.stats().connections_active == 0


async def test_back_pressure_bounds_memory(upstream: Upstream) -> None:
    upstream.echo = False
    p = FaultProxy(upstream=upstream.address, name="bp")
    await p.start()
    _reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
    # Throttle: the proxy may hold at most its queue bound (256 KiB) plus socket buffers.
    p.update_faults(bandwidth_bps=10_000)
    chunk = b"y" * 65536
    sent = 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2.0):
            while sent < 64 * 1024 * 1024:
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()  # blocks once the proxy stops reading from us
    assert sent < 64 * 1024 * 1024
    assert p.stats().bytes_upstream < 100_000  # 10 kB/s for ~2 s, plus one burst
    await p.stop(grace=0)
    writer.close()
