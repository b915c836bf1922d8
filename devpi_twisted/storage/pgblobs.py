"""The PostgreSQL blob store: bodies as 1 MiB bytea chunks, for several hosts sharing
one database (tables in migrations/0002_blobs.postgres.sql).

A put reads the local file chunk by chunk on a thread (hashing as it goes) and
inserts each chunk, then the meta row (key, size, sha256), all in one
transaction: a wrong hash rolls everything back, and no reader ever sees part
of a body. A body that fits in one chunk is read and hashed whole before the
transaction and its statements go with the COMMIT (pgpool.Pipeline), so a
small file, or a batch of them (``put_files``, import), costs a few round trips.
A read fetches one chunk (or the part of it a range needs, with substring()) per
short transaction, so a slow client holds no connection while it is paused; each
fetch checks the meta row still names the same sha256.
Downloads go out by sendfile from the host's copy of a body (bodycache.py) once
there is one; the meta row is read first (unless the copy is already open for the
sha256 the file's record names), so the database decides what exists.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from psycopg2.extensions import AsIs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IReactorThreads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from devpi_twisted.storage.blobs import (
    CHUNK_SIZE, TOUCH_INTERVAL, BlobHashMismatch, BlobMissing, BlobStore, BlobUsage, ChunkPump,
    DailyTouches, LocalBlob, byte_range, check_key, settled,
)
from devpi_twisted.storage.bodycache import BodyCache, Fetch
from devpi_twisted.storage.driver import DeferringCursor
from devpi_twisted.storage.types import Offload, ThreadOffload

_log = Logger()
T = TypeVar("T")

PUT_BATCH_BYTES = 4 << 20  # bodies (up to a chunk of each) stored by one put_files transaction
BLOB_LOCK_CLASS = 0x626C6F62  # with hashtext(key): serialises puts of one key ("blob")

LOCK_KEY = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
DELETE_BLOB = "DELETE FROM blobs WHERE key = %s"  # its chunks go by ON DELETE CASCADE
INSERT_CHUNK = "INSERT INTO blob_chunks (key, seq, data) VALUES (%s, %s, decode(%s, 'hex'))"
INSERT_BLOB = "INSERT INTO blobs (key, size, sha256, chunk_size) VALUES (%s, %s, %s, %s)"
SELECT_BLOB = "SELECT size, sha256, chunk_size FROM blobs WHERE key = %s"
SELECT_SIZE = "SELECT size FROM blobs WHERE key = %s"
TOUCH_BLOB = "UPDATE blobs SET accessed_at = %s WHERE key = %s AND accessed_at < %s"
SELECT_USAGE = ("SELECT key, size, accessed_at FROM blobs"
                " WHERE key >= %s AND key < %s ORDER BY key")
SELECT_PART = (
    "SELECT substring(c.data FROM %s FOR %s) FROM blob_chunks c JOIN blobs b ON b.key = c.key"
    " WHERE c.key = %s AND c.seq = %s AND b.sha256 = %s"
)


class Interactions(Protocol):
    """What the store needs of pgpool.Pool: run ``fn(cursor)`` in a transaction on a
    pooled connection, or one statement as a transaction of its own (broken connections
    become StorageUnavailable)."""

    def interaction(self, fn: Callable[[DeferringCursor], Awaitable[T]]) -> Deferred[T]: ...

    def statement(self, sql: str, params: Sequence[Any]) -> Deferred[list[Any]]: ...


def _read_chunk(source: IO[bytes], hasher: Any, count: int) -> tuple[int, AsIs]:
    """The next bytes of ``source`` (hashed) as a hex SQL literal for ``decode(..., 'hex')``:
    made here on a thread, so the reactor only pastes it into the query. The literal holds
    nothing but [0-9a-f], so it is safe whatever the server's string settings."""
    data = source.read(count)
    hasher.update(data)
    return len(data), AsIs(f"'{data.hex()}'")


Head = tuple[int, str, AsIs]  # a body that fits in one chunk: (size, sha256, hex literal)


