"""Property tests for the keyed content-defined chunker."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.backup._chunker import MAX_SIZE, MIN_SIZE, Chunker

SMALL = {"avg": 1024, "min_size": 256, "max_size": 4096}


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=40_000), st.integers(1, 2**62))
def test_chunks_concatenate_to_the_input_within_bounds(data: bytes, seed: int) -> None:
    chunks = [bytes(c) for c in Chunker(seed, **SMALL).cut(data)]
    assert b"".join(chunks) == data
    assert all(len(c) <= 4096 for c in chunks)
    assert all(len(c) >= 256 for c in chunks[:-1])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 60_000), st.binary(min_size=1, max_size=64))
def test_an_insertion_changes_only_nearby_chunks(seed: int, at: int, inserted: bytes) -> None:
    data = random.Random(seed).randbytes(64_000)
    at = min(at, len(data))
    chunker = Chunker(seed + 1, **SMALL)
    before = {bytes(c) for c in chunker.cut(data)}
    after = [bytes(c) for c in chunker.cut(data[:at] + inserted + data[at:])]
    changed = [c for c in after if c not in before]
    # Content-defined boundaries resynchronise: only the chunks around the edit differ.
    assert sum(len(c) for c in changed) <= 3 * 4096 + len(inserted)


def test_boundaries_are_keyed_per_repository() -> None:
    data = random.Random(5).randbytes(200_000)
    one = [len(c) for c in Chunker(11, **SMALL).cut(data)]
    two = [len(c) for c in Chunker(12, **SMALL).cut(data)]
    assert one != two
    assert one == [len(c) for c in Chunker(11, **SMALL).cut(data)]


def test_stream_and_buffer_cut_the_same() -> None:
    import io

    data = random.Random(6).randbytes(9 << 20)
    chunker = Chunker(99)
    from_buf = [bytes(c) for c in chunker.cut(data)]
    from_stream = [bytes(c) for c in chunker.cut_stream(io.BytesIO(data))]
    assert from_buf == from_stream
    assert all(MIN_SIZE <= len(c) <= MAX_SIZE for c in from_buf[:-1])
