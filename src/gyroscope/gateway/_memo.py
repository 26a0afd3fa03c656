"""What recent heads parse to, remembered by their exact bytes.

Clients repeat the same request bytes (polling, health checks, listings) and replicas answer with
the same head (only Date changes, once a second), so most heads need parsing once. A verdict
depends on the bytes alone, so a remembered one is exact. A hit is one C-level dict lookup (the
parse runs from ``__missing__``); the table is bounded and simply emptied when full, so heads
that never repeat cost one insertion each and nothing more.

>>> lengths = ParseMemo(len, limit=2)
>>> lengths[b"abc"], lengths[b"abc"], len(lengths)
(3, 3, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ParseMemo", "Recent"]

T = TypeVar("T")


class ParseMemo(dict[bytes, T], Generic[T]):
    """``memo[data]`` is ``parse(data)``, computed once while ``data`` stays in the table."""

    def __init__(self, parse: Callable[[bytes], T], *, limit: int = 256) -> None:
        super().__init__()
        self.parse = parse
        self.limit = limit

    def __missing__(self, key: bytes) -> T:
        found = self.parse(key)
        if len(self) >= self.limit:
            self.clear()
        self[key] = found
        return found


class Recent(Generic[T]):
    """The last bytes parsed and their verdict, checked before the table.

    One slot per table, shared by every replica (or client) the process serves: where they send
    the same head, as replicas of one model server do apart from Date, the common case is one
    comparison, without the hash (and for answers the search and copy) of a table lookup; where
    they differ, a miss costs one comparison more. Read and written by the event loop's thread
    only (one loop per process), so the two fields never disagree.
    """

    __slots__ = ("key", "verdict")

    def __init__(self, verdict: T) -> None:
        self.key = b"\0"  # no HTTP message starts with NUL, and one that did would not be plain
        self.verdict = verdict
