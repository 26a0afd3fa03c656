"""Live tail: Loki's WebSocket ``/loki/api/v1/tail`` (Grafana's live mode) and the lines it sends.

Loki's protocol: the client opens ``/loki/api/v1/tail?query=...&start=...&limit=...&delay_for=...``
as a WebSocket; the server first sends up to ``limit`` matching lines since ``start`` (oldest
first), then every new matching line, each message being
``{"streams": [{"stream": {labels}, "values": [["<ns>", "line"], ...]}], "dropped_entries": []}``.

Nothing is ever dropped here: new lines are read back from the store by sequence number, so a slow
client only delays its own messages (``send_text`` waits on the socket's back-pressure) and
``dropped_entries`` stays empty. ``delay_for`` (0-5 s) holds lines back that long after they
arrive, as Loki does for late entries. When the client closes, its session is cancelled and the
tail costs nothing more.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import orjson

from gyroscope.core import WebSocket
from gyroscope.logs._labels import parse_labels
from gyroscope.logs._logql import LogQuery
from gyroscope.logs._query import LogLine, _pipeline, run_log_query, stream_matcher
from gyroscope.logs._record import FrameError, decode
from gyroscope.logs._store import LogStore

if TYPE_CHECKING:
    from gyroscope.logs._service import LogServer

__all__ = ["LokiTail", "follow", "lines_since", "loki_message"]

_BATCH = 1000  # lines per WebSocket message


def lines_since(store: LogStore, q: LogQuery, seen: int, upto: int | None = None) -> list[LogLine]:
    """Matching lines with ``seen <= seq < upto``, oldest first; reads only those records."""
    ok, run = stream_matcher(q.matchers), _pipeline(q)
    labels_of: dict[str, dict[str, str]] = {}
    out: list[LogLine] = []
    for seg in list(store.segments):
        count = seg.count  # first: the other index arrays are at least this long
        if count == 0 or seg.last_seq < seen:
            continue
        start = bisect.bisect_left(seg.seqs, seen, 0, count)
        try:
            with seg.mapped() as view:
                for idx in range(start, count):
                    seq = seg.seqs[idx]
                    if upto is not None and seq >= upto:
                        break
                    text = seg.streams[seg.sids[idx]]
                    if not ok(text):
                        continue
                    try:
                        rec = decode(view, seg.offsets[idx], with_leaf=False).record
                    except FrameError:
                        continue  # reported by the scrubber and verify; the tail serves the rest
                    if rec.redacted:
                        continue
                    labels = labels_of.get(text)
                    if labels is None:
                        labels = labels_of[text] = parse_labels(text)
                    line = rec.line.decode("utf-8", "replace")
                    fields = run(line, labels)
                    if fields is not None:
                        out.append(LogLine(seq, rec.ts_ns, fields, line))
        except FileNotFoundError:
            continue  # dropped by retention meanwhile
    return out


async def follow(
    server: LogServer, q: LogQuery, seen: int, seconds: float, delay_s: float = 0.0
) -> AsyncIterator[list[LogLine]]:
    """Batches of new matching lines from sequence number ``seen`` on, for ``seconds``.

    Never misses a batch: the store's next sequence number is compared before each wait (an
    ingest that lands while we read wakes nobody), and the wait times out every second.
    """
    store = server.store
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if store.next_seq == seen:
            try:
                await asyncio.wait_for(server.new_data.wait(), min(left, 1.0))
            except TimeoutError:
                continue
        if delay_s:
            await asyncio.sleep(delay_s)
        upto = store.next_seq
        lines = await asyncio.to_thread(lines_since, store, q, seen, upto)
        seen = upto
        if lines:
            yield lines


def loki_message(lines: list[LogLine]) -> str:
    """One Loki tail message for ``lines`` (grouped by label set, order kept within a stream)."""
    groups: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
    for ln in lines:
        groups.setdefault(tuple(sorted(ln.labels.items())), []).append([str(ln.ts_ns), ln.line])
    streams = [{"stream": dict(k), "values": v} for k, v in groups.items()]
    return orjson.dumps({"streams": streams, "dropped_entries": []}).decode()


class LokiTail:
    """One WebSocket tail session (built by the API after the request was checked)."""

    def __init__(
        self, server: LogServer, q: LogQuery, *, start_ns: int, limit: int, delay_s: int
    ) -> None:
        self.server = server
        self.q = q
        self.start_ns = start_ns
        self.limit = limit
        self.delay_s = delay_s

    async def run(self, ws: WebSocket) -> None:
        api = self.server.api
        api.live_tails += 1
        try:
            await self._serve(ws)
        finally:
            api.live_tails -= 1

    async def _serve(self, ws: WebSocket) -> None:
        store = self.server.store
        seen = store.next_seq
        if self.limit:
            backlog = await asyncio.to_thread(
                run_log_query,
                store,
                self.q,
                start_ns=self.start_ns,
                end_ns=2**63 - 1,
                limit=self.limit,
            )
            await self._send(ws, [ln for ln in reversed(backlog.lines) if ln.seq < seen])
        seconds = self.server.config.tail_max_seconds
        async for lines in follow(self.server, self.q, seen, seconds, self.delay_s):
            await self._send(ws, lines)
        await ws.close(1000, "tail duration limit reached")

    @staticmethod
    async def _send(ws: WebSocket, lines: list[LogLine]) -> None:
        for i in range(0, len(lines), _BATCH):
            await ws.send_text(loki_message(lines[i : i + _BATCH]))
