"""Property tests for the keyed content-defined chunker."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.backup import CorruptDataError, Repository, Secret, backup
from gyroscope.backup._chunker import LEGACY_SIZES, MAX_SIZE, MIN_SIZE, Chunker, default_sizes

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
    data = random.Random(6).randbytes(9 << 20)
    chunker = Chunker(99)
    from_buf = [bytes(c) for c in chunker.cut(data)]
    from_stream = [bytes(c) for c in chunker.cut_stream(io.BytesIO(data))]
    assert from_buf == from_stream
    assert all(MIN_SIZE <= len(c) <= MAX_SIZE for c in from_buf[:-1])


def test_repository_records_its_chunk_sizes_and_keeps_them(
    repo: Repository, tmp_path: Path
) -> None:
    assert repo.chunk_sizes == default_sizes()
    config = Path(repo.location) / "config"
    assert json.loads(config.read_text())["chunker"] == default_sizes()
    data = random.Random(8).randbytes(3 << 20)
    expected = [repo.key.chunk_id(c).hex() for c in Chunker(repo.key.chunker_seed).cut(data)]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(data)
    snap = backup(repo, [str(tmp_path / "src")]).snapshot
    entry = next(e for e in snap.entries(repo) if e["p"].endswith("/f"))
    assert entry["c"] == expected and len(expected) > 4


def test_repository_without_recorded_sizes_cuts_as_before(
    repo: Repository, secret: Secret, tmp_path: Path
) -> None:
    """A repository created before the sizes were recorded keeps the old ones, so its next backup
    still deduplicates against what is stored."""
    config = Path(repo.location) / "config"
    doc = json.loads(config.read_text())
    del doc["chunker"]
    config.write_text(json.dumps(doc))
    old = Repository.open(repo.location, secret)
    assert old.chunk_sizes == LEGACY_SIZES
    data = random.Random(9).randbytes(6 << 20)
    legacy = Chunker.with_sizes(old.key.chunker_seed, LEGACY_SIZES)
    expected = [old.key.chunk_id(c).hex() for c in legacy.cut(data)]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(data)
    snap = backup(old, [str(tmp_path / "src")]).snapshot
    assert next(e for e in snap.entries(old) if e["p"].endswith("/f"))["c"] == expected


@pytest.mark.parametrize(
    "chunker",
    [
        "big",
        {"avg": 1 << 18, "min": 1 << 16},
        {"avg": 1 << 18, "min": 1 << 16, "max": 1 << 30},
        {"avg": 1 << 16, "min": 1 << 18, "max": 1 << 20},
        {"avg": 1.5, "min": 1 << 16, "max": 1 << 20},
    ],
)
def test_malformed_chunk_sizes_are_a_clear_error(
    repo: Repository, secret: Secret, chunker: object
) -> None:
    config = Path(repo.location) / "config"
    doc = json.loads(config.read_text())
    doc["chunker"] = chunker
    config.write_text(json.dumps(doc))
    with pytest.raises(CorruptDataError, match="config: chunker"):
        Repository.open(repo.location, secret)


class _Trickle(io.RawIOBase):
    """A stream that returns short reads, like a pipe or a network file system."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.step, len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 300_000), st.integers(1, 70_000))
def test_stream_cuts_as_the_whole_buffer_whatever_the_read_sizes(
    seed: int, size: int, step: int
) -> None:
    data = random.Random(seed).randbytes(size)
    chunker = Chunker(seed + 1, **SMALL)
    expected = [bytes(c) for c in chunker.cut(data)]
    assert [bytes(c) for c in chunker.cut_stream(_Trickle(data, step))] == expected


def test_interleaved_streams_on_one_thread_do_not_share_a_buffer() -> None:
    one, two = (random.Random(s).randbytes(5 << 20) for s in (1, 2))
    chunker = Chunker(3)
    assert list(chunker.cut_stream(io.BytesIO(b"warm"))) == [b"warm"]  # this thread's buffer exists
    a, b = chunker.cut_stream(io.BytesIO(one)), chunker.cut_stream(io.BytesIO(two))
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    while True:  # one chunk of each in turn, until both end
        x, y = next(a, None), next(b, None)
        if x is None and y is None:
            break
        got_a += [bytes(x)] if x is not None else []
        got_b += [bytes(y)] if y is not None else []
    assert b"".join(got_a) == one and b"".join(got_b) == two
    assert got_a == [bytes(c) for c in chunker.cut(one)]
