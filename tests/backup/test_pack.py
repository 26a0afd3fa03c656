"""Pack writing: packs assembled in reused buffers hold exactly their blobs."""

from __future__ import annotations

import random

from gyroscope.backup import Repository, check
from gyroscope.backup._pack import PackWriter, read_pack_header


def _add(writer: PackWriter, repo: Repository, data: bytes) -> bytes:
    blob_id = repo.key.chunk_id(data)
    writer.add("d", blob_id, repo.seal_blob(blob_id, data), len(data))
    return blob_id


def test_packs_from_reused_buffers_hold_exactly_their_blobs(repo: Repository) -> None:
    rng = random.Random(3)
    writer = PackWriter(repo, target_size=64 << 10)
    # Sizes vary so that a reused buffer always held a longer pack before: stale bytes would show.
    blobs = {}
    for i in range(300):
        data = rng.randbytes(rng.randint(1, 40_000)) if i % 3 else b"text " * rng.randint(1, 9000)
        blobs[_add(writer, repo, data)] = data
    writer.finish()
    assert writer.packs_written > 20
    assert all(repo.read_blob(blob_id) == data for blob_id, data in blobs.items())
    sizes = {info.name.rsplit("/", 1)[-1]: info.size for info in repo.backend.list("data")}
    assert sum(sizes.values()) == writer.bytes_written
    for pack, size in sizes.items():
        rows = read_pack_header(repo, f"data/{pack[:2]}/{pack}", size)
        # blobs back to back from offset 0, then the header: nothing left over from earlier use
        assert [r[2] for r in rows] == [0, *(r[2] + r[3] for r in rows[:-1])]
    repo.load_index()
    assert check(repo, read_data=True).ok


def test_pack_of_very_many_tiny_blobs_whose_header_outgrows_the_buffer(
    repo: Repository,
) -> None:
    writer = PackWriter(repo, target_size=3 << 20)
    ids = [_add(writer, repo, i.to_bytes(4, "little")) for i in range(95_000)]
    writer.finish()
    assert writer.packs_written == 1
    assert writer.bytes_written > writer._capacity  # the header did not fit beside the blobs
    repo.load_index()
    assert all(
        repo.read_blob(i) == n.to_bytes(4, "little") for n, i in enumerate(ids) if n % 997 == 0
    )
    assert check(repo, read_data=True).ok
