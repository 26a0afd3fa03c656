"""Content-defined chunking (FastCDC 2020), keyed per repository through the gear-table seed.

A repository records its chunk sizes in its config, so every backup into it cuts the same way
(changing them would store every file once more). New repositories cut chunks of about 640 KiB on
average (FastCDC's average is ``avg + min``; between 128 KiB and 2 MiB): a shifted or edited part
of a large file then costs a few hundred KiB, not a few MiB, and per-chunk overhead stays small.
Repositories created before the sizes were recorded keep the earlier 1 MiB / 256 KiB / 4 MiB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Protocol

from pyfastcdc import FastCDC

__all__ = [
    "AVG_SIZE",
    "LEGACY_SIZES",
    "MAX_SIZE",
    "MIN_SIZE",
    "Chunker",
    "chunk_sizes",
    "default_sizes",
]

AVG_SIZE = 256 << 10
MIN_SIZE = 64 << 10
MAX_SIZE = 1 << 20
LEGACY_SIZES = {"avg": 1 << 20, "min": 256 << 10, "max": 4 << 20}
# pyfastcdc's accepted ranges
_BOUNDS = {"avg": (256, 4 << 20), "min": (64, 1 << 20), "max": (1024, 16 << 20)}


class Readable(Protocol):
    """A binary stream that reads into a buffer (a raw file, ``io.BytesIO``)."""

    def readinto(self, buffer: memoryview, /) -> int | None: ...


def default_sizes() -> dict[str, int]:
    """The chunk sizes a new repository records in its config."""
    return {"avg": AVG_SIZE, "min": MIN_SIZE, "max": MAX_SIZE}


def chunk_sizes(config: Mapping[str, object]) -> dict[str, int]:
    """The chunk sizes recorded in a repository config (the legacy ones when absent).

    Raises ``ValueError`` when the record is malformed.
    """
    recorded = config.get("chunker")
    if recorded is None:
        return dict(LEGACY_SIZES)
    if not isinstance(recorded, Mapping):
        raise ValueError("chunker is not an object")
    sizes: dict[str, int] = {}
    for name, (low, high) in _BOUNDS.items():
        value = recorded.get(name)
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"chunker {name} is not an integer in [{low}, {high}]")
        sizes[name] = value
    if not sizes["min"] <= sizes["avg"] <= sizes["max"]:
        raise ValueError("chunker sizes are not ordered min <= avg <= max")
    return sizes


class Chunker:
    """Cuts bytes or a stream at content-defined boundaries; one FastCDC per thread.

    >>> data = bytes(range(256)) * 40000
    >>> sum(len(c) for c in Chunker(seed=7).cut(data)) == len(data)
    True
    """

    def __init__(
        self, seed: int, *, avg: int = AVG_SIZE, min_size: int = MIN_SIZE, max_size: int = MAX_SIZE
    ) -> None:
        self.seed = seed
        self.avg, self.min_size, self.max_size = avg, min_size, max_size
        self._local = threading.local()

    @classmethod
    def with_sizes(cls, seed: int, sizes: Mapping[str, int]) -> Chunker:
        return cls(seed, avg=sizes["avg"], min_size=sizes["min"], max_size=sizes["max"])

    def _cdc(self) -> FastCDC:
        cdc: FastCDC | None = getattr(self._local, "cdc", None)
        if cdc is None:
            cdc = FastCDC(self.avg, min_size=self.min_size, max_size=self.max_size, seed=self.seed)
            self._local.cdc = cdc
        return cdc

    def cut(self, data: bytes | memoryview) -> Iterator[memoryview]:
        for chunk in self._cdc().cut_buf(data):
            yield chunk.data

    def cut_stream(self, stream: Readable) -> Iterator[memoryview]:
        """Chunks of a stream; each view is valid only until the next one is produced.

        The same cuts as ``cut`` over the whole content. The bytes are read into this thread's
        reusable buffer: a fresh zeroed buffer per file (what pyfastcdc's own stream reader does)
        cost a page fault per 4 KiB of it, a good part of an incremental backup's system time.
        """
        buf: bytearray | None = getattr(self._local, "buf", None)
        self._local.buf = None  # a second stream read meanwhile on this thread gets its own
        if buf is None:
            buf = bytearray(max(2 * self.max_size, 4 << 20))
        try:
            yield from self._cut_into(stream, buf)
        finally:
            self._local.buf = buf

    def _cut_into(self, stream: Readable, buf: bytearray) -> Iterator[memoryview]:
        view, cap, size = memoryview(buf), len(buf), self.max_size
        start = end = 0
        eof = False
        cdc = self._cdc()
        while True:
            if not eof and end - start < size:
                view[: end - start] = view[start:end]  # keep the uncut tail, then refill
                start, end = 0, end - start
                while end < cap:
                    got = stream.readinto(view[end:])
                    if not got:
                        eof = True
                        break
                    end += got
            if start == end:
                return
            for chunk in cdc.cut_buf(view[start:end]):
                # A cut is final only with max_size bytes (or the end) ahead of its start: then
                # it is the cut FastCDC makes over the whole content.
                if not eof and end - start < size:
                    break
                start += chunk.length
                yield chunk.data
