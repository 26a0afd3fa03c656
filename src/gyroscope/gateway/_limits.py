"""Rate limits and retry budgets: pure, with time passed in.

Token buckets per client (IP or API key): one for requests per second, one for LLM tokens per
minute. The token bucket is charged *after* a response, from its ``usage`` (the number is only
known then), so a client may overdraw once; it is then refused until the bucket refills.

>>> b = TokenBucket(rate=1.0, capacity=2.0, now=0.0)
>>> b.take(now=0.0), b.take(now=0.0), b.take(now=0.0), b.take(now=1.0)
(True, True, False, True)
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ClientLimiter", "RetryBudget", "TokenBucket", "usage_tokens"]


class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; ``take`` spends one (or ``cost``)."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def has(self, now: float) -> bool:
        """True while the bucket is not overdrawn (for limits charged after the fact)."""
        self._refill(now)
        return self.tokens > 0

    def charge(self, now: float, cost: float) -> None:
        self._refill(now)
        self.tokens -= cost

    def wait_time(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are there (for Retry-After)."""
        self._refill(now)
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    reason: str = ""


class ClientLimiter:
    """Buckets per client key, at most ``max_clients`` of them (least recently seen are dropped)."""

    def __init__(
        self,
        *,
        requests_per_second: float | None,
        burst: float | None,
        tokens_per_minute: float | None,
        max_clients: int = 100_000,
    ) -> None:
        self._rps = requests_per_second
        self._burst = burst or (max(1.0, requests_per_second) if requests_per_second else 1.0)
        self._tpm = tokens_per_minute
        self._max = max_clients
        self._requests: OrderedDict[str, TokenBucket] = OrderedDict()
        self._tokens: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def counts_tokens(self) -> bool:
        return self._tpm is not None

    def _bucket(
        self, table: OrderedDict[str, TokenBucket], key: str, rate: float, cap: float, now: float
    ) -> TokenBucket:
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = TokenBucket(rate, cap, now)
            if len(table) > self._max:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return bucket

    def admit(self, key: str, now: float) -> Verdict:
        if self._tpm is not None:
            tokens = self._bucket(self._tokens, key, self._tpm / 60.0, self._tpm, now)
            if not tokens.has(now):
                return Verdict(False, tokens.wait_time(now, 1.0), "tokens_per_minute")
        if self._rps is not None:
            requests = self._bucket(self._requests, key, self._rps, self._burst, now)
            if not requests.take(now):
                return Verdict(False, requests.wait_time(now), "requests_per_second")
        return Verdict(True)

    def charge_tokens(self, key: str, tokens: int, now: float) -> None:
        if self._tpm is not None and tokens > 0:
            self._bucket(self._tokens, key, self._tpm / 60.0, self._tpm, now).charge(now, tokens)


class RetryBudget:
    """Envoy's retry budget: retries in flight stay under ``ratio`` x requests in flight.

    ``min_retries`` are always allowed, so a quiet gateway can still retry.
    """

    def __init__(self, ratio: float, min_retries: int) -> None:
        self.ratio = ratio
        self.min_retries = min_retries
        self.retrying = 0

    def allow(self, active_requests: int) -> bool:
        limit = max(self.min_retries, math.floor(self.ratio * active_requests))
        return self.retrying < limit


_TOTAL = re.compile(rb'"total_tokens"\s*:\s*(\d+)')
_PARTS = re.compile(rb'"(prompt_tokens|completion_tokens)"\s*:\s*(\d+)')


def usage_tokens(tail: bytes) -> int:
    """Tokens used, from the last ``usage`` object in the end of a JSON body or SSE stream.

    >>> usage_tokens(b'data: {"usage": {"prompt_tokens": 3, "completion_tokens": 5}}\\n\\n')
    8
    """
    at = tail.rfind(b'"usage"')
    if at < 0:
        return 0
    chunk = tail[at:]
    total = _TOTAL.search(chunk)
    if total:
        return int(total.group(1))
    return sum(int(m.group(2)) for m in _PARTS.finditer(chunk[:512]))
