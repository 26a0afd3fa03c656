"""Consistent hashing tables: a ketama-style ring and Google's Maglev lookup table.

Both map a 64-bit key hash to a replica so that adding or removing one replica moves only about
``1/n`` of the keys. Both support *bounded loads* (Mirrokni et al.; HAProxy's
``hash-balance-factor``): a lookup walks on past replicas already above ``c`` times the mean load
(clockwise on the ring, slot by slot through the Maglev table).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence

from gyroscope.gateway._endpoint import Endpoint

__all__ = ["MaglevTable", "Ring", "hash64"]


def hash64(data: bytes) -> int:
    """A stable 64-bit hash (BLAKE2b, so keys from clients cannot be made to collide cheaply)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Ring:
    """A hash ring with ``points_per_weight`` virtual nodes per unit of weight (160 like ketama).

    >>> eps = [Endpoint(n, "127.0.0.1", 1) for n in "abc"]
    >>> Ring(eps).lookup(hash64(b"user-1")).name in "abc"
    True
    """

    def __init__(self, endpoints: Sequence[Endpoint], points_per_weight: int = 160) -> None:
        pairs: list[tuple[int, int]] = []
        for index, ep in enumerate(endpoints):
            points = max(1, points_per_weight * ep.weight) if ep.weight > 0 else 0
            for i in range(0, points, 4):
                digest = hashlib.blake2b(f"{ep.name}-{i // 4}".encode(), digest_size=16).digest()
                # Four points per digest, as ketama does with MD5.
                for j in range(min(4, points - i)):
                    pairs.append((int.from_bytes(digest[4 * j : 4 * j + 4], "little"), index))
        pairs.sort()
        self._hashes = [h for h, _ in pairs]
        self._owners = [endpoints[i] for _, i in pairs]
        self._distinct = len({i for _, i in pairs})

    def __len__(self) -> int:
        return len(self._hashes)

    def lookup(self, key: int, accept: Callable[[Endpoint], bool] | None = None) -> Endpoint | None:
        """The first replica clockwise from ``key`` that ``accept`` allows."""
        if not self._hashes:
            return None
        start = bisect.bisect_left(self._hashes, key & 0xFFFFFFFF)
        n = len(self._hashes)
        seen: set[str] = set()
        for step in range(n):
            ep = self._owners[(start + step) % n]
            if accept is None or accept(ep):
                return ep
            seen.add(ep.name)
            if len(seen) >= self._distinct:
                break
        return None


class MaglevTable:
    """Maglev's lookup table of prime size ``size``; each replica fills slots in proportion to weight.

    >>> eps = [Endpoint(n, "127.0.0.1", 1) for n in "abc"]
    >>> MaglevTable(eps, size=251).lookup(hash64(b"k")).name in "abc"
    True
    """

    def __init__(self, endpoints: Sequence[Endpoint], size: int = 5003) -> None:
        self.size = size
        live = [ep for ep in endpoints if ep.weight > 0]
        self._table: list[Endpoint] = []
        self._distinct = 0  # replicas that own at least one slot
        if not live:
            return
        offsets, skips = [], []
        for ep in live:
            h = hashlib.blake2b(ep.name.encode(), digest_size=16).digest()
            offsets.append(int.from_bytes(h[:8], "big") % size)
            skips.append(int.from_bytes(h[8:], "big") % (size - 1) + 1)
        max_w = max(ep.weight for ep in live)
        table: list[int] = [-1] * size
        nexts = [0] * len(live)
        credit = [0.0] * len(live)
        filled = 0
        while filled < size:
            for i, ep in enumerate(live):
                credit[i] += ep.weight / max_w
                while credit[i] >= 1.0 and filled < size:
                    credit[i] -= 1.0
                    slot = (offsets[i] + skips[i] * nexts[i]) % size
                    while table[slot] >= 0:
                        nexts[i] += 1
                        slot = (offsets[i] + skips[i] * nexts[i]) % size
                    table[slot] = i
                    nexts[i] += 1
                    filled += 1
        self._table = [live[i] for i in table]
        self._distinct = len(set(table))

    def lookup(self, key: int) -> Endpoint | None:
        return self._table[key % self.size] if self._table else None

    def walk(self, key: int, accept: Callable[[Endpoint], bool]) -> Endpoint | None:
        """The first replica ``accept`` allows, walking the table forward from ``key``'s slot.

        Neighbouring slots belong to replicas in a pseudo-random order (each replica fills its
        own permutation of the slots), so the keys of an overloaded replica spill over all the
        others, and one key always spills to the same next choice.
        """
        table = self._table
        if not table:
            return None
        start = key % self.size
        seen: set[str] = set()
        for step in range(self.size):
            ep = table[(start + step) % self.size]
            if accept(ep):
                return ep
            seen.add(ep.name)
            if len(seen) >= self._distinct:
                break
        return None
