"""The blob store contract: the filesystem store (next to sqlite) and the PostgreSQL
store (in the adapter's database) pass the same tests, on the real reactor."""

from __future__ import annotations

import hashlib
import os
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.task import deferLater
from twisted.web.client import Agent
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from devpi_twisted.storage.blobs import (
    CHUNK_SIZE, TEMP_PREFIX, BlobHashMismatch, BlobKeyInvalid, BlobMissing, BlobReadStopped,
)
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.pgblobs import PgBlobStore

KEY = "alice/dev/+f/abc/def0123456789/pkg-1.0.tar.gz"
MiB = 1 << 20


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def blobs(adapter: Any, tmp_path: Path) -> Any:
    """The filesystem store in a server directory for sqlite; the PostgreSQL store on the
    (migrated) database of the adapter's PostgresStorage for postgres."""
    if adapter.name == "sqlite":
        return FileBlobStore(tmp_path / "serverdir" / "+files", _reactor())
    storage = adapter.open()  # migrates; the adapter closes it after the test
    return PgBlobStore(storage._pool, _reactor())


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _file(tmp_path: Path, data: bytes, name: str = "upload.tmp") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@implementer(IConsumer)
class Collector:
    """An IConsumer that keeps what it is given and checks the producer protocol.
    With ``pause_every_write`` it pauses the producer after each write."""

    def __init__(self, pause_every_write: bool = False, stop_after: int | None = None) -> None:
        self.chunks: list[bytes] = []
        self.producer: Any = None
        self.streaming: bool | None = None
        self.registered = 0
        self.unregistered = 0
        self.paused = False
        self.writes_while_paused = 0
        self._pause_every_write = pause_every_write
        self._stop_after = stop_after

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None, "a second producer registered"
        assert IPushProducer.providedBy(producer)
        self.producer, self.streaming = producer, streaming
        self.registered += 1

    def unregisterProducer(self) -> None:
        assert self.producer is not None, "unregistered without a producer"
        self.producer = None
        self.unregistered += 1

    def write(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        assert self.producer is not None, "write without a registered producer"
        if self.paused:
            self.writes_while_paused += 1
        self.chunks.append(data)
        if self._stop_after is not None and len(self.chunks) >= self._stop_after:
            self.producer.stopProducing()
        elif self._pause_every_write:
            self.paused = True
            self.producer.pauseProducing()

    def resume(self) -> None:
        self.paused = False
        self.producer.resumeProducing()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


async def _read(blobs: Any, key: str, offset: int = 0, length: int | None = None) -> bytes:
    consumer = Collector()
    written = await blobs.read(key, consumer, offset, length)
    assert consumer.streaming is True and consumer.registered == consumer.unregistered == 1
    assert consumer.producer is None
    assert written == len(consumer.data)
    assert all(0 < len(c) <= CHUNK_SIZE for c in consumer.chunks)
    return consumer.data


async def _raises(exc: type[BaseException], d: Any) -> BaseException:
    try:
        await d
    except exc as e:
        return e
    raise AssertionError(f"{exc.__name__} not raised")


async def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await deferLater(_reactor(), 0.01)


async def _leftovers(blobs: Any) -> list[str]:
    """Every file under the filesystem store's root; every chunk row in the database."""
    if isinstance(blobs, FileBlobStore):
        if not blobs.root.exists():
            return []
        return sorted(str(p.relative_to(blobs.root)) for p in blobs.root.rglob("*") if not p.is_dir())

    async def rows(cursor: Any) -> list[str]:
        await cursor.execute("SELECT key, seq FROM blob_chunks ORDER BY key, seq")
        return [f"{key}#{seq}" for key, seq in cursor.fetchall()]

    return await blobs._pool.interaction(rows)  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_small_blob_round_trips(blobs: Any, tmp_path: Path) -> None:
    path, sha256 = _file(tmp_path, b"hello, blob")
    assert await blobs.put_file(KEY, path, sha256) == 11
    assert await blobs.exists(KEY) is True
    assert await blobs.size(KEY) == 11
    assert await _read(blobs, KEY) == b"hello, blob"
    assert path.read_bytes() == b"hello, blob"  # the caller's file is left alone


@pytest_twisted.ensureDeferred
async def test_empty_blob_round_trips(blobs: Any, tmp_path: Path) -> None:
    path, sha256 = _file(tmp_path, b"")
    assert await blobs.put_file(KEY, path, sha256) == 0
    assert await blobs.exists(KEY) is True
    assert await blobs.size(KEY) == 0
    assert await _read(blobs, KEY) == b""


@pytest_twisted.ensureDeferred
async def test_multi_chunk_blob_round_trips_in_chunk_sized_writes(blobs: Any, tmp_path: Path) -> None:
    data = _data(3 * MiB + 12345)
    path, sha256 = _file(tmp_path, data)
    assert await blobs.put_file(KEY, path, sha256.upper()) == len(data)  # hex in either case
    assert await blobs.size(KEY) == len(data)
    consumer = Collector()
    assert await blobs.read(KEY, consumer) == len(data)
    assert consumer.data == data
    assert len(consumer.chunks) == 4 and max(map(len, consumer.chunks)) == CHUNK_SIZE


@pytest_twisted.ensureDeferred
async def test_ranges_are_byte_exact_across_chunk_boundaries(blobs: Any, tmp_path: Path) -> None:
    data = _data(3 * MiB + 100, seed=1)
    path, sha256 = _file(tmp_path, data)
    await blobs.put_file(KEY, path, sha256)
    size = len(data)
    ranges: list[tuple[int, int | None]] = [
        (0, 1), (0, CHUNK_SIZE), (CHUNK_SIZE, CHUNK_SIZE), (CHUNK_SIZE - 10, 20),
        (CHUNK_SIZE - 1, CHUNK_SIZE + 2), (1, 3 * MiB), (2 * CHUNK_SIZE + 5, None),
        (size - 1, None), (size - 3, 100), (5, 0), (size, None), (size + 10, 10), (3 * MiB, 100),
    ]
    rng = random.Random(2)
    ranges += [(rng.randrange(size), rng.randrange(2 * MiB)) for _ in range(8)]
    for offset, length in ranges:
        expected = data[offset:] if length is None else data[offset:offset + length]
        got = await _read(blobs, KEY, offset, length)
        assert len(got) == len(expected) and got == expected, (offset, length)


@pytest_twisted.ensureDeferred
async def test_negative_ranges_are_refused(blobs: Any, tmp_path: Path) -> None:
    path, sha256 = _file(tmp_path, b"abc")
    await blobs.put_file(KEY, path, sha256)
    await _raises(ValueError, blobs.read(KEY, Collector(), -1))
    await _raises(ValueError, blobs.read(KEY, Collector(), 0, -1))


@pytest_twisted.ensureDeferred
async def test_hash_mismatch_stores_nothing(blobs: Any, tmp_path: Path) -> None:
    data = _data(2 * MiB + 7, seed=3)
    path, _ = _file(tmp_path, data)
    wrong = hashlib.sha256(b"something else").hexdigest()
    error = await _raises(BlobHashMismatch, blobs.put_file(KEY, path, wrong))
    assert error.expected == wrong and error.actual == hashlib.sha256(data).hexdigest()
    assert await blobs.exists(KEY) is False
    assert await blobs.size(KEY) is None
    await _raises(BlobMissing, blobs.read(KEY, Collector()))
    assert await _leftovers(blobs) == []


@pytest_twisted.ensureDeferred
async def test_hash_mismatch_keeps_the_blob_stored_before(blobs: Any, tmp_path: Path) -> None:
    good, sha256 = _file(tmp_path, _data(MiB + 1, seed=4), "good")
    await blobs.put_file(KEY, good, sha256)
    before = await _leftovers(blobs)
    bad, _ = _file(tmp_path, _data(2 * MiB, seed=5), "bad")
    await _raises(BlobHashMismatch, blobs.put_file(KEY, bad, sha256))
    assert await blobs.size(KEY) == MiB + 1
    assert await _read(blobs, KEY) == good.read_bytes()
    assert await _leftovers(blobs) == before


@pytest_twisted.ensureDeferred
async def test_a_blob_is_invisible_until_its_put_completes(blobs: Any, tmp_path: Path) -> None:
    data = _data(32 * MiB, seed=14)
    path, sha256 = _file(tmp_path, data)
    putting = blobs.put_file(KEY, path, sha256)
    seen = []
    while not putting.called:
        seen.append(await blobs.size(KEY))
    assert await putting == len(data)
    assert None in seen and set(seen) <= {None, len(data)}
    assert await _read(blobs, KEY) == data


@pytest_twisted.ensureDeferred
async def test_size_exists_and_delete(blobs: Any, tmp_path: Path) -> None:
    other = "alice/dev/+f/abc/def0123456789/pkg-2.0.tar.gz"
    assert await blobs.exists(KEY) is False
    assert await blobs.size(KEY) is None
    await blobs.delete(KEY)  # absent is fine
    for key, seed in ((KEY, 6), (other, 7)):
        path, sha256 = _file(tmp_path, _data(MiB + seed, seed))
        await blobs.put_file(key, path, sha256)
    await blobs.delete(KEY)
    assert await blobs.exists(KEY) is False
    assert await blobs.size(KEY) is None
    consumer = Collector()
    await _raises(BlobMissing, blobs.read(KEY, consumer))
    assert consumer.registered == 0 and consumer.chunks == []
    await blobs.delete(KEY)
    assert await blobs.size(other) == MiB + 7
    assert await _read(blobs, other) == _data(MiB + 7, 7)
    await blobs.delete(other)
    assert await _leftovers(blobs) == []


@pytest_twisted.ensureDeferred
async def test_a_cancelled_query_finishes_quietly_and_frees_its_connection(
        blobs: Any, tmp_path: Path) -> None:
    """twisted.web cancels a handler when its client hangs up, often while a size or a
    chunk is being fetched: the cancel must not raise (txpostgres would, cancelling the
    running query) and every pooled connection must come back for the next request."""
    path, sha256 = _file(tmp_path, _data(MiB + 3, 3))
    await blobs.put_file(KEY, path, sha256)
    for _ in range(3):  # twice the pool's four connections at once, three times over
        pending = [blobs.size(KEY) for _ in range(8)]
        for d in pending:
            d.cancel()
        for d in pending:
            outcome = await _settle(d)
            assert outcome == MiB + 3 or isinstance(outcome, CancelledError)
    assert await blobs.size(KEY) == MiB + 3
    assert await _read(blobs, KEY) == _data(MiB + 3, 3)


async def _settle(d: Deferred[Any]) -> Any:
    try:
        return await d
    except CancelledError as e:
        return e


@pytest_twisted.ensureDeferred
async def test_directories_are_not_blobs(blobs: Any, tmp_path: Path) -> None:
    path, sha256 = _file(tmp_path, b"x")
    await blobs.put_file(KEY, path, sha256)
    prefix = KEY.rsplit("/", 1)[0]
    assert await blobs.exists(prefix) is False
    assert await blobs.size(prefix) is None
    await _raises(BlobMissing, blobs.read(prefix, Collector()))
    assert await blobs.exists(KEY + "/inside") is False


@pytest_twisted.ensureDeferred
async def test_putting_the_same_content_again_is_idempotent(blobs: Any, tmp_path: Path) -> None:
    data = _data(2 * MiB + 3, seed=8)
    path, sha256 = _file(tmp_path, data)
    assert await blobs.put_file(KEY, path, sha256) == len(data)
    stored = await _leftovers(blobs)
    assert await blobs.put_file(KEY, path, sha256) == len(data)
    assert await gatherResults([blobs.put_file(KEY, path, sha256) for _ in range(3)]) == [len(data)] * 3
    assert await _leftovers(blobs) == stored
    assert await _read(blobs, KEY) == data


def _invalid_keys(tmp_path: Path) -> list[str]:
    return [
        "", str(tmp_path / "outside" / "blob"), "../escape", "alice/../../escape", "alice/./dev",
        "alice//dev", "alice/dev/", "..", ".", f"alice/{TEMP_PREFIX}123", "alice\\dev", "alice\x00dev",
    ]


@pytest_twisted.ensureDeferred
async def test_invalid_keys_are_refused(blobs: Any, tmp_path: Path) -> None:
    path, sha256 = _file(tmp_path, b"payload")
    before = sorted(tmp_path.rglob("*"))
    for key in _invalid_keys(tmp_path):
        await _raises(BlobKeyInvalid, blobs.put_file(key, path, sha256))
        await _raises(BlobKeyInvalid, blobs.exists(key))
        await _raises(BlobKeyInvalid, blobs.size(key))
        consumer = Collector()
        await _raises(BlobKeyInvalid, blobs.read(key, consumer))
        assert consumer.registered == 0
        await _raises(BlobKeyInvalid, blobs.delete(key))
        if isinstance(blobs, FileBlobStore):
            with pytest.raises(BlobKeyInvalid):
                blobs.local_path(key)
    assert await _leftovers(blobs) == []
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere, inside or out


@pytest_twisted.ensureDeferred
async def test_local_path_is_the_file_on_the_filesystem_store_only(blobs: Any, tmp_path: Path) -> None:
    data = _data(1000, seed=9)
    path, sha256 = _file(tmp_path, data)
    await blobs.put_file(KEY, path, sha256)
    local = blobs.local_path(KEY)
    if isinstance(blobs, FileBlobStore):
        assert local == tmp_path / "serverdir" / "+files" / KEY
        assert local.read_bytes() == data
        assert local.stat().st_mode & 0o777 == 0o644  # readable by nginx
    else:
        assert local is None


@pytest_twisted.ensureDeferred
async def test_paused_consumer_gets_nothing_until_it_resumes(blobs: Any, tmp_path: Path) -> None:
    data = _data(4 * MiB + 1, seed=10)
    path, sha256 = _file(tmp_path, data)
    await blobs.put_file(KEY, path, sha256)
    consumer = Collector(pause_every_write=True)
    reading = blobs.read(KEY, consumer)
    reactor = _reactor()
    rounds = 0
    while True:
        await _until(lambda: consumer.paused or reading.called)
        if reading.called:
            break
        seen = len(consumer.chunks)
        await deferLater(reactor, 0.1)  # plenty of time for a producer that ignores pauses
        assert len(consumer.chunks) == seen and not reading.called
        consumer.resume()
        rounds += 1
    assert await reading == len(data)
    assert consumer.writes_while_paused == 0
    assert len(consumer.chunks) == 5 and rounds == 4  # one chunk at the start, one per resume
    assert consumer.data == data and consumer.unregistered == 1


@pytest_twisted.ensureDeferred
async def test_stop_producing_ends_the_read(blobs: Any, tmp_path: Path) -> None:
    data = _data(4 * MiB, seed=11)
    path, sha256 = _file(tmp_path, data)
    await blobs.put_file(KEY, path, sha256)
    consumer = Collector(stop_after=2)
    await _raises(BlobReadStopped, blobs.read(KEY, consumer))
    await deferLater(_reactor(), 0.1)
    assert len(consumer.chunks) == 2
    assert consumer.unregistered == 0  # the consumer is gone; nothing more is said to it


class _BlobResource(Resource):
    isLeaf = True

    def __init__(self, blobs: Any) -> None:
        super().__init__()
        self.blobs = blobs

    def render_GET(self, request: Request) -> Any:
        async def send() -> None:
            request.setHeader(b"content-length", b"%d" % await self.blobs.size(KEY))
            await self.blobs.read(KEY, request)
            request.finish()

        Deferred.fromCoroutine(send())
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_a_twisted_web_request_is_a_consumer(blobs: Any, tmp_path: Path) -> None:
    data = _data(5 * MiB + 5, seed=12)
    path, sha256 = _file(tmp_path, data)
    await blobs.put_file(KEY, path, sha256)
    reactor = _reactor()
    port = reactor.listenTCP(0, Site(_BlobResource(blobs)), interface="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/blob".encode()
        response = await HTTPClient(Agent(reactor)).get(url)
        assert response.code == 200 and response.length == len(data)
        assert await treq.content(response) == data
    finally:
        await port.stopListening()


def _write_big_file(path: Path, size: int) -> str:
    rng = random.Random(13)
    hasher = hashlib.sha256()
    with open(path, "wb") as f:
        for start in range(0, size, MiB):
            chunk = rng.randbytes(min(MiB, size - start))
            hasher.update(chunk)
            f.write(chunk)
    return hasher.hexdigest()


@implementer(IConsumer)
class _Hasher:
    """Keeps only a running hash and count, like a socket that sends what it gets."""

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.count = 0
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.hasher.update(data)
        self.count += len(data)


@pytest_twisted.ensureDeferred
async def test_a_200_mb_blob_goes_in_and_out_in_bounded_memory(blobs: Any, tmp_path: Path) -> None:
    size = 200 * 1000 * 1000
    path = tmp_path / "big.tmp"
    sha256 = _write_big_file(path, size)
    limit = 32 * MiB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        started = time.perf_counter()
        assert await blobs.put_file(KEY, path, sha256) == size
        put_seconds = time.perf_counter() - started
        put_peak = tracemalloc.get_traced_memory()[1]

        os.unlink(path)  # what is read back comes from the store
        consumer = _Hasher()
        tracemalloc.reset_peak()
        started = time.perf_counter()
        assert await blobs.read(KEY, consumer) == size
        read_seconds = time.perf_counter() - started
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"\n{type(blobs).__name__}: put {size / MiB:.0f} MiB in {put_seconds:.2f}s "
          f"({size / MiB / put_seconds:.0f} MiB/s), peak {put_peak / MiB:.1f} MiB; "
          f"read in {read_seconds:.2f}s ({size / MiB / read_seconds:.0f} MiB/s), "
          f"peak {read_peak / MiB:.1f} MiB")
    assert consumer.count == size and consumer.hasher.hexdigest() == sha256
    assert put_peak < limit, f"put peaked at {put_peak / MiB:.1f} MiB"
    assert read_peak < limit, f"read peaked at {read_peak / MiB:.1f} MiB"


@pytest_twisted.ensureDeferred
async def test_spooled_files_move_in_together(blobs: Any, tmp_path: Path) -> None:
    body, body_sha = _file(tmp_path, _data(5000, seed=3), "spooled-body")
    meta, meta_sha = _file(tmp_path, b"Metadata-Version: 2.1\n", "spooled-meta")
    os.chmod(body, 0o600)  # as mkstemp leaves it
    await blobs.move_in([(KEY, body, body_sha), (KEY + ".metadata", meta, meta_sha)])
    assert await _read(blobs, KEY) == _data(5000, seed=3)
    assert await _read(blobs, KEY + ".metadata") == b"Metadata-Version: 2.1\n"
    if isinstance(blobs, FileBlobStore):  # moved, not copied; readable by nginx
        assert not body.exists() and not meta.exists()
        assert blobs.local_path(KEY).stat().st_mode & 0o777 == 0o644
        assert not [p for p in blobs.root.rglob(TEMP_PREFIX + "*")]


@pytest_twisted.ensureDeferred
async def test_bodies_given_as_bytes_are_written_to_their_key_and_replace_one_stored(
        blobs: Any, tmp_path: Path) -> None:
    """An upload's core metadata comes as bytes: written straight under its key with the
    file moved in beside it; a key already stored gets the new bytes (whole: replaced,
    never written over in place)."""
    import hashlib

    body, body_sha = _file(tmp_path, _data(3000, seed=4), "spooled-body")
    first, second = b"Metadata-Version: 2.1\nName: a\n", b"Metadata-Version: 2.1\nName: b\n"
    await blobs.move_in([(KEY, body, body_sha),
                         (KEY + ".metadata", first, hashlib.sha256(first).hexdigest())])
    assert await _read(blobs, KEY) == _data(3000, seed=4)
    assert await _read(blobs, KEY + ".metadata") == first
    await blobs.move_in([(KEY + ".metadata", second, hashlib.sha256(second).hexdigest())])
    assert await _read(blobs, KEY + ".metadata") == second
    if isinstance(blobs, FileBlobStore):
        path = blobs.local_path(KEY + ".metadata")
        assert path.stat().st_mode & 0o777 == 0o644
        assert not [p for p in blobs.root.rglob(TEMP_PREFIX + "*")]


@pytest_twisted.ensureDeferred
async def test_move_in_refuses_invalid_keys_and_moves_nothing(blobs: Any, tmp_path: Path) -> None:
    body, sha = _file(tmp_path, b"x", "spooled")
    with pytest.raises(BlobKeyInvalid):
        await blobs.move_in([(KEY, body, sha), ("../escape", body, sha)])
    assert body.exists() and await blobs.exists(KEY) is False


def test_a_move_across_filesystems_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from devpi_twisted.storage import filesync as module

    def no_rename(source: Any, target: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(module.os, "rename", no_rename)
    monkeypatch.setattr(module.os, "link", no_rename)  # (neither crosses file systems)
    body, sha = _file(tmp_path, b"across", "spooled")
    target = tmp_path / "files" / "a" / "b"
    module.move_all_sync([(target, "a/b", body, sha)])
    assert target.read_bytes() == b"across" and body.exists()  # the caller removes it


@pytest_twisted.ensureDeferred
async def test_open_local_lends_a_shared_descriptor_on_the_file_store(blobs: Any, tmp_path: Path) -> None:
    path, sha256 = _file(tmp_path, b"descriptor")
    await blobs.put_file(KEY, path, sha256)
    first = await blobs.open_local(KEY)
    if not isinstance(blobs, FileBlobStore):
        assert first is None
        return
    second = await blobs.open_local(KEY)
    assert first.fd == second.fd and first.size == 10
    assert os.pread(first.fd, 10, 0) == b"descriptor"
    first.close()
    first.close()  # closing twice is harmless
    await blobs.delete(KEY)  # dropped from the cache; still open for the read using it
    assert os.pread(second.fd, 10, 0) == b"descriptor"
    fd = second.fd
    second.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed once unused and uncached
    with pytest.raises(BlobMissing):
        await blobs.open_local(KEY)


@pytest_twisted.ensureDeferred
async def test_link_file_hard_links_after_checking_the_hash(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "+files", _reactor())
    source, sha = _file(tmp_path, _data(3000))
    assert await store.link_file(KEY, source, sha) == 3000
    assert store.local_path(KEY).stat().st_ino == source.stat().st_ino
    other, _ = _file(tmp_path, b"other", "other.tmp")
    with pytest.raises(BlobHashMismatch):
        await store.link_file(KEY, other, sha)
    assert store.local_path(KEY).read_bytes() == source.read_bytes()
    assert not [p for p in store.local_path(KEY).parent.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest_twisted.ensureDeferred
async def test_an_unsynced_store_still_checks_and_renames(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "+files", _reactor()).unsynced()
    source, sha = _file(tmp_path, _data(5000))
    with pytest.raises(BlobHashMismatch):
        await store.put_file(KEY, source, "0" * 64)
    assert not store.local_path(KEY).exists()
    assert await store.put_file(KEY, source, sha) == 5000
    assert store.local_path(KEY).read_bytes() == source.read_bytes()


@pytest_twisted.ensureDeferred
async def test_usage_lists_the_blobs_under_a_prefix_with_size_and_last_use(
        blobs: Any, tmp_path: Path) -> None:
    before = time.time() - 5
    keys = {"root/pypi/+f/aaa/bbb/a-1.0.whl": 10, "root/pypi/+f/ccc/ddd/b-1.0.whl": 20,
            "root/pypi2/+f/eee/fff/c-1.0.whl": 30, "alice/dev/+f/111/222/d-1.0.whl": 40}
    for n, (key, size) in enumerate(keys.items()):
        path, digest = _file(tmp_path, _data(size, n))
        await blobs.put_file(key, path, digest)
    found = await blobs.usage("root/pypi/")
    assert {(u.key, u.size) for u in found} == {("root/pypi/+f/aaa/bbb/a-1.0.whl", 10),
                                                ("root/pypi/+f/ccc/ddd/b-1.0.whl", 20)}
    assert all(before <= u.accessed <= time.time() + 5 for u in found)
    assert len(await blobs.usage("")) == 4
    assert await blobs.usage("nobody/none/") == []


@pytest_twisted.ensureDeferred
async def test_touch_records_a_download_at_most_once_a_day(blobs: Any, tmp_path: Path) -> None:
    path, digest = _file(tmp_path, b"touched")
    await blobs.put_file(KEY, path, digest)
    # as if downloaded at noon three days after it was stored (noon: ``later + 60`` is
    # the same day whatever the time the test runs at)
    later = (time.time() // 86400 + 3) * 86400 + 43200
    first = blobs.touch(KEY, later)
    assert first is not None
    await first
    (usage,) = await blobs.usage("alice/dev/")
    assert abs(usage.accessed - later) < 1
    assert blobs.touch(KEY, later + 60) is None  # the same day: nothing written
    assert blobs.touch("alice/dev/+f/no/such/file.whl", later) is not None  # absent: harmless
    await blobs.touch("alice/dev/+f/no/such/file.whl", later + 2 * 86400)
    assert await blobs.read(KEY, Collector()) == len(b"touched")  # the body is untouched


def test_a_move_links_a_new_key_and_renames_over_a_stored_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new key is hard-linked in (a link never replaces, so of two puts racing only one
    gets there unsynced), then fsynced; a key already stored gets a body fsynced first,
    then renamed over it: what shows under a stored key is always whole."""
    from devpi_twisted.storage import filesync as module

    calls: list[str] = []
    for name in ("link", "rename", "fsync"):
        real = getattr(module.os, name)
        monkeypatch.setattr(module.os, name, lambda *a, _n=name, _r=real: (calls.append(_n), _r(*a))[1])
    target = tmp_path / "files" / "a" / "b"
    body, sha = _file(tmp_path, b"first", "spooled")
    module.move_all_sync([(target, "a/b", body, sha)])
    assert target.read_bytes() == b"first" and not body.exists()
    assert calls[:2] == ["link", "fsync"] and "rename" not in calls, calls
    calls.clear()
    body, sha = _file(tmp_path, b"again", "spooled")
    module.move_all_sync([(target, "a/b", body, sha)])
    assert target.read_bytes() == b"again" and not body.exists()
    assert calls[:3] == ["link", "fsync", "rename"], calls  # refused, fsynced, renamed
