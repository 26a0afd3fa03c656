"""Content-defined chunking (FastCDC 2020), keyed per repository through the gear-table seed.

Chunks average about 1.25 MiB (between 256 KiB and 4 MiB): large enough that per-chunk overhead
stays small, small enough that a change in a big file costs a few MiB, not the file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import BinaryIO

from pyfastcdc import FastCDC

__all__ = ["AVG_SIZE", "MAX_SIZE", "MIN_SIZE", "Chunker"]

AVG_SIZE = 1 << 20
MIN_SIZE = 256 << 10
MAX_SIZE = 4 << 20


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

    def _cdc(self) -> FastCDC:
        cdc: FastCDC | None = getattr(self._local, "cdc", None)
        if cdc is None:
            cdc = FastCDC(self.avg, min_size=self.min_size, max_size=self.max_size, seed=self.seed)
            self._local.cdc = cdc
        return cdc

    def cut(self, data: bytes | memoryview) -> Iterator[memoryview]:
        for chunk in self._cdc().cut_buf(data):
            yield chunk.data

    def cut_stream(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Chunks of a stream; each view is valid only until the next one is produced."""
        for chunk in self._cdc().cut_stream(stream):
            yield chunk.data
