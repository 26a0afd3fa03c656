"""Real loopback servers for fault-proxy tests: an echo upstream that records what it saw, and when."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest


@dataclass
class Arrival:
    at: float
    data: bytes


@dataclass
class Upstream:
    """An echo server: answers every chunk at once, and a FIN with a FIN (unless ``echo=False``)."""

    echo: bool = True
    port: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    eofs: list[float] = field(default_factory=list)
    resets: int = 0
    accepted: int = 0
    received: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def bytes_received(self) -> int:
        return sum(len(a.data) for a in self.arrivals)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while data := await reader.read(65536):
                self.arrivals.append(Arrival(time.monotonic(), data))
                self.received.set()
                if self.echo:
                    writer.write(data)
                    await writer.drain()
            self.eofs.append(time.monotonic())
            if self.echo:
                writer.write_eof()
                await writer.drain()
        except ConnectionResetError:
            self.resets += 1
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def wait_bytes(self, size: int, timeout: float = 30.0) -> float:
        """Wait until ``size`` bytes arrived in total; return when the last of them did."""
        deadline = time.monotonic() + timeout
        while self.bytes_received < size:
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream got {self.bytes_received} of {size} bytes")
            self.received.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.received.wait(), timeout=0.2)
        return self.arrivals[-1].at


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
    up.port = server.sockets[0].getsockname()[1]
    yield up
    server.close()
