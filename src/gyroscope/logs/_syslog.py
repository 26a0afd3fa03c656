"""Syslog listeners: RFC 5424 and RFC 3164 over UDP (one message per datagram) and TCP (RFC 6587:
octet-counted frames, or one message per line).

Syslog has no way to answer, so a malformed message is counted in
``gyro_logs_rejected_total`` and logged once per peer per minute instead of being dropped silently;
valid messages go through group commit like every other ingest path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gyroscope.logs._errors import BadInputError
from gyroscope.logs._ingest import parse_syslog
from gyroscope.logs._store import Entry

__all__ = ["SyslogTcp", "SyslogUdp"]

log = logging.getLogger(__name__)
Sink = Callable[[list[Entry]], Awaitable[object]]
_MAX_FRAME = 256 * 1024


class _Reporter:
    def __init__(self, on_reject: Callable[[], None]) -> None:
        self.on_reject = on_reject
        self._last: dict[str, float] = {}

    def reject(self, peer: str, exc: BadInputError) -> None:
        self.on_reject()
        now = time.monotonic()
        if now - self._last.get(peer, -1e9) > 60:
            self._last[peer] = now
            log.warning("syslog from %s rejected: %s", peer, exc)


class SyslogUdp(asyncio.DatagramProtocol):
    """One message per datagram; messages arriving together share one group commit."""

    def __init__(self, sink: Sink, on_reject: Callable[[], None]) -> None:
        self.sink = sink
        self.reporter = _Reporter(on_reject)
        self._pending: list[Entry] = []
        self._flushing = False

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._pending.append(parse_syslog(data, peer=addr[0]))
        except BadInputError as exc:
            self.reporter.reject(addr[0], exc)
            return
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self.sink(batch)
        finally:
            self._flushing = False


class SyslogTcp:
    """A stream server handler: octet counting (``<len> <msg>``) or newline-delimited messages."""

    def __init__(self, sink: Sink, on_reject: Callable[[], None]) -> None:
        self.sink = sink
        self.reporter = _Reporter(on_reject)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        try:
            while True:
                msg = await self._read_one(reader)
                if msg is None:
                    return
                try:
                    entry = parse_syslog(msg, peer=peer)
                except BadInputError as exc:
                    self.reporter.reject(peer, exc)
                    continue
                await self.sink([entry])
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ) as exc:
            log.info("syslog connection from %s closed: %s", peer, exc)
        finally:
            writer.close()

    @staticmethod
    async def _read_one(reader: asyncio.StreamReader) -> bytes | None:
        first = await reader.read(1)
        if not first:
            return None
        if first.isdigit():  # RFC 6587 octet counting
            digits = first + await reader.readuntil(b" ")
            length = int(digits[:-1])
            if length > _MAX_FRAME:
                raise ValueError(f"syslog frame of {length} bytes is too large")
            return await reader.readexactly(length)
        return first + (await reader.readuntil(b"\n")).rstrip(b"\n")
