"""Errors of the log store, all under ``gyroscope.errors.LogStoreError``."""

from __future__ import annotations

from gyroscope.errors import LogStoreError

__all__ = [
    "BadInputError",
    "CorruptRecordError",
    "LogStoreError",
    "ProofError",
    "QuerySyntaxError",
    "StoreLockedError",
]


class BadInputError(LogStoreError):
    """Malformed ingest input: bad JSON, invalid labels, an oversized line. Never retryable."""

    exit_code = 2

    def __init__(self, message: str, *, where: str = "") -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class QuerySyntaxError(BadInputError):
    """A LogQL query we cannot parse; the message names the position."""


class CorruptRecordError(LogStoreError):
    """A stored record failed its CRC32C or framing check; names the file and byte offset."""

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"{path}: offset {offset}: {message}")


class ProofError(LogStoreError):
    """An inclusion or consistency proof does not verify, or cannot be built."""


class StoreLockedError(LogStoreError):
    """Another process has the log store open for writing."""

    retryable = True
