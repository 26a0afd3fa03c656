"""The log server's replicated mode: publish after the local fsync, check replicas, repair them.

An ingest request is acknowledged after (1) the local fsync and (2) JetStream's quorum PubAck for
every record of the batch. If JetStream does not acknowledge in time the request fails (HTTP 503)
although the records are stored locally; a retry with the same ``X-Gyro-Batch-Key`` is not stored
twice and is published again (JetStream drops what it already has, by Msg-Id).

The periodic check reads each local node's files (``node_configs``) and compares every record with
our Merkle log. Records no replica has are published again from the local store; a replica that
misses or damages records others have is rebuilt from a healthy one (``auto_repair``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from gyroscope.core import atomic_write
from gyroscope.logs._config import NatsReplication
from gyroscope.logs._jetstream import JetStreamReplicator
from gyroscope.logs._replica import NatsNode, ReplicaReport, check_replica
from gyroscope.logs._store import Entry, LogStore

__all__ = ["Replication"]

log = logging.getLogger(__name__)


class Replication:
    """Glue between a ``LogStore`` and a ``JetStreamReplicator``."""

    def __init__(self, config: NatsReplication, store: LogStore) -> None:
        self.config = config
        self.store = store
        self.replicator = JetStreamReplicator(
            config.servers, stream=config.stream, subject=config.subject, replicas=config.replicas
        )
        self.nodes = [NatsNode.from_conf(Path(p)) for p in config.node_configs]
        self.start_seq = 0
        self.last_reports: list[ReplicaReport] = []
        self.repairs = 0

    @property
    def _marker(self) -> Path:
        return self.store.path / f"replicated_from.{self.config.stream}"

    async def start(self) -> None:
        await self.replicator.connect()
        if self._marker.exists():
            self.start_seq = int(self._marker.read_text())
        else:  # records older than the first replicated one stay local-only
            self.start_seq = self.store.next_seq
            atomic_write(self._marker, str(self.start_seq).encode())

    async def publish(self, first: int, entries: list[Entry]) -> None:
        await self.replicator.publish(first, entries)

    async def check(self) -> list[ReplicaReport]:
        """Check every local node's copy; republish or repair what is missing or damaged."""
        upto = self.store.next_seq
        reports = [
            await asyncio.to_thread(check_replica, n, self.config.stream, self.store.merkle, upto)
            for n in self.nodes
        ]
        lost = set.intersection(*(set(r.missing) for r in reports)) if reports else set()
        lost = {s for s in lost if s >= self.start_seq}
        if lost:
            log.error("%d records are on no replica; publishing them again", len(lost))
            for seq in sorted(lost):
                rec = self.store.get(seq)
                await self.replicator.publish(seq, [Entry(rec.labels, rec.line, rec.ts_ns)])
        for r in reports:
            r.missing = [s for s in r.missing if s >= self.start_seq and s not in lost]
        bad = {r.node for r in reports if not r.ok}
        for r in reports:
            if not r.ok:
                log.error("replica %s", r)
        if bad and self.config.auto_repair and len(bad) < len(reports):
            await self.replicator.repair(bad)
            self.repairs += 1
        self.last_reports = reports
        return reports

    async def close(self) -> None:
        await self.replicator.close()
