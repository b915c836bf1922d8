"""Blob stores: the bodies of release files, docs and mirrored files, by key.

A key is a relative path such as ``alice/dev/+f/abc/def0123456789/pkg-1.0.tar.gz``.
A body is stored only after its sha256 was checked while copying, and it becomes
visible under its key all at once (invariant 2): the filesystem store renames a
fsynced temporary file into place, the PostgreSQL store (pgblobs.py) commits its
chunks and their meta row in one transaction. Nothing blocks the reactor
(invariant 3): file I/O and hashing run on a thread pool, bodies go out to an
IConsumer (a twisted.web Request) through a push producer, one chunk at a time,
so neither store ever holds a whole body in memory.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from zope.interface import implementer

from devpi_twisted.storage.interface import StorageError

CHUNK_SIZE = 1 << 20  # bytes per read, write and (PostgreSQL) stored chunk
OPEN_FILES = 128  # blob files kept open for the next download of the same file
TEMP_PREFIX = ".tmp-blob-"  # temporary files of unfinished puts; no key segment may start so
TOUCH_INTERVAL = 86400  # a blob's access time is written at most once per this many seconds


class BlobError(StorageError):
    """Base of the blob stores' errors."""


class BlobKeyInvalid(BlobError, ValueError):
    """The key is not a plain relative path (absolute, empty or '.'/'..' segments, NUL...)."""


class BlobMissing(BlobError):
    """No blob is stored under the key (or it went away while being read)."""


class BlobHashMismatch(BlobError):
    """The bytes given to ``put_file`` do not have the sha256 the caller expected;
    nothing was stored."""

    def __init__(self, key: str, expected: str, actual: str) -> None:
        super().__init__(f"{key}: sha256 is {actual}, expected {expected}")
        self.key = key
        self.expected = expected
        self.actual = actual


class BlobReadStopped(BlobError):
    """The consumer stopped the transfer (e.g. the client went away)."""


class BlobStore(Protocol):
    """Where file bodies live. Every method but ``local_path`` returns a Deferred."""

    def put_file(self, key: str, path: Path, sha256: str) -> Deferred[int]:
        """Store the bytes of the local file ``path`` under ``key``; returns the size.

        The hash is checked while copying; on a mismatch raises BlobHashMismatch and
        what was stored under ``key`` before (if anything) stays as it was. The new
        body becomes visible whole or not at all. Putting the same key again is fine.
        Raises BlobKeyInvalid. The caller still owns (and removes) ``path``."""

    def put_files(self, items: Sequence[tuple[str, Path, str]]) -> Deferred[None]:
        """``put_file`` of every ``(key, path, sha256)``, for a bulk load of many small
        files (import): a store groups them into few thread trips or transactions. On a
        failure (BlobHashMismatch, a missing file) the puts of the group that failed are
        not stored; earlier groups may be."""

    def move_in(self, items: Sequence[tuple[str, Path | bytes, str]]) -> Deferred[None]:
        """Store files this server spooled itself, hashing them as it wrote them, each
        ``(key, path, sha256)``: a file store moves them into place (no second copy, no
        second hash), any other copies them as ``put_file`` does; a moved source is gone
        and the caller removes whatever is left. A source may also be the bytes themselves
        (small bodies this server made and hashed, as an upload's core metadata): written
        straight to their key. All are durable when this fires."""

    def move_in_blocking(self, items: Sequence[tuple[str, Path | bytes, str]]
                         ) -> Callable[[], Callable[[], None]] | None:
        """``move_in`` as blocking work for a thread that is not the reactor's, to run
        when the caller decides (inside a database write: ``Storage.update_release``'s
        ``before_commit``): it puts the bodies in place and hands back what makes them
        durable (the fsyncs), all done when that returns. None where this store cannot
        (its bodies go through the reactor: then ``move_in``). Raises BlobKeyInvalid at
        once."""

    def exists(self, key: str) -> Deferred[bool]: ...

    def size(self, key: str) -> Deferred[int | None]:
        """The size in bytes, or None if nothing is stored under ``key``."""

    def read(self, key: str, consumer: IConsumer, offset: int = 0,
             length: int | None = None) -> Deferred[int]:
        """Write bytes ``[offset, offset + length)`` of the blob (clipped at its end;
        ``length`` None: to the end) to ``consumer`` through a streaming producer that
        honours pauseProducing; returns the number of bytes written.

        Raises BlobMissing before registering anything if the key is absent (or
        later, if the blob is deleted while being read), BlobReadStopped if the
        consumer calls stopProducing. The producer is unregistered when the read
        ends, except after stopProducing (the consumer is gone)."""

    def local_path(self, key: str) -> Path | None:
        """A local file holding the blob, for sendfile / X-Accel-Redirect; None if the
        store keeps no local files. Does not check that the blob exists."""

    def open_local(self, key: str, sha256: str | None = None) -> Deferred[LocalBlob | None]:
        """The blob's local file opened for reading (for sendfile); None if the store
        keeps no local files. Raises BlobMissing. The caller closes it. ``sha256``, the
        hash its file record names, lets a store of copies skip asking what the key holds."""

    def copy_stats(self) -> dict[str, int]:
        """Counters of the host's copies of the bodies (PostgreSQL store with copies: hits,
        misses, copies_made, copy_errors, bytes); empty where there are none."""

    def touch(self, key: str, now: float) -> Deferred[None] | None:
        """Record a download of ``key`` at ``now`` (for cleanup): stored at most once a day
        per key and process; None when nothing had to be written."""

    def usage(self, prefix: str) -> Deferred[list[BlobUsage]]:
        """Every blob whose key starts with ``prefix``: size and last download (or store)."""

    def delete(self, key: str) -> Deferred[None]:
        """Remove the blob; an absent key is fine."""


