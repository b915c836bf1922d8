"""Bulk puts (``BlobStore.put_files``, the import's): on the filesystem store one trip to
the thread pool, on PostgreSQL transactions of up to PUT_BATCH_BYTES whose small bodies
go with the COMMIT. Every body reads back byte for byte; a group that fails (a wrong
hash, a file gone) stores nothing of itself and keeps what its keys held before."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from devpi_twisted.storage import pgblobs
from devpi_twisted.storage.blobs import CHUNK_SIZE, BlobHashMismatch
from devpi_twisted.storage.fileblobs import FileBlobStore
from tests.storage.test_blobs import _data, _file, _leftovers, _raises, _read, blobs  # noqa: F401

KEY = "alice/dev/+f/abc/def0123456789/{}.tar.gz"


def _items(tmp_path: Path, sizes: list[int], seed: int = 0) -> list[tuple[str, Path, str]]:
    return [(KEY.format(f"pkg{n}"), *_file(tmp_path, _data(size, seed + n), f"f{seed}-{n}"))
            for n, size in enumerate(sizes)]


@pytest_twisted.ensureDeferred
async def test_every_body_of_a_bulk_put_reads_back(blobs: Any, tmp_path: Path,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgblobs, "PUT_BATCH_BYTES", 64 * 1024)  # several transactions
    sizes = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 5] + [200 + n for n in range(300)]
    items = _items(tmp_path, sizes)
    await blobs.put_files(items)
    for key, path, _ in items:
        assert await blobs.size(key) == path.stat().st_size
    for key, path, _ in items[:6] + items[-2:]:
        assert await _read(blobs, key) == path.read_bytes()
    again = _items(tmp_path, [300, 5], seed=1000)  # new bodies under keys already held
    await blobs.put_files(again)
    assert [await _read(blobs, key) for key, _, _ in again] == [p.read_bytes() for _, p, _ in again]


@pytest_twisted.ensureDeferred
async def test_a_small_body_with_a_wrong_hash_keeps_what_the_key_held(
        blobs: Any, tmp_path: Path) -> None:  # noqa: F811
    [(key, good, sha256)] = _items(tmp_path, [100])
    await blobs.put_file(key, good, sha256)
    before = await _leftovers(blobs)
    bad, _ = _file(tmp_path, b"not what the hash says", "bad")
    error = await _raises(BlobHashMismatch, blobs.put_file(key, bad, sha256))
    assert error.actual == hashlib.sha256(b"not what the hash says").hexdigest()
    assert await _read(blobs, key) == good.read_bytes()
    assert await _leftovers(blobs) == before


@pytest_twisted.ensureDeferred
async def test_a_group_failing_part_way_stores_nothing_of_itself(
        blobs: Any, tmp_path: Path) -> None:  # noqa: F811
    held = _items(tmp_path, [10, 20, 30, 40, 50], seed=50)
    await blobs.put_files(held)
    before = await _leftovers(blobs)
    items = _items(tmp_path, [11, 21, 31, 41, 51], seed=60)
    wrong = [*items[:2], (items[2][0], items[2][1], "0" * 64), *items[3:]]
    await _raises(BlobHashMismatch, blobs.put_files(wrong))
    gone = items[:3] + [(items[3][0], tmp_path / "no-such-file", items[3][2])] + items[4:]
    await _raises(FileNotFoundError, blobs.put_files(gone))
    stored = [await _read(blobs, key) for key, _, _ in held]
    if isinstance(blobs, FileBlobStore):  # file by file: the keys before a failure are new
        assert stored[:3] == [p.read_bytes() for _, p, _ in items[:3]]
        assert stored[3:] == [p.read_bytes() for _, p, _ in held[3:]]
    else:  # one transaction: every key keeps what it held
        assert stored == [p.read_bytes() for _, p, _ in held]
        assert await _leftovers(blobs) == before
