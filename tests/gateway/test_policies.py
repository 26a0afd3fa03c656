"""Balancing policies: distributions, weights, load awareness, key stability, bounded loads."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.gateway import (
    P2C,
    POLICIES,
    Endpoint,
    LeastConnections,
    Maglev,
    PeakEwma,
    RandomPolicy,
    RingHash,
    RoundRobin,
    SmoothWeightedRoundRobin,
    hash64,
    make_policy,
)


def eps(*weights: int) -> list[Endpoint]:
    return [Endpoint(f"r{i}", "127.0.0.1", 9000 + i, weight=w) for i, w in enumerate(weights)]


def spread(policy, endpoints, n, keys=False):
    counts: Counter[str] = Counter()
    for i in range(n):
        ep = policy.pick(endpoints, hash64(b"k%d" % i) if keys else None)
        counts[ep.name] += 1
    return counts


def test_every_policy_has_a_factory_and_picks_only_from_the_list():
    endpoints = eps(1, 2, 3)
    for name in POLICIES:
        policy = make_policy(name, clock=lambda: 0.0, rng=random.Random(1))
        assert policy.name == name
        for i in range(50):
            assert policy.pick(endpoints, hash64(b"%d" % i)) in endpoints
        assert policy.pick([], 1) is None
        assert policy.pick(endpoints, 1, exclude=endpoints) is None


def test_unknown_policy_names_the_choices():
    with pytest.raises(ValueError, match="round_robin"):
        make_policy("fastest", clock=lambda: 0.0)


def test_round_robin_cycles_in_order():
    endpoints = eps(1, 1, 1)
    policy = RoundRobin()
    assert [policy.pick(endpoints).name for _ in range(6)] == ["r0", "r1", "r2"] * 2


def test_round_robin_skips_excluded():
    endpoints = eps(1, 1, 1)
    policy = RoundRobin()
    picks = {policy.pick(endpoints, exclude=[endpoints[1]]).name for _ in range(10)}
    assert picks == {"r0", "r2"}


def test_smooth_weighted_round_robin_matches_nginx_sequence():
    endpoints = [Endpoint(n, "h", 1, weight=w) for n, w in (("a", 5), ("b", 1), ("c", 1))]
    policy = SmoothWeightedRoundRobin()
    # nginx's documented sequence for weights 5, 1, 1: never five a's in a row.
    assert "".join(policy.pick(endpoints).name for _ in range(7)) == "aabacaa"


@given(st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_smooth_weighted_round_robin_is_exact_per_cycle(weights):
    endpoints = eps(*weights)
    policy = SmoothWeightedRoundRobin()
    counts = spread(policy, endpoints, sum(weights))
    assert [counts[ep.name] for ep in endpoints] == weights


def test_least_connections_prefers_the_idle_replica_and_rotates_ties():
    endpoints = eps(1, 1, 1)
    endpoints[0].in_flight = 5
    endpoints[1].in_flight = 1
    endpoints[2].in_flight = 1
    policy = LeastConnections()
    picks = {policy.pick(endpoints).name for _ in range(10)}
    assert picks == {"r1", "r2"}  # both least loaded, ties rotate


def test_least_connections_respects_weights():
    endpoints = eps(1, 4)
    endpoints[0].in_flight = 2  # load 3/1
    endpoints[1].in_flight = 6  # load 7/4 < 3
    assert LeastConnections().pick(endpoints).name == "r1"


def test_least_connections_balances_held_requests():
    endpoints = eps(1, 1, 1, 1)
    policy = LeastConnections()
    for _ in range(40):
        policy.pick(endpoints).in_flight += 1
    assert [ep.in_flight for ep in endpoints] == [10, 10, 10, 10]


def test_p2c_never_picks_the_most_loaded_of_two():
    endpoints = eps(1, 1)
    endpoints[0].in_flight = 10
    policy = P2C(random.Random(3))
    assert all(policy.pick(endpoints).name == "r1" for _ in range(50))


def test_p2c_keeps_held_load_even():
    endpoints = eps(1, 1, 1, 1, 1)
    policy = P2C(random.Random(7))
    for _ in range(500):
        policy.pick(endpoints).in_flight += 1
    loads = [ep.in_flight for ep in endpoints]
    assert max(loads) - min(loads) <= 3  # power of two choices: max load ~ log log n above mean


def test_p2c_weights_shift_load():
    endpoints = eps(1, 3)
    policy = P2C(random.Random(5))
    for _ in range(400):
        policy.pick(endpoints).in_flight += 1
    assert 2.5 <= endpoints[1].in_flight / endpoints[0].in_flight <= 3.5


def test_p2c_spreads_uniformly_without_load():
    counts = spread(P2C(random.Random(11)), eps(1, 1, 1), 3000)
    assert all(800 < c < 1200 for c in counts.values())


def test_peak_ewma_avoids_the_slow_replica():
    now = [100.0]
    endpoints = eps(1, 1)
    endpoints[0].observe_latency(0.500, now[0])
    endpoints[1].observe_latency(0.010, now[0])
    policy = PeakEwma(lambda: now[0], random.Random(1))
    counts = spread(policy, endpoints, 200)
    assert counts["r1"] == 200


def test_peak_ewma_reacts_to_a_spike_at_once_and_decays_slowly():
    ep = eps(1)[0]
    ep.observe_latency(0.010, 0.0)
    ep.observe_latency(1.000, 1.0)
    assert ep.ewma == pytest.approx(1.0)  # peak: jumps up at once
    ep.observe_latency(0.010, 2.0)
    assert 0.5 < ep.ewma < 1.0  # decays with a 10 s time constant
    ep.observe_latency(0.010, 100.0)
    assert ep.ewma < 0.02


def test_random_follows_weights():
    counts = spread(RandomPolicy(random.Random(2)), eps(1, 3), 4000)
    assert 2.6 < counts["r1"] / counts["r0"] < 3.4


def test_zero_weight_replicas_get_nothing():
    endpoints = eps(0, 1)
    for name in (
        "weighted_round_robin",
        "least_connections",
        "p2c",
        "random",
        "maglev",
        "ring_hash",
    ):
        policy = make_policy(name, clock=lambda: 0.0, rng=random.Random(1))
        counts = spread(policy, endpoints, 200, keys=name in ("maglev", "ring_hash"))
        assert counts["r0"] == 0, name


@pytest.mark.parametrize("cls", [RingHash, Maglev])
def test_hash_policies_are_sticky_per_key(cls):
    endpoints = eps(1, 1, 1)
    policy = cls()
    key = hash64(b"session-42")
    first = policy.pick(endpoints, key)
    assert all(policy.pick(endpoints, key) is first for _ in range(20))


@pytest.mark.parametrize("cls", [RingHash, Maglev])
def test_hash_policies_spread_keys_evenly(cls):
    counts = spread(cls(), eps(1, 1, 1, 1), 8000, keys=True)
    assert all(1400 < c < 2600 for c in counts.values()), counts


def test_maglev_weights():
    counts = spread(Maglev(), eps(1, 2), 6000, keys=True)
    assert 1.7 < counts["r1"] / counts["r0"] < 2.3


def _moved(policy_factory, before, after, keys):
    p1, p2 = policy_factory(), policy_factory()
    return sum(p1.pick(before, k).name != p2.pick(after, k).name for k in keys)


@pytest.mark.parametrize("cls", [RingHash, Maglev])
def test_removing_a_replica_moves_only_its_keys(cls):
    before = eps(1, 1, 1, 1, 1)
    after = before[:2] + before[3:]  # r2 goes away
    keys = [hash64(b"user-%d" % i) for i in range(4000)]
    p1, p2 = cls(), cls()
    owners = {k: p1.pick(before, k).name for k in keys}
    moved = [k for k in keys if p2.pick(after, k).name != owners[k]]
    on_removed = [k for k in keys if owners[k] == "r2"]
    # Every key of the removed replica moves; Maglev may move a few more (its paper: ~1%).
    assert set(on_removed) <= set(moved)
    assert len(moved) <= len(on_removed) * 1.1 + 0.02 * len(keys)


@pytest.mark.parametrize("cls", [RingHash, Maglev])
def test_adding_a_replica_moves_about_one_nth(cls):
    before = eps(1, 1, 1, 1)
    after = eps(1, 1, 1, 1, 1)
    keys = [hash64(b"user-%d" % i) for i in range(4000)]
    moved = _moved(cls, before, after, keys)
    assert moved <= len(keys) / 5 * 1.3 + 0.02 * len(keys)
    # and the keys that moved went to the new replica
    p1, p2 = cls(), cls()
    for k in keys:
        a, b = p1.pick(before, k).name, p2.pick(after, k).name
        if a != b and cls is RingHash:
            assert b == "r4"


@pytest.mark.parametrize("cls", [RingHash, Maglev])
def test_hash_policy_skips_excluded_replica_deterministically(cls):
    endpoints = eps(1, 1, 1)
    policy = cls()
    key = hash64(b"k")
    first = policy.pick(endpoints, key)
    second = policy.pick(endpoints, key, exclude=[first])
    assert second is not None and second is not first
    assert policy.pick(endpoints, key, exclude=[first]) is second


def test_hash_policies_fall_back_when_a_request_has_no_key():
    counts = spread(RingHash(rng=random.Random(1)), eps(1, 1), 200)
    assert len(counts) == 2


@given(
    n=st.integers(min_value=2, max_value=8),
    c=st.floats(min_value=1.05, max_value=2.0),
    hot=st.integers(min_value=1, max_value=5),
    requests=st.integers(min_value=1, max_value=300),
    seed=st.integers(min_value=0, max_value=1000),
)
@settings(max_examples=80, deadline=None)
def test_bounded_loads_never_exceed_c_times_the_mean(n, c, hot, requests, seed):
    """HAProxy's hash-balance-factor: even when every key is one of a few hot keys."""
    endpoints = eps(*([1] * n))
    policy = RingHash(balance_factor=c)
    rng = random.Random(seed)
    hot_keys = [hash64(b"hot-%d" % i) for i in range(hot)]
    for _ in range(requests):
        policy.pick(endpoints, rng.choice(hot_keys)).in_flight += 1
    bound = math.ceil(c * requests / n)
    assert max(ep.in_flight for ep in endpoints) <= bound


def test_bounded_loads_keep_affinity_when_not_overloaded():
    endpoints = eps(1, 1, 1)
    policy = RingHash(balance_factor=1.25)
    key = hash64(b"user-7")
    home = policy.pick(endpoints, key)
    for ep in endpoints:
        ep.in_flight = 3
    assert policy.pick(endpoints, key) is home  # at the mean: still at home
    home.in_flight = 10
    assert policy.pick(endpoints, key) is not home  # a hot spot: spill to the next on the ring
