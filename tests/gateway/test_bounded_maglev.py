"""Bounded loads (HAProxy's hash-balance-factor) on the Maglev policy, as on the ring."""

from __future__ import annotations

import asyncio
import math
import random

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gyroscope.gateway import Endpoint, GatewayConfig, Maglev, RingHash, hash64, make_policy
from tests.gateway.conftest import CHAT, wait_until


def eps(*weights: int) -> list[Endpoint]:
    return [Endpoint(f"r{i}", "127.0.0.1", 9000 + i, weight=w) for i, w in enumerate(weights)]


def cap(c: float, endpoints: list[Endpoint], ep: Endpoint) -> int:
    total = sum(e.in_flight for e in endpoints)
    return math.ceil(c * total * ep.weight / sum(e.weight for e in endpoints))


@given(
    n=st.integers(min_value=2, max_value=8),
    c=st.floats(min_value=1.05, max_value=2.0),
    hot=st.integers(min_value=1, max_value=5),
    requests=st.integers(min_value=1, max_value=300),
    seed=st.integers(min_value=0, max_value=1000),
)
@settings(max_examples=80, deadline=None)
def test_maglev_bounded_loads_never_exceed_c_times_the_mean(n, c, hot, requests, seed):
    """Every request carries one of a few hot keys: still no replica above ceil(c x mean)."""
    endpoints = eps(*([1] * n))
    policy = Maglev(balance_factor=c, table_size=251)
    rng = random.Random(seed)
    hot_keys = [hash64(b"hot-%d" % i) for i in range(hot)]
    for _ in range(requests):
        policy.pick(endpoints, rng.choice(hot_keys)).in_flight += 1
    assert max(ep.in_flight for ep in endpoints) <= math.ceil(c * requests / n)


@given(
    weights=st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=6),
    c=st.floats(min_value=1.05, max_value=2.0),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 2**64 - 1)), min_size=1, max_size=300),
    skew=st.integers(min_value=1, max_value=4),
)
@settings(max_examples=80, deadline=None)
def test_maglev_bounded_loads_hold_as_requests_come_and_go(weights, c, ops, skew):
    """Skewed keys (most requests on one key), requests finishing at random, weighted replicas:
    after every pick, the chosen replica holds at most its weighted share times c."""
    endpoints = eps(*weights)
    policy = Maglev(balance_factor=c, table_size=251)
    rng = random.Random(len(ops))
    for arrive, raw in ops:
        busy = [ep for ep in endpoints if ep.in_flight]
        if not arrive and busy:
            rng.choice(busy).in_flight -= 1
            continue
        key = hash64(b"hot") if raw % skew else raw  # (skew-1)/skew of the requests: one key
        ep = policy.pick(endpoints, key)
        assert ep is not None
        ep.in_flight += 1
        assert ep.in_flight <= cap(c, endpoints, ep)


def test_maglev_without_a_factor_piles_a_hot_key_on_one_replica():
    """The property above is not vacuous: without the bound the hot key has one home."""
    endpoints = eps(1, 1, 1, 1)
    policy = Maglev(table_size=251)
    for _ in range(40):
        policy.pick(endpoints, hash64(b"hot")).in_flight += 1
    assert sorted(ep.in_flight for ep in endpoints) == [0, 0, 0, 40]


def test_maglev_bounded_loads_keep_affinity_until_a_replica_is_overloaded():
    endpoints = eps(1, 1, 1)
    policy = Maglev(balance_factor=1.25)
    key = hash64(b"user-7")
    home = policy.pick(endpoints, key)
    assert home is Maglev().pick(endpoints, key)  # the same home as plain Maglev
    for ep in endpoints:
        ep.in_flight = 3
    assert policy.pick(endpoints, key) is home  # at the mean: still at home
    home.in_flight = 10
    spill = policy.pick(endpoints, key)
    assert spill is not home
    assert all(policy.pick(endpoints, key) is spill for _ in range(5))  # a stable second choice


def test_maglev_bounded_loads_spread_an_overloaded_replicas_keys():
    """Keys whose home is full spill to different replicas, not all onto one neighbour."""
    endpoints = eps(1, 1, 1, 1)
    policy = Maglev(balance_factor=1.1)
    keys = [hash64(b"user-%d" % i) for i in range(400)]
    plain = Maglev()
    home = {k: plain.pick(endpoints, k) for k in keys}
    full = endpoints[0]
    for ep in endpoints:
        ep.in_flight = 10
    full.in_flight = 40
    spills = {policy.pick(endpoints, k).name for k in keys if home[k] is full}
    assert spills == {"r1", "r2", "r3"}


def test_maglev_bounded_loads_still_skip_excluded_replicas():
    endpoints = eps(1, 1, 1)
    policy = Maglev(balance_factor=1.5)
    key = hash64(b"k")
    first = policy.pick(endpoints, key)
    second = policy.pick(endpoints, key, exclude=[first])
    assert second is not None and second is not first
    assert policy.pick(endpoints, key, exclude=endpoints) is None


def test_config_accepts_a_balance_factor_for_maglev_and_the_factory_applies_it():
    cfg = GatewayConfig.model_validate(
        {"routes": [{"policy": "maglev", "hash": {"source": "path"}, "hash_balance_factor": 1.25}]}
    )
    assert cfg.routes[0].hash_balance_factor == 1.25
    policy = make_policy("maglev", clock=lambda: 0.0, balance_factor=1.25)
    assert isinstance(policy, Maglev) and policy.balance_factor == 1.25
    assert isinstance(make_policy("ring_hash", clock=lambda: 0.0, balance_factor=2), RingHash)
    with pytest.raises(ValidationError, match="ring_hash and maglev"):
        GatewayConfig.model_validate({"routes": [{"policy": "p2c", "hash_balance_factor": 1.25}]})


async def test_one_hot_session_spreads_over_real_replicas_within_the_bound(demos, gateway):
    """Twelve concurrent streams of one session through a real gateway: maglev keeps them at
    home until the bound, then spills; no replica holds more than ceil(1.25 x 12 / 3) = 5."""
    servers = await demos(3, step_ms=50)
    gw = await gateway(
        servers,
        routes=[
            {
                "policy": "maglev",
                "hash": {"source": "header", "name": "x-session-id"},
                "hash_balance_factor": 1.25,
            }
        ],
    )
    n = 12
    chat = {**CHAT, "max_tokens": 400, "stream": True}  # ~20 s: all are in flight together
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:

        async def stream() -> None:
            headers = {"x-session-id": "s-1"}
            async with client.stream("POST", "/v1/chat/completions", json=chat, headers=headers):
                await asyncio.sleep(60)  # held open; cancelled once the loads are read

        tasks = [asyncio.create_task(stream()) for _ in range(n)]
        try:
            await wait_until(lambda: gw.in_flight == n, 30, "every stream in flight")
            loads = sorted(ep.in_flight for ep in gw.endpoints)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(loads) == n
    assert loads[-1] <= math.ceil(1.25 * n / 3), loads
    assert loads[-1] >= 4, loads  # affinity kept: the home took its full share
