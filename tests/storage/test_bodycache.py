"""The host's copies of PostgreSQL blob bodies (bodycache.py): made on the first
download, served by descriptor afterwards, checked, evicted, never trusted over the
database. The PostgreSQL tests run on the session's real cluster."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed

from devpi_twisted.storage.blobs import CHUNK_SIZE, TEMP_PREFIX, BlobHashMismatch, BlobMissing
from devpi_twisted.storage.bodycache import BodyCache
from devpi_twisted.storage.pgblobs import PgBlobStore
from devpi_twisted.storage.postgres import PostgresStorage
from tests.pg import PgCluster
from tests.storage.test_blobs import _data, _reactor

MiB = 1 << 20


def _key(n: int) -> str:
    return f"alice/dev/+f/abc/def012345678{n}/pkg-{n}.0.tar.gz"


class Store:
    """A PgBlobStore on a fresh database, with copies under ``root`` (at most ``limit``)."""

    def __init__(self, cluster: PgCluster, root: Path, limit: int) -> None:
        self.storage = PostgresStorage.open(cluster.settings(cluster.create_database()), _reactor())
        self.root = root
        self.copies = BodyCache(root, limit, _reactor())
        self.blobs = PgBlobStore(self.storage.pool, _reactor(), copies=self.copies)

    async def put(self, tmp_path: Path, n: int, size: int) -> tuple[str, bytes, str]:
        data = _data(size, n)
        sha256 = hashlib.sha256(data).hexdigest()
        source = tmp_path / f"upload-{n}"
        source.write_bytes(data)
        await self.blobs.put_file(_key(n), source, sha256)
        return _key(n), data, sha256

    def copy_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def temporaries(self) -> list[Path]:
        return list(self.root.glob(TEMP_PREFIX + "*")) if self.root.exists() else []


@pytest.fixture
def store(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[Store]:
    made = Store(pg_cluster, tmp_path / "+blobcache", 4 * MiB)
    yield made
    made.storage.close()


def _whole(local: Any) -> bytes:
    return os.pread(local.fd, local.size + 1, 0)


@pytest_twisted.ensureDeferred
async def test_postgres_first_download_streams_and_copies_then_the_copy_is_served(
        store: Store, tmp_path: Path) -> None:
    key, data, sha256 = await store.put(tmp_path, 1, 2 * MiB + 5)
    assert await store.blobs.open_local(key) is None  # not here yet: streamed from the database
    await store.copies.settle()
    assert store.copy_of(sha256).read_bytes() == data and store.temporaries() == []
    local = await store.blobs.open_local(key)
    assert local is not None and local.size == len(data) and _whole(local) == data
    again = await store.blobs.open_local(key)
    assert again.fd == local.fd  # the descriptor is kept open for the next download
    local.close()
    again.close()
    assert store.blobs.copy_stats() == {"hits": 2, "misses": 1, "copies_made": 1,
                                        "copy_errors": 0, "bytes": len(data)}


@pytest_twisted.ensureDeferred
async def test_postgres_the_database_decides_what_exists(store: Store, tmp_path: Path) -> None:
    key, data, sha256 = await store.put(tmp_path, 2, MiB)
    await store.blobs.open_local(key)
    await store.copies.settle()
    (await store.blobs.open_local(key)).close()
    await store.blobs.delete(key)
    assert store.copy_of(sha256).exists()
    with pytest.raises(BlobMissing):
        await store.blobs.open_local(key)  # the copy is there, the blob is not: not served
    # another key with the same body is served from the same copy
    other = "bob/dev/+f/abc/def0123456789/pkg-2.0.tar.gz"
    source = tmp_path / "again"
    source.write_bytes(data)
    await store.blobs.put_file(other, source, sha256)
    local = await store.blobs.open_local(other)
    assert local is not None and _whole(local) == data
    local.close()


@pytest_twisted.ensureDeferred
async def test_postgres_a_copy_held_open_is_lent_for_the_records_sha256_without_a_query(
        store: Store, tmp_path: Path) -> None:
    key, data, sha256 = await store.put(tmp_path, 3, MiB)
    assert await store.blobs.open_local(key, sha256) is None  # nothing held: asks, copies
    await store.copies.settle()
    (await store.blobs.open_local(key, sha256)).close()
    store.storage.pool.close()
    queries: list[Any] = []
    store.storage.pool.interaction = queries.append  # type: ignore[method-assign]
    local = await store.blobs.open_local(key, sha256.upper())
    assert local is not None and _whole(local) == data and queries == []
    local.close()


@pytest_twisted.ensureDeferred
async def test_postgres_least_recently_served_copies_are_evicted_at_the_limit(
        store: Store, tmp_path: Path) -> None:
    stored = [await store.put(tmp_path, n, MiB + n) for n in range(1, 5)]  # 4 MiB + 10 bytes
    for key, _, _ in stored[:3]:
        await store.blobs.open_local(key)
        await store.copies.settle()
    (await store.blobs.open_local(stored[0][0])).close()  # the first is now the most recent
    await store.blobs.open_local(stored[3][0])
    await store.copies.settle()
    assert [store.copy_of(sha).exists() for _, _, sha in stored] == [True, False, True, True]
    assert await store.blobs.open_local(stored[1][0]) is None  # copied again on demand
    await store.copies.settle()
    assert store.copy_of(stored[1][2]).exists() and not store.copy_of(stored[2][2]).exists()


@pytest_twisted.ensureDeferred
async def test_postgres_a_restarted_process_counts_the_copies_it_finds(
        pg_cluster: PgCluster, store: Store, tmp_path: Path) -> None:
    stored = [await store.put(tmp_path, n, MiB + n) for n in range(1, 5)]
    for key, _, _ in stored[:3]:
        await store.blobs.open_local(key)
        await store.copies.settle()
    stale = store.root / f"{TEMP_PREFIX}crashed"
    stale.write_bytes(b"half a body")
    os.utime(stale, (0, 0))
    fresh = store.root / f"{TEMP_PREFIX}another-worker-busy"
    fresh.write_bytes(b"in progress")
    os.utime(store.copy_of(stored[0][2]), (1, 1))  # the least recently used of the three
    restarted = BodyCache(store.root, 4 * MiB, _reactor())
    blobs = PgBlobStore(store.storage.pool, _reactor(), copies=restarted)
    await blobs.open_local(stored[3][0])
    await restarted.settle()
    assert [store.copy_of(sha).exists() for _, _, sha in stored] == [False, True, True, True]
    assert not stale.exists() and fresh.exists()


@pytest_twisted.ensureDeferred
async def test_postgres_no_copies_without_a_cache(store: Store, tmp_path: Path) -> None:
    key, _, _ = await store.put(tmp_path, 1, MiB)
    plain = PgBlobStore(store.storage.pool, _reactor())
    assert await plain.open_local(key) is None and plain.copy_stats() == {}
    assert not store.root.exists()


def _fetch_from(data: bytes, calls: list[int]) -> Any:
    def fetch(position: int, count: int) -> Deferred[bytes]:
        calls.append(position)
        return succeed(data[position:position + count])

    return fetch


@pytest_twisted.ensureDeferred
async def test_a_body_that_does_not_hash_right_is_not_kept(tmp_path: Path) -> None:
    copies = BodyCache(tmp_path / "c", 10 * MiB, _reactor())
    data = _data(MiB + 1, 1)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(BlobHashMismatch):
        await copies.copy(wrong, len(data), _fetch_from(data, []))
    assert [p for p in (tmp_path / "c").rglob("*") if not p.is_dir()] == []
    assert await copies.open(wrong, len(data)) is None


@pytest_twisted.ensureDeferred
async def test_a_failed_or_short_fetch_keeps_nothing(tmp_path: Path) -> None:
    copies = BodyCache(tmp_path / "c", 10 * MiB, _reactor())
    data = _data(2 * MiB, 2)
    sha256 = hashlib.sha256(data).hexdigest()

    def broken(position: int, count: int) -> Deferred[bytes]:
        return fail(BlobMissing("gone")) if position else succeed(data[:count])

    with pytest.raises(BlobMissing):
        await copies.copy(sha256, len(data), broken)
    with pytest.raises(BlobMissing):
        await copies.copy(sha256, len(data) + 1, _fetch_from(data, []))  # ends early
    assert [p for p in (tmp_path / "c").rglob("*") if not p.is_dir()] == []


@pytest_twisted.ensureDeferred
async def test_concurrent_copies_of_one_body_share_one_fetch(tmp_path: Path) -> None:
    copies = BodyCache(tmp_path / "c", 10 * MiB, _reactor())
    data = _data(3 * MiB, 3)
    sha256 = hashlib.sha256(data).hexdigest()
    calls: list[int] = []
    first = copies.copy(sha256, len(data), _fetch_from(data, calls))
    second = copies.copy(sha256, len(data), _fetch_from(data, calls))
    await first
    await second
    assert calls == [0, CHUNK_SIZE, 2 * CHUNK_SIZE]
    local = await copies.open(sha256, len(data))
    assert _whole(local) == data
    local.close()


@pytest_twisted.ensureDeferred
async def test_a_copy_of_the_wrong_size_is_not_served(tmp_path: Path) -> None:
    copies = BodyCache(tmp_path / "c", 10 * MiB, _reactor())
    data = _data(1000, 4)
    sha256 = hashlib.sha256(data).hexdigest()
    await copies.copy(sha256, len(data), _fetch_from(data, []))
    path = tmp_path / "c" / sha256[:2] / sha256[2:]
    path.write_bytes(data[:500])  # cut short behind our back
    fresh = BodyCache(tmp_path / "c", 10 * MiB, _reactor())
    assert await fresh.open(sha256, len(data)) is None
    assert await fresh.open("../../etc/passwd", 10) is None  # only sha256 names are looked up