def _head(data: bytes) -> Head:
    return len(data), hashlib.sha256(data).hexdigest(), AsIs(f"'{data.hex()}'")


def _open_all(paths: Sequence[Path | bytes], chunk_size: int, opened: list[IO[bytes]]
              ) -> list[Head | None]:
    """Open each file (bytes: a file of them in memory) for reading, appending to
    ``opened`` (the caller closes them, also those opened before one failed). A body
    that fits in one chunk is read and hashed here, whole (its Head); a bigger one
    (None) is streamed chunk by chunk in the transaction."""
    heads: list[Head | None] = []
    for path in paths:
        if isinstance(path, bytes):
            opened.append(io.BytesIO(path))
            heads.append(_head(path) if len(path) <= chunk_size else None)
            continue
        source = open(path, "rb")
        opened.append(source)
        if os.fstat(source.fileno()).st_size > chunk_size:
            heads.append(None)
            continue
        data = source.read(chunk_size + 1)
        if len(data) > chunk_size:  # it grew since the fstat
            source.seek(0)
            heads.append(None)
        else:
            heads.append(_head(data))
    return heads


def _sizes(paths: Sequence[Path]) -> list[int]:
    return [os.stat(path).st_size for path in paths]


def _first(rows: list[Any]) -> Any:
    return rows[0] if rows else None


