"""Balancing policies: pure decisions over the replicas that are available right now.

Every policy answers ``pick(endpoints, key, exclude)``: ``endpoints`` is the list of usable
replicas in a stable order (the balancer builds a new list whenever membership or health changes,
so policies may cache per list identity), ``key`` is a 64-bit request hash for the hash policies,
and ``exclude`` holds replicas that must not be chosen (already tried, or at their concurrency
limit). No I/O; randomness is injected, so every policy is deterministic under test.

Which to use:
  round_robin           equal replicas, uniform requests
  weighted_round_robin  replicas of different sizes (nginx's smooth weighted round robin)
  least_connections     requests of very different lengths (LLM generations)
  p2c                   the default: power of two choices on requests in flight, weighted (Envoy)
  peak_ewma             replicas whose speed differs or changes (latency x queue length)
  ring_hash / maglev    cache affinity (KV/prefix cache, sessions) on a request key
  random                a baseline
"""

from __future__ import annotations

import abc
import math
import random as _random
from collections.abc import Callable, Collection, Sequence

from gyroscope.gateway._endpoint import Endpoint
from gyroscope.gateway._hashing import MaglevTable, Ring

__all__ = [
    "P2C",
    "POLICIES",
    "LeastConnections",
    "Maglev",
    "PeakEwma",
    "Policy",
    "RandomPolicy",
    "RingHash",
    "RoundRobin",
    "SmoothWeightedRoundRobin",
    "make_policy",
]

Clock = Callable[[], float]


def _usable(endpoints: Sequence[Endpoint], exclude: Collection[Endpoint]) -> Sequence[Endpoint]:
    if not exclude:
        return endpoints
    return [ep for ep in endpoints if ep not in exclude]


class Policy(abc.ABC):
    """Chooses one replica for one request."""

    name = ""
    uses_key = False

    @abc.abstractmethod
    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: int | None = None,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint | None:
        """The chosen replica, or ``None`` when every one is excluded."""


class RoundRobin(Policy):
    """Each replica in turn, weights ignored.

    >>> eps = [Endpoint(n, "h", 1) for n in "ab"]
    >>> [RoundRobin().pick(eps).name for _ in range(1)], RoundRobin().name
    (['a'], 'round_robin')
    """

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: int | None = None,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint | None:
        eps = _usable(endpoints, exclude) if exclude else endpoints
        if not eps:
            return None
        self._next += 1
        return eps[(self._next - 1) % len(eps)]


class SmoothWeightedRoundRobin(Policy):
    """nginx's smooth weighted round robin: weights 5,1,1 give a a b a c a a, never a a a a a b c."""

    name = "weighted_round_robin"

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: int | None = None,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint | None:
        current = self._current
        total = 0.0
        best: Endpoint | None = None
        best_value = -math.inf
        for ep in endpoints:
            if ep in exclude or ep.lb_weight <= 0:
                continue
            value = current.get(ep.name, 0.0) + ep.lb_weight
            current[ep.name] = value
            total += ep.lb_weight
            if value > best_value:
                best, best_value = ep, value
        if best is None:
            return None
        current[best.name] = best_value - total
        if len(current) > 4 * len(endpoints) + 16:  # forget replicas that were removed
            names = {ep.name for ep in endpoints}
            self._current = {k: v for k, v in current.items() if k in names}
        return best


class LeastConnections(Policy):
    """Fewest requests in flight per unit of weight; ties rotate so no replica is favoured."""

    name = "least_connections"

    def __init__(self) -> None:
        self._start = 0

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: int | None = None,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint | None:
        n = len(endpoints)
        self._start = (self._start + 1) % max(n, 1)
        best: Endpoint | None = None
        best_load = math.inf
        for i in range(n):
            ep = endpoints[(self._start + i) % n]
            if ep in exclude or ep.lb_weight <= 0:
                continue
            load = (ep.in_flight + 1) / ep.lb_weight
            if load < best_load:
                best, best_load = ep, load
        return best


class P2C(Policy):
    """Power of two choices: sample two replicas, keep the less loaded (in flight / weight)."""

    name = "p2c"

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng or _random.Random()

    def _load(self, ep: Endpoint) -> float:
        return (ep.in_flight + 1) / ep.lb_weight if ep.lb_weight > 0 else math.inf

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: int | None = None,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint | None:
        eps = _usable(endpoints, exclude)
        n = len(eps)
        if n <= 1:
            return eps[0] if n and eps[0].lb_weight > 0 else None
        i = self._rng.randrange(n)
        j = self._rng.randrange(n - 1)
        j += j >= i
        a, b = eps[i], eps[j]
        la, lb = self._load(a), self._load(b)
        if la == lb == math.inf:
            return None
        return a if la <= lb else b


class PeakEwma(P2C):
    """Power of two choices on peak-EWMA cost: latency average x (requests in flight + 1)."""

    name = "peak_ewma"

    def __init__(self, clock: Clock, rng: _random.Random | None = None) -> None:
        super().__init__(rng)
        self._clock = clock

    def _load(self, ep: Endpoint) -> float:
        return ep.cost(self._clock()) if ep.lb_weight > 0 else math.inf


class RandomPolicy(Policy):
    """A weighted random choice."""

    name = "random"

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng or _random.Random()

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: int | None = None,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint | None:
        eps = [ep for ep in _usable(endpoints, exclude) if ep.lb_weight > 0]
        if not eps:
            return None
        return self._rng.choices(eps, weights=[ep.lb_weight for ep in eps])[0]


