"""Checking each JetStream replica's files against our Merkle log, and repairing a bad one.

JetStream keeps a stream's messages in ``<store_dir>/jetstream/$G/streams/<name>/msgs/*.blk``. Each
record there is (nats-server 2.9 file store, little endian)::

    u32 length (bit 31: has headers) | u64 seq | i64 ts | u16 subject length | subject
    | [u32 header length | headers] | payload | 8-byte hash

The payload is our own framed record, so each replica's copy is checked with our CRC32C and then
against the leaf hash in our Merkle log — independent of NATS's own checks, which a flipped byte
has been seen to defeat (messages silently dropped on recovery). Repair is
``JetStreamReplicator.repair``: it rebuilds the bad replica from a healthy one through JetStream.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gyroscope.logs._record import FrameError, decode
from gyroscope.logs._tree import MerkleLog

__all__ = ["NatsNode", "ReplicaReport", "check_replica"]

_HEAD = struct.Struct("<IQqH")
_HBIT = 1 << 31


@dataclass(frozen=True, slots=True)
class NatsNode:
    """One nats-server we can inspect and restart: read from its config file."""

    name: str
    conf: Path
    store_dir: Path
    pid_file: Path
    host: str
    port: int

    @classmethod
    def from_conf(cls, conf: Path) -> NatsNode:
        text = conf.read_text()

        def value(key: str) -> str:
            m = re.search(rf"\b{key}\s*[:=]\s*\"?([^\"\s,}}]+)", text)
            if m is None:
                raise ValueError(f"{conf}: no {key}")
            return m.group(1)

        host, _, port = value("listen").rpartition(":")
        return cls(
            value("server_name"),
            conf,
            Path(value("store_dir")),
            Path(value("pid_file")),
            host or "127.0.0.1",
            int(port),
        )

    def stream_dir(self, stream: str) -> Path:
        return self.store_dir / "jetstream" / "$G" / "streams" / stream

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


@dataclass(slots=True)
class ReplicaReport:
    node: str
    records: int = 0
    missing: list[int] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt

    def __str__(self) -> str:
        if self.ok:
            return f"{self.node}: {self.records} records, all match the Merkle log"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (first {self.missing[0]})")
        if self.corrupt:
            parts.append(f"{len(self.corrupt)} damaged ({self.corrupt[0]})")
        return f"{self.node}: " + ", ".join(parts)


def _records(block: Path) -> tuple[list[tuple[int, bytes]], list[str]]:
    """(offset, payload) of each message in one block file, and what could not be read."""
    data = block.read_bytes()
    out, problems, off = [], [], 0
    while off + _HEAD.size <= len(data):
        rl, _seq, _ts, slen = _HEAD.unpack_from(data, off)
        has_headers, length = bool(rl & _HBIT), rl & ~_HBIT
        if length < _HEAD.size + 8 or off + length > len(data):
            problems.append(f"{block.name}: offset {off}: impossible record length {length}")
            break
        pos = off + _HEAD.size + slen
        if has_headers:
            (hlen,) = struct.unpack_from("<I", data, pos)
            pos += 4 + hlen
        end = off + length - 8
        if pos > end:
            problems.append(f"{block.name}: offset {off}: header runs past the record")
        else:
            out.append((off, data[pos:end]))
        off += length
    return out, problems


def check_replica(node: NatsNode, stream: str, merkle: MerkleLog, upto: int) -> ReplicaReport:
    """Compare one node's copy of ``stream`` with our leaves for records ``0 .. upto-1``."""
    report = ReplicaReport(node.name)
    seen: set[int] = set()
    for block in sorted(
        (node.stream_dir(stream) / "msgs").glob("*.blk"), key=lambda p: int(p.stem)
    ):
        records, problems = _records(block)
        report.corrupt.extend(problems)
        for off, payload in records:
            try:
                rec = decode(payload, 0).record
            except FrameError as exc:
                report.corrupt.append(f"{block.name}: offset {off}: {exc.reason}")
                continue
            if rec.seq < merkle.size and merkle.leaf(rec.seq) != rec.leaf:
                report.corrupt.append(
                    f"{block.name}: offset {off}: record {rec.seq} differs from its Merkle leaf"
                )
                continue
            seen.add(rec.seq)
            report.records += 1
    report.missing = [s for s in range(upto) if s not in seen]
    return report