class PgBlobStore:
    """Blobs in the database of a PostgresStorage: ``PgBlobStore(storage.pool, reactor)``;
    with ``copies``, downloads are served from the host's copies of the bodies."""

    def __init__(self, pool: Interactions, reactor: IReactorThreads,
                 threadpool: ThreadPool | None = None, chunk_size: int = CHUNK_SIZE,
                 copies: BodyCache | None = None) -> None:
        self._pool = pool
        self._copies = copies
        self._in_thread: Offload = ThreadOffload(reactor, threadpool)
        self._chunk_size = chunk_size
        self._touches = DailyTouches()

    def _read_next(self, source: IO[bytes], hasher: Any) -> Deferred[tuple[int, AsIs]]:
        return self._in_thread(_read_chunk, source, hasher, self._chunk_size)

    def local_path(self, key: str) -> Path | None:
        return None

    # -- put -----------------------------------------------------------------------

    def put_file(self, key: str, path: Path, sha256: str) -> Deferred[int]:
        return Deferred.fromCoroutine(self._put_all([(key, Path(path), sha256)])).addCallback(
            lambda sizes: sizes[0])

    def move_in(self, items: Sequence[tuple[str, Path | bytes, str]]) -> Deferred[None]:
        return Deferred.fromCoroutine(self._put_all(list(items))).addCallback(lambda _: None)

    def move_in_blocking(self, items: Sequence[tuple[str, Path | bytes, str]]) -> None:
        return None  # (its bodies go through the pooled connections, on the reactor)

    def put_files(self, items: Sequence[tuple[str, Path, str]]) -> Deferred[None]:
        """``put_file`` of every ``(key, path, sha256)`` for a bulk load (import): in
        transactions of up to PUT_BATCH_BYTES of bodies, each a few round trips (the
        bodies that fit in a chunk go with its COMMIT). A transaction is stored whole or
        not at all; when one fails, those before it stay stored."""
        return Deferred.fromCoroutine(self._put_files(list(items)))

    async def _put_files(self, items: list[tuple[str, Path, str]]) -> None:
        for key, _, _ in items:
            check_key(key)
        sizes = await self._in_thread(_sizes, [Path(path) for _, path, _ in items])
        group: list[tuple[str, Path | bytes, str]] = []
        held = 0
        for item, size in zip(items, sizes):
            cost = min(size, self._chunk_size)
            if group and held + cost > PUT_BATCH_BYTES:
                await self._put_all(group)
                group, held = [], 0
            group.append(item)
            held += cost
        if group:
            await self._put_all(group)

    async def _put_all(self, items: Sequence[tuple[str, Path | bytes, str]]) -> list[int]:
        """Store every item in one transaction (one commit for a file and its metadata),
        all refused before any is stored; keys are locked in sorted order, so concurrent
        puts of overlapping keys never deadlock. The bodies that fit in a chunk are read
        and hashed in one trip to the thread pool and sent with the COMMIT. Returns the
        sizes, in order."""
        for key, _, _ in items:
            check_key(key)
        sources: list[IO[bytes]] = []
        runs = 0
        try:
            heads = await self._in_thread(_open_all, [path if isinstance(path, bytes) else Path(path)
                                                      for _, path, _ in items],
                                          self._chunk_size, sources)
            for (key, _, sha256), head in zip(items, heads):
                if head is not None and head[1] != sha256.lower():
                    raise BlobHashMismatch(key, sha256.lower(), head[1])

            async def txn(cursor: DeferringCursor) -> list[int]:
                nonlocal runs
                runs += 1
                for key in sorted({key for key, _, _ in items}):
                    cursor.defer(LOCK_KEY, (BLOB_LOCK_CLASS, key))
                sizes = []
                for (key, _, sha256), source, head in zip(items, sources, heads):
                    if head is None:
                        sizes.append(await self._store(cursor, key, source, sha256.lower(),
                                                       again=runs > 1))
                    else:
                        sizes.append(self._store_head(cursor, key, head))
                return sizes

            return await self._pool.interaction(txn)
        finally:
            for source in sources:
                source.close()

    def _store_head(self, cursor: DeferringCursor, key: str, head: Head) -> int:
        """A body read whole (its hash checked), held back for the next round trip."""
        size, sha256, literal = head
        cursor.defer(DELETE_BLOB, (key,))
        if size:
            cursor.defer(INSERT_CHUNK, (key, 0, literal))
        cursor.defer(INSERT_BLOB, (key, size, sha256, self._chunk_size))
        return size

    async def _store(self, cursor: DeferringCursor, key: str, source: IO[bytes], sha256: str,
                     again: bool) -> int:
        """The chunks and meta row of one blob, in the caller's transaction (its key locked);
        ``again``: the transaction runs once more, the file is read from its start."""
        if again:
            await self._in_thread(source.seek, 0)
        cursor.defer(DELETE_BLOB, (key,))
        hasher = hashlib.sha256()
        size = seq = 0
        # the next chunk is read and hashed on a thread while this one is inserted
        reading: Deferred[tuple[int, AsIs]] | None = self._read_next(source, hasher)
        try:
            while reading is not None:
                count, literal = await reading
                reading = None
                if not count:
                    break
                if count == self._chunk_size:  # (a shorter read of a file is its end)
                    reading = self._read_next(source, hasher)
                await cursor.execute(INSERT_CHUNK, (key, seq, literal))
                del literal
                size += count
                seq += 1
        finally:
            if reading is not None:  # an insert failed: let the read finish before closing
                await settled(reading)
        actual = hasher.hexdigest()
        if actual != sha256:
            raise BlobHashMismatch(key, sha256, actual)  # rolls the chunks back
        cursor.defer(INSERT_BLOB, (key, size, sha256, self._chunk_size))
        return size

    # -- queries -----------------------------------------------------------------------

    def size(self, key: str) -> Deferred[int | None]:
        return Deferred.fromCoroutine(self._size(key))

    async def _size(self, key: str) -> int | None:
        check_key(key)
        row = _first(await self._pool.statement(SELECT_SIZE, (key,)))
        return None if row is None else int(row[0])

    def exists(self, key: str) -> Deferred[bool]:
        return self.size(key).addCallback(lambda size: size is not None)

    # -- read ----------------------------------------------------------------------------

    def read(self, key: str, consumer: IConsumer, offset: int = 0,
             length: int | None = None) -> Deferred[int]:
        return Deferred.fromCoroutine(self._read(key, consumer, offset, length))

    async def _meta(self, key: str) -> tuple[int, str, int]:
        """(size, sha256, chunk_size) of the blob; raises BlobMissing."""
        check_key(key)
        row = _first(await self._pool.statement(SELECT_BLOB, (key,)))
        if row is None:
            raise BlobMissing(f"no blob {key}")
        return int(row[0]), str(row[1]), int(row[2])

    def _fetcher(self, key: str, sha256: str, chunk_size: int) -> Fetch:
        """``fetch(position, count)``: bytes of the blob from one chunk, each in a short
        transaction that checks the key still holds ``sha256``."""
        async def fetch_part(position: int, count: int) -> bytes:
            seq, within = divmod(position, chunk_size)
            params = (within + 1, count, key, seq, sha256)
            part = _first(await self._pool.statement(SELECT_PART, params))
            if part is None:
                raise BlobMissing(f"blob {key} was deleted or replaced while being read")
            return bytes(part[0])

        return lambda position, count: Deferred.fromCoroutine(fetch_part(position, count))

    async def _read(self, key: str, consumer: IConsumer, offset: int, length: int | None) -> int:
        size, sha256, chunk_size = await self._meta(key)
        start, end = byte_range(size, offset, length)
        fetch = self._fetcher(key, sha256, chunk_size)
        return await ChunkPump(consumer, fetch, start, end, chunk_size).run()

    def open_local(self, key: str, sha256: str | None = None) -> Deferred[LocalBlob | None]:
        """The host's copy of the body (see bodycache.py), once there is one: the first
        download of a body streams it from the database while a copy is made. With the
        ``sha256`` of the file's record, a copy this process holds open is those very
        bytes and is lent without a query (the record, not the body, says a file exists:
        deleting a file or cleaning up a mirror's changes the record first)."""
        if self._copies is None:
            return succeed(None)
        if sha256:
            local = self._copies.lent(sha256.lower())
            if local is not None:
                return succeed(local)
        return Deferred.fromCoroutine(self._open_local(key, self._copies))

    def copy_stats(self) -> dict[str, int]:
        if self._copies is None:
            return {}
        return {**self._copies.stats, "bytes": self._copies.size}

    async def _open_local(self, key: str, copies: BodyCache) -> LocalBlob | None:
        size, sha256, chunk_size = await self._meta(key)
        local = await copies.open(sha256, size)
        if local is None:  # copy() leaves out what the cache does not want
            copies.copy(sha256, size, self._fetcher(key, sha256, chunk_size)).addErrback(
                lambda f: _log.failure("copying the body of {key} from PostgreSQL", f, key=key))
        return local

    # -- access times --------------------------------------------------------------------

    def touch(self, key: str, now: float) -> Deferred[None] | None:
        if not self._touches.first_today(key, now):
            return None
        return Deferred.fromCoroutine(self._touch((now, key, now - TOUCH_INTERVAL)))

    async def _touch(self, params: tuple[float, str, float]) -> None:
        await self._pool.statement(TOUCH_BLOB, params)

    def usage(self, prefix: str) -> Deferred[list[BlobUsage]]:
        return Deferred.fromCoroutine(self._usage(prefix))

    async def _usage(self, prefix: str) -> list[BlobUsage]:
        async def query(cursor: DeferringCursor) -> list[Any]:
            # keys from prefix up to (not including) prefix with its last character raised
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"
            await cursor.execute(SELECT_USAGE, (prefix, upper))
            return list(cursor.fetchall())

        rows = await self._pool.interaction(query)
        return [BlobUsage(str(k), int(s), float(a)) for k, s, a in rows]

    # -- delete ----------------------------------------------------------------------------

    def delete(self, key: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._delete(key))

    async def _delete(self, key: str) -> None:
        check_key(key)

        async def txn(cursor: DeferringCursor) -> None:
            await cursor.execute(LOCK_KEY, (BLOB_LOCK_CLASS, key))
            await cursor.execute(DELETE_BLOB, (key,))

        await self._pool.interaction(txn)


def _conforms(store: PgBlobStore) -> BlobStore:
    """For mypy: a PgBlobStore is a BlobStore."""
    return store