class _Hashed(Policy):
    """Shared by the hash policies: a table per list of endpoints, P2C when a request has no key."""

    uses_key = True

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._fallback = P2C(rng)
        self._for: Sequence[Endpoint] | None = None

    def pick(
        self,
        endpoints: Sequence[Endpoint],
        key: int | None = None,
        exclude: Collection[Endpoint] = (),
    ) -> Endpoint | None:
        if key is None:
            return self._fallback.pick(endpoints, None, exclude)
        if endpoints is not self._for:
            self._rebuild(endpoints)
            self._for = endpoints
        return self._lookup(endpoints, key, exclude)

    @abc.abstractmethod
    def _rebuild(self, endpoints: Sequence[Endpoint]) -> None: ...

    @abc.abstractmethod
    def _lookup(
        self, endpoints: Sequence[Endpoint], key: int, exclude: Collection[Endpoint]
    ) -> Endpoint | None: ...


class RingHash(_Hashed):
    """Ketama-style ring; with ``balance_factor`` c, no replica takes more than c x its fair share.

    The bound is HAProxy's hash-balance-factor: a replica whose requests in flight reach
    ``ceil(c * (total + 1) * weight / total_weight)`` is skipped for the next one on the ring.
    """

    name = "ring_hash"

    def __init__(
        self,
        balance_factor: float | None = None,
        points_per_weight: int = 160,
        rng: _random.Random | None = None,
    ) -> None:
        super().__init__(rng)
        self.balance_factor = balance_factor
        self._points = points_per_weight
        self._ring = Ring([], points_per_weight)

    def _rebuild(self, endpoints: Sequence[Endpoint]) -> None:
        self._ring = Ring(endpoints, self._points)

    def _lookup(
        self, endpoints: Sequence[Endpoint], key: int, exclude: Collection[Endpoint]
    ) -> Endpoint | None:
        c = self.balance_factor
        if c is None:
            if not exclude:
                return self._ring.lookup(key)
            return self._ring.lookup(key, lambda ep: ep not in exclude)
        return self._ring.lookup(key, _bounded(endpoints, c, exclude))


def _bounded(
    endpoints: Sequence[Endpoint], c: float, exclude: Collection[Endpoint]
) -> Callable[[Endpoint], bool]:
    """HAProxy's hash-balance-factor test: may ``ep`` take one more request?

    Counting the new request, a replica may hold ``ceil(c * total * weight / total_weight)``;
    some replica is always below its share, so a lookup that walks all of them finds one.
    """
    total = sum(ep.in_flight for ep in endpoints) + 1
    total_weight = sum(ep.weight for ep in endpoints) or 1

    def accept(ep: Endpoint) -> bool:
        cap = math.ceil(c * total * ep.weight / total_weight)
        return ep not in exclude and ep.in_flight < cap

    return accept


class Maglev(_Hashed):
    """Google's Maglev table: even spread and minimal disruption, O(1) lookups.

    With ``balance_factor`` c, bounded loads as in :class:`RingHash`: a replica at its cap is
    passed over for the next replica found walking the table from the key's slot.

    >>> eps = [Endpoint(n, "127.0.0.1", 1) for n in "ab"]
    >>> home = Maglev(balance_factor=1.25).pick(eps, 7)
    >>> home.in_flight = 5
    >>> Maglev(balance_factor=1.25).pick(eps, 7) is home
    False
    """

    name = "maglev"

    def __init__(
        self,
        table_size: int = 5003,
        rng: _random.Random | None = None,
        balance_factor: float | None = None,
    ) -> None:
        super().__init__(rng)
        self.balance_factor = balance_factor
        self._size = table_size
        self._table = MaglevTable([], table_size)

    def _rebuild(self, endpoints: Sequence[Endpoint]) -> None:
        self._table = MaglevTable(endpoints, self._size)

    def _lookup(
        self, endpoints: Sequence[Endpoint], key: int, exclude: Collection[Endpoint]
    ) -> Endpoint | None:
        if self.balance_factor is not None:
            return self._table.walk(key, _bounded(endpoints, self.balance_factor, exclude))
        ep = self._table.lookup(key)
        if ep is None or ep not in exclude:
            return ep
        # Excluded (already tried): probe other slots deterministically, then anything left.
        for attempt in range(1, 2 * len(endpoints) + 1):
            ep = self._table.lookup(key + attempt * 0x9E3779B97F4A7C15)
            if ep is not None and ep not in exclude:
                return ep
        rest = _usable(endpoints, exclude)
        return rest[0] if rest else None


POLICIES = (
    "round_robin",
    "weighted_round_robin",
    "least_connections",
    "p2c",
    "peak_ewma",
    "ring_hash",
    "maglev",
    "random",
)


def make_policy(
    name: str,
    *,
    clock: Clock,
    rng: _random.Random | None = None,
    balance_factor: float | None = None,
) -> Policy:
    """Build a policy by its config name.

    >>> make_policy("maglev", clock=lambda: 0.0).name
    'maglev'
    """
    factories: dict[str, Callable[[], Policy]] = {
        "round_robin": RoundRobin,
        "weighted_round_robin": SmoothWeightedRoundRobin,
        "least_connections": LeastConnections,
        "p2c": lambda: P2C(rng),
        "peak_ewma": lambda: PeakEwma(clock, rng),
        "ring_hash": lambda: RingHash(balance_factor, rng=rng),
        "maglev": lambda: Maglev(rng=rng, balance_factor=balance_factor),
        "random": lambda: RandomPolicy(rng),
    }
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    return factories[name]()
