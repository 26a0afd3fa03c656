"""Replicated mode on NATS JetStream: every record also goes to an R3 stream (Raft, 3 nodes).

Publishing: each record is published as its own framed bytes (CRC32C inside) with
``Nats-Msg-Id: gyro-<seq>``; a publish counts only when JetStream's PubAck arrives, which the stream
leader sends after a quorum (2 of 3) of replicas stored the message. A publish that timed out (say,
while the leader changed) is retried with the same Msg-Id, so a retry that raced a success is
de-duplicated by JetStream instead of stored twice.

What an acknowledgement means depends on the server. nats-server 2.10+ accepts
``sync_interval: always`` (fsync before acking); Debian's 2.9.x does not: its acks mean the message
is in the page cache of a quorum of nodes and is fsynced on the server's own schedule (about every
two minutes). A simultaneous power loss of two nodes can therefore lose acknowledged messages on
2.9; the embedded store (fsync before every acknowledgement) is the durable copy either way.

>>> JetStreamReplicator(["nats://127.0.0.1:4222"]).msg_id(7)
'gyro-7'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from gyroscope.logs._errors import LogStoreError
from gyroscope.logs._record import encode
from gyroscope.logs._store import Entry

__all__ = ["JetStreamReplicator"]

log = logging.getLogger(__name__)


class JetStreamReplicator:
    """Publish records to a JetStream stream and wait for the quorum acknowledgement."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        stream: str = "GYRO_LOGS",
        subject: str = "gyro.logs",
        replicas: int = 3,
        timeout: float = 30.0,
    ) -> None:
        self.servers = list(servers)
        self.stream = stream
        self.subject = subject
        self.replicas = replicas
        self.timeout = timeout
        self._nc: Any = None
        self._js: Any = None
        self.published = 0
        self.duplicates = 0

    @staticmethod
    def msg_id(seq: int) -> str:
        return f"gyro-{seq}"

    async def connect(self) -> None:
        """Connect and make sure the stream exists with the replica count asked for."""
        import nats
        from nats.js.api import StorageType, StreamConfig

        try:
            self._nc = await nats.connect(
                servers=self.servers,
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
            )
        except Exception as exc:  # nats raises several unrelated types here
            raise LogStoreError(f"cannot reach NATS at {', '.join(self.servers)}: {exc}") from exc
        self._js = self._nc.jetstream(timeout=self.timeout)
        config = StreamConfig(
            name=self.stream,
            subjects=[self.subject],
            num_replicas=self.replicas,
            storage=StorageType.FILE,
            duplicate_window=600.0,
        )
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            try:
                await self._js.add_stream(config)
                return
            except Exception as exc:  # the cluster may still be electing its meta leader
                if "already in use" in str(exc):
                    return
                if asyncio.get_running_loop().time() > deadline:
                    raise LogStoreError(
                        f"cannot create JetStream stream {self.stream}: {exc}"
                    ) from exc
                await asyncio.sleep(0.5)

    async def publish(self, first: int, entries: Sequence[Entry]) -> None:
        """Publish records ``first ..`` and return once every one has its quorum PubAck."""
        payloads = [
            (first + i, encode(first + i, e.ts_ns, e.labels.encode(), e.line))
            for i, e in enumerate(entries)
        ]
        await asyncio.gather(*(self._publish_one(seq, data) for seq, data in payloads))

    async def _publish_one(self, seq: int, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        delay = 0.05
        while True:
            try:
                ack = await self._js.publish(
                    self.subject, data, timeout=5.0, headers={"Nats-Msg-Id": self.msg_id(seq)}
                )
                self.published += 1
                self.duplicates += bool(ack.duplicate)
                return
            except Exception as exc:  # timeouts, no responders during a leader change
                if loop.time() > deadline:
                    raise LogStoreError(
                        f"JetStream did not acknowledge record {seq} within {self.timeout:.0f}s: {exc}",
                    ) from exc
                log.info("record %d: JetStream publish failed (%s); retrying", seq, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def leader(self) -> str:
        info = await self._js.stream_info(self.stream)
        return str(info.cluster.leader or "")

    async def repair(self, bad: set[str], *, within: float = 120.0) -> None:
        """Rebuild the replicas on the nodes named in ``bad`` from a healthy one.

        JetStream has no "re-copy this replica" call, but changing the replica count does it: the
        stream is scaled to one replica (JetStream keeps the leader's copy and deletes the others,
        with their Raft state) and back to ``replicas``, and the new replicas are filled from the
        leader. So first the leadership is moved until a healthy node holds it. While the stream has
        one replica, acknowledgements are single-copy; the window lasts until the scale-up.
        """
        from nats.js.api import StorageType, StreamConfig

        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (leader := await self.leader()) in bad or not leader:
            if loop.time() > deadline:
                raise LogStoreError(f"{self.stream}: no healthy node took the leadership")
            if leader:
                with contextlib.suppress(Exception):
                    await self._nc.request(
                        f"$JS.API.STREAM.LEADER.STEPDOWN.{self.stream}", b"", timeout=5
                    )
            await asyncio.sleep(0.5)
        log.warning("%s: rebuilding the replicas on %s from %s", self.stream, sorted(bad), leader)

        def config(replicas: int) -> StreamConfig:
            return StreamConfig(
                name=self.stream,
                subjects=[self.subject],
                num_replicas=replicas,
                storage=StorageType.FILE,
                duplicate_window=600.0,
            )

        await self._js.update_stream(config(1))
        await self._js.update_stream(config(self.replicas))
        while True:
            info = await self._js.stream_info(self.stream)
            peers = info.cluster.replicas or []
            if (
                info.cluster.leader
                and len(peers) == self.replicas - 1
                and all(p.current for p in peers)
            ):
                return
            if loop.time() > deadline:
                raise LogStoreError(
                    f"{self.stream}: replicas did not catch up within {within:.0f}s"
                )
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None
