"""Bloom filters never say "absent" for a substring that is there, also across build chunks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.logs import _bloom
from gyroscope.logs._bloom import BloomFilter


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=6, max_size=3000), st.data())
def test_no_false_negatives(data: bytes, draw: st.DataObject) -> None:
    saved = _bloom._CHUNK
    _bloom._CHUNK = 64  # many chunk boundaries inside a small input
    try:
        f = BloomFilter.build(data, bits=12)
    finally:
        _bloom._CHUNK = saved
    start = draw.draw(st.integers(0, len(data) - 6))
    length = draw.draw(st.integers(6, min(40, len(data) - start)))
    assert f.may_contain(data[start : start + length])


def test_absent_needles_are_usually_ruled_out() -> None:
    f = BloomFilter.build(b"GET /v1/models 200 trace=0f3a9c1b7d2e4f60\n" * 100)
    assert f.may_contain(b"trace=0f3a9c1b7d2e4f60")
    assert not f.may_contain(b"trace=ffffffffffffffff")
    assert f.may_contain(b"abc")  # shorter than a gram: cannot rule anything out


@pytest.mark.parametrize("size", [0, 1, 5])
def test_tiny_inputs(size: int) -> None:
    f = BloomFilter.build(b"x" * size)
    assert not f.may_contain(b"yyyyyyy")
