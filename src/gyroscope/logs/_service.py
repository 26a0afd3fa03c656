"""``LogServer``: the store, group commit, HTTP API, syslog listeners and the background work
(signed checkpoints every few seconds, the scrubber, retention) as one ``Service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from gyroscope.core import Health, HttpServer, Service, parse_host_port
from gyroscope.logs._api import LogApi
from gyroscope.logs._commit import GroupCommitter
from gyroscope.logs._config import LogsConfig, parse_size
from gyroscope.logs._logql import parse_duration, parse_selector
from gyroscope.logs._maintain import apply_retention
from gyroscope.logs._query import stream_matcher
from gyroscope.logs._replication import Replication
from gyroscope.logs._retention import RetentionRule
from gyroscope.logs._scrub import VerifyReport, verify_store
from gyroscope.logs._store import AppendResult, Entry, LogStore
from gyroscope.logs._syslog import SyslogTcp, SyslogUdp

__all__ = ["LogMetrics", "LogServer"]

log = logging.getLogger(__name__)


class LogMetrics:
    """Prometheus metrics of one log server (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lines = Counter("gyro_logs_ingested_lines", "Lines acknowledged (fsynced)", registry=r)
        self.bytes = Counter("gyro_logs_ingested_bytes", "Bytes acknowledged", registry=r)
        self.rejected = Counter(
            "gyro_logs_rejected", "Requests or messages refused as malformed", registry=r
        )
        self.queries = Counter("gyro_logs_queries", "Queries answered", registry=r)
        self.segments = Gauge("gyro_logs_segments", "Segment files", registry=r)
        self.records = Gauge(
            "gyro_logs_records", "Records in the log (Merkle tree size)", registry=r
        )
        self.damaged = Gauge(
            "gyro_logs_damaged_regions", "Damaged regions found on read", registry=r
        )
        self.verify_ok = Gauge(
            "gyro_logs_verify_ok", "1 when the last scrub found nothing", registry=r
        )

    def refresh(self, server: LogServer) -> None:
        self.segments.set(len(server.store.segments))
        self.records.set(server.store.merkle.size)
        self.damaged.set(len(server.store.damage))
        if server.last_verify is not None:
            self.verify_ok.set(1 if server.last_verify.ok else 0)


class LogServer(Service):
    """The log server of ``gyro up`` and ``gyro logs serve``.

    >>> server = LogServer(LogsConfig(listen="127.0.0.1:0"), Path("/tmp/gyro-logs-doc"))
    >>> server.name
    'logs'
    """

    def __init__(self, config: LogsConfig, path: Path, *, name: str = "logs") -> None:
        super().__init__(name)
        self.config = config
        self.path = path
        self.store = LogStore(
            path,
            segment_bytes=config.segment_mb * 1024 * 1024,
            checkpoint_every=config.checkpoint_every,
            checkpoint_dir=Path(config.checkpoint_dir) if config.checkpoint_dir else None,
        )
        self.metrics = LogMetrics()
        self.api = LogApi(self)
        host, port = parse_host_port(config.listen)
        self.http = HttpServer(self.api, host=host, port=port, name=name, check_host=True)
        self.committer: GroupCommitter | None = None
        self.new_data = asyncio.Event()
        self.last_verify: VerifyReport | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Any] = []
        self.syslog_ports: dict[str, int] = {}
        self._rate: deque[tuple[float, int]] = deque(maxlen=61)  # (monotonic s, lines) per second
        self.replication: Replication | None = (
            Replication(config.replication, self.store) if config.replication else None
        )

    async def start(self) -> None:
        await asyncio.to_thread(self.store.open)
        self.committer = GroupCommitter(self.store)
        if self.replication is not None:
            await self.replication.start()
        await self.http.start()
        await self._start_syslog()
        cfg = self.config
        self._every(cfg.checkpoint_seconds, self._checkpoint)
        self._every(cfg.scrub_seconds, self._scrub)
        self._every(parse_duration(cfg.retention.every) / 1e9, self._retention)
        if self.replication is not None and self.replication.nodes:
            self._every(self.replication.config.check_seconds, self._check_replicas)
        log.info("log server on %s (%d records)", self.http.url, self.store.merkle.size)

    async def _start_syslog(self) -> None:
        loop = asyncio.get_running_loop()
        if self.config.syslog_udp:
            host, port = parse_host_port(self.config.syslog_udp)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: SyslogUdp(self.ingest, self.metrics.rejected.inc), local_addr=(host, port)
            )
            self.syslog_ports["udp"] = transport.get_extra_info("sockname")[1]
            self._closers.append(transport)
        if self.config.syslog_tcp:
            host, port = parse_host_port(self.config.syslog_tcp)
            server = await asyncio.start_server(
                SyslogTcp(self.ingest, self.metrics.rejected.inc), host, port
            )
            self.syslog_ports["tcp"] = server.sockets[0].getsockname()[1]
            self._closers.append(server)

    def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        if seconds <= 0:
            return

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except Exception:  # a failed background round is logged; the next one tries again
                    log.exception("log server background job %s failed", job.__name__)

        self._tasks.append(asyncio.get_running_loop().create_task(loop()))

    async def ingest(self, entries: Sequence[Entry], *, key: bytes = b"") -> AppendResult:
        """Durably append one batch (all or nothing) and wake live tails."""
        assert self.committer is not None, "start() first"
        result = await self.committer.append(entries, key=key)
        if self.replication is not None:  # acknowledged only after the quorum PubAck too
            await self.replication.publish(result.first, list(entries))
        if not result.duplicate:
            now = time.monotonic()
            if not self._rate or now - self._rate[-1][0] >= 1.0:
                self._rate.append((now, self.store.appended_lines - len(entries)))
            self.metrics.lines.inc(len(entries))
            self.metrics.bytes.inc(sum(len(e.line) for e in entries))
        self.new_data.set()
        self.new_data.clear()
        return result

    async def _check_replicas(self) -> None:
        assert self.replication is not None
        await self.replication.check()

    async def _checkpoint(self) -> None:
        cp = self.store.checkpoints.latest()
        if cp is None or cp.size != self.store.next_seq:
            await asyncio.to_thread(self.store.checkpoint)

    async def _scrub(self) -> None:
        self.last_verify = await asyncio.to_thread(verify_store, self.store)

    async def _retention(self) -> None:
        ret = self.config.retention
        rules = [
            RetentionRule(
                matches=stream_matcher(parse_selector(r.selector)),
                max_age_ns=parse_duration(r.max_age),
                max_bytes=parse_size(r.max_bytes),
            )
            for r in ret.streams
        ]
        default = RetentionRule(
            max_age_ns=parse_duration(ret.max_age), max_bytes=parse_size(ret.max_bytes)
        )
        await asyncio.to_thread(apply_retention, self.store, rules, default, now_ns=time.time_ns())

    def ingest_rate(self) -> float:
        """Lines per second over the last minute (0 when idle)."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self._rate if now - t <= 60]
        if not recent:
            return 0.0
        t0, n0 = recent[0]
        return round((self.store.appended_lines - n0) / max(now - t0, 1.0), 1)

    def stats(self) -> dict[str, Any]:
        s = self.store
        cp = s.checkpoints.latest()
        return {
            "records": s.merkle.size,
            "segments": len(s.segments),
            "bytes": sum(seg.size for seg in s.segments),
            "streams": len(s.labels()),
            "ingested_lines": s.appended_lines,
            "ingested_bytes": s.appended_bytes,
            "ingest_lines_per_second": self.ingest_rate(),
            "group_commits": self.committer.batches if self.committer else 0,
            "live_tails": self.api.live_tails,
            "damaged_regions": [str(d) for d in s.damage],
            "checkpoint": cp.as_dict() if cp else None,
            "verify": self.last_verify.as_dict() if self.last_verify else None,
            "replicas": (
                {
                    "stream": self.replication.config.stream,
                    "published": self.replication.replicator.published,
                    "repairs": self.replication.repairs,
                    "nodes": [str(r) for r in self.replication.last_reports],
                }
                if self.replication
                else None
            ),
        }

    async def stop(self, grace: float = 5.0) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for closer in self._closers:
            closer.close()
        self._closers = []
        await self.http.stop(grace)
        if self.replication is not None:
            await self.replication.close()
        if self.committer is not None:
            await self.committer.close()
            self.committer = None
            await asyncio.to_thread(self.store.close)

    @property
    def url(self) -> str:
        """``http://host:port`` of the log server's API (the bound port once started)."""
        return self.http.url

    def health(self) -> Health:
        damaged = len(self.store.damage)
        bad = self.last_verify is not None and not self.last_verify.ok
        status: Literal["ok", "degraded", "down"] = (
            "degraded" if damaged or bad else ("ok" if self.http.listening else "down")
        )
        detail = f"{damaged} damaged regions" if damaged else ("verify failed" if bad else "")
        return Health(
            name=self.name,
            status=status,
            detail=detail,
            data={"records": self.store.merkle.size, "url": self.http.url},
        )
