"""Property tests for the retention policy (a pure function)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gyroscope.backup import RetentionPolicy, SnapshotRef, apply_retention

BASE = datetime(2026, 1, 1, tzinfo=UTC)

snapshots = st.lists(
    st.builds(
        lambda i, minutes, tags: SnapshotRef(
            f"s{i}", BASE + timedelta(minutes=minutes), frozenset(tags)
        ),
        st.integers(0, 10**9),
        st.integers(0, 60 * 24 * 800),
        st.sets(st.sampled_from(["nightly", "manual", "keep"]), max_size=2),
    ),
    max_size=60,
    unique_by=lambda s: s.id,
)
policies = st.builds(
    RetentionPolicy,
    last=st.integers(0, 5),
    hourly=st.integers(0, 5),
    daily=st.integers(0, 10),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 13),
    yearly=st.integers(0, 3),
    within=st.none() | st.builds(timedelta, hours=st.integers(0, 24 * 60)),
    tags=st.frozensets(st.sampled_from(["keep", "manual"]), max_size=1),
)


@settings(max_examples=300, deadline=None)
@given(snapshots, policies)
def test_partition_and_bounds(snaps: list[SnapshotRef], policy: RetentionPolicy) -> None:
    keep, remove, reasons = apply_retention(snaps, policy)
    assert {s.id for s in keep} | {s.id for s in remove} == {s.id for s in snaps}
    assert not {s.id for s in keep} & {s.id for s in remove}
    assert set(reasons) == {s.id for s in keep}
    counted = sum(
        getattr(policy, r) for r in ("last", "hourly", "daily", "weekly", "monthly", "yearly")
    )
    unbounded = policy.within is not None or policy.tags or policy.empty
    if not unbounded:
        assert len(keep) <= counted
    if snaps and not policy.empty and (counted or policy.within is not None):
        newest = max(snaps, key=lambda s: (s.time, s.id))
        assert newest in keep  # any count or window keeps the newest snapshot


@settings(max_examples=200, deadline=None)
@given(snapshots, policies)
def test_applying_twice_removes_nothing_more(
    snaps: list[SnapshotRef], policy: RetentionPolicy
) -> None:
    keep, _, _ = apply_retention(snaps, policy)
    again, removed, _ = apply_retention(keep, policy)
    assert removed == [] and again == keep


@settings(max_examples=200, deadline=None)
@given(
    snapshots, policies, st.sampled_from(["last", "hourly", "daily", "weekly", "monthly", "yearly"])
)
def test_a_larger_count_never_keeps_less(
    snaps: list[SnapshotRef], policy: RetentionPolicy, rule: str
) -> None:
    from dataclasses import replace

    assume(not policy.empty)  # an empty policy keeps everything (forget refuses it)
    keep, _, _ = apply_retention(snaps, policy)
    more, _, _ = apply_retention(snaps, replace(policy, **{rule: getattr(policy, rule) + 1}))
    assert {s.id for s in keep} <= {s.id for s in more}


@settings(max_examples=200, deadline=None)
@given(snapshots)
def test_tagged_and_recent_snapshots_are_kept(snaps: list[SnapshotRef]) -> None:
    keep, _, _ = apply_retention(
        snaps, RetentionPolicy(tags=frozenset({"keep"}), within=timedelta(days=2))
    )
    kept = {s.id for s in keep}
    newest = max((s.time for s in snaps), default=BASE)
    for snap in snaps:
        if "keep" in snap.tags or newest - snap.time <= timedelta(days=2):
            assert snap.id in kept
        else:
            assert snap.id not in kept


def test_daily_keeps_the_newest_of_each_day() -> None:
    snaps = [
        SnapshotRef(f"{d}-{h}", BASE + timedelta(days=d, hours=h))
        for d in range(10)
        for h in (1, 13)
    ]
    keep, _, _ = apply_retention(snaps, RetentionPolicy(daily=3, weekly=2))
    assert [s.id for s in keep][:3] == ["9-13", "8-13", "7-13"]
    assert {s.id for s in keep} == {
        "9-13",
        "8-13",
        "7-13",
        "3-13",
    }  # weekly: 2026-W02 and W01 (Jan 4)


def test_empty_policy_keeps_everything() -> None:
    snaps = [SnapshotRef("a", BASE), SnapshotRef("b", BASE + timedelta(hours=1))]
    keep, remove, _ = apply_retention(snaps, RetentionPolicy())
    assert len(keep) == 2 and remove == []