@attrs.frozen
class BlobUsage:
    key: str
    size: int
    accessed: float  # seconds since the epoch: last download, or when stored


class DailyTouches:
    """Which keys had their access time written today by this process: a download
    costs a dict lookup, and one write per key and day."""

    def __init__(self) -> None:
        self._day = -1
        self._done: set[str] = set()

    def first_today(self, key: str, now: float) -> bool:
        day = int(now // TOUCH_INTERVAL)
        if day != self._day:
            self._day = day
            self._done.clear()
        if key in self._done:
            return False
        self._done.add(key)
        return True


@attrs.define(eq=False)
class _Descriptor:
    """An open blob file shared by the reads using it; closed when no read uses it
    and it is no longer cached."""

    fd: int
    size: int
    users: int = 0
    cached: bool = True

    def release(self) -> None:
        self.users -= 1
        self._close_if_unused()

    def uncache(self) -> None:
        self.cached = False
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self.users == 0 and not self.cached and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@attrs.define(eq=False)
class LocalBlob:
    """A read-only descriptor of a blob's file and its size, for one read; ``close``
    once done (other reads may share the descriptor)."""

    _descriptor: _Descriptor
    _closed: bool = False

    @property
    def fd(self) -> int:
        return self._descriptor.fd

    @property
    def size(self) -> int:
        return self._descriptor.size

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._descriptor.release()


class OpenFiles:
    """Descriptors of the blobs read most recently, kept open (least recently used
    dropped first), so that serving a blob again needs no thread to open it. A key's
    bytes never change (the key holds their hash); deleting a blob drops its entry."""

    def __init__(self, limit: int = OPEN_FILES) -> None:
        self._limit = limit
        self._open: OrderedDict[str, _Descriptor] = OrderedDict()

    def get(self, key: str) -> LocalBlob | None:
        descriptor = self._open.get(key)
        if descriptor is None:
            return None
        self._open.move_to_end(key)
        return self._lend(descriptor)

    def add(self, key: str, fd: int, size: int) -> LocalBlob:
        descriptor = _Descriptor(fd, size)
        old = self._open.pop(key, None)
        if old is not None:
            old.uncache()
        self._open[key] = descriptor
        while len(self._open) > self._limit:
            self._open.popitem(last=False)[1].uncache()
        return self._lend(descriptor)

    def drop(self, key: str) -> None:
        descriptor = self._open.pop(key, None)
        if descriptor is not None:
            descriptor.uncache()

    @staticmethod
    def _lend(descriptor: _Descriptor) -> LocalBlob:
        descriptor.users += 1
        return LocalBlob(descriptor)


def check_key(key: str) -> str:
    """``key`` if it is a plain relative path; raises BlobKeyInvalid otherwise."""
    if not isinstance(key, str) or not key:
        raise BlobKeyInvalid(f"blob key {key!r} is empty")
    if "\x00" in key or "\\" in key:
        raise BlobKeyInvalid(f"blob key {key!r} holds NUL or a backslash")
    if key.startswith("/"):
        raise BlobKeyInvalid(f"blob key {key!r} is absolute")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise BlobKeyInvalid(f"blob key {key!r} has an empty, '.' or '..' segment")
        if segment.startswith(TEMP_PREFIX):
            raise BlobKeyInvalid(f"blob key {key!r} has a segment starting with {TEMP_PREFIX}")
    return key


def byte_range(size: int, offset: int, length: int | None) -> tuple[int, int]:
    """``[start, end)`` of a read, clipped at ``size``; raises ValueError if negative."""
    if offset < 0 or (length is not None and length < 0):
        raise ValueError(f"negative offset or length ({offset}, {length})")
    start = min(offset, size)
    end = size if length is None else min(size, offset + length)
    return start, end


@implementer(IPushProducer)
class ChunkPump:
    """Moves ``[start, end)`` to a consumer chunk by chunk as a streaming producer.

    ``fetch(position, count)`` returns the next ``count`` bytes (at most one chunk,
    never crossing a multiple of ``chunk_size``). One chunk is read ahead while the
    previous one is written; while the consumer has paused us nothing is written and
    nothing more is fetched, so at most one chunk waits in memory.
    """

    def __init__(self, consumer: IConsumer, fetch: Callable[[int, int], Deferred[bytes]],
                 start: int, end: int, chunk_size: int = CHUNK_SIZE) -> None:
        self._consumer = consumer
        self._fetch = fetch
        self._start = start
        self._end = end
        self._chunk_size = chunk_size
        self._paused: Deferred[None] | None = None
        self._stopped = False

    # -- IPushProducer -------------------------------------------------------------

    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:
        self._stopped = True
        self.resumeProducing()

    # -- the transfer ------------------------------------------------------------------

    async def _wait_until_running(self) -> None:
        while self._paused is not None and not self._stopped:
            await self._paused
        if self._stopped:
            raise BlobReadStopped("the consumer stopped the transfer")

    def _start_fetch(self, position: int) -> Deferred[bytes] | None:
        if position >= self._end:
            return None
        boundary = (position // self._chunk_size + 1) * self._chunk_size
        return self._fetch(position, min(boundary, self._end) - position)

    async def run(self) -> int:
        """Register, send everything, unregister; returns the bytes written. No fetch
        is still running when this returns or raises."""
        self._consumer.registerProducer(self, True)
        position = self._start
        fetching = self._start_fetch(position)
        try:
            while fetching is not None:
                data = await fetching
                fetching = None
                if not data:
                    raise BlobMissing(f"blob ended at byte {position}, before {self._end}")
                fetching = self._start_fetch(position + len(data))
                await self._wait_until_running()
                self._consumer.write(data)
                position += len(data)
                del data
        except BlobReadStopped:
            raise
        except BaseException:
            self._consumer.unregisterProducer()
            raise
        finally:
            if fetching is not None:  # stopped or failed: let the read-ahead finish
                await settled(fetching)
        self._consumer.unregisterProducer()
        return position - self._start


async def settled(d: Deferred[Any]) -> None:
    """Wait for ``d``, ignoring its error (the one that made us stop is reported)."""
    try:
        await d
    except Exception:
        pass
