"""Local copies of the PostgreSQL store's blob bodies, so downloads go out by sendfile.

PostgreSQL keeps the bodies so that several hosts can share one database, but
streaming a body out of it costs a query per MiB and a copy through Python (a
tenth of nginx's speed). So each host keeps copies of the bodies it served in a
directory of its own (``+blobcache`` in the server directory), each named by its
sha256: a name can only ever hold those bytes, so no copy goes stale. A copy is
hashed while it is written, fsynced and renamed into place, and its size checked
when it is opened. The database stays the truth: a download asks it which sha256
the key holds, so a deleted or replaced blob is never served from here; only a
copy this process holds open is lent for the sha256 the file's record names
without asking (the record, not the body, says a file exists).

At most ``limit`` bytes are kept; the copies served least recently go first.
Worker processes share the directory; each counts what it found at its first
copy and what it served or copied since, so the total can overshoot by what the
others added in between.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from devpi_twisted.storage.blobs import (
    CHUNK_SIZE, TEMP_PREFIX, BlobHashMismatch, BlobMissing, LocalBlob, OpenFiles,
)
from devpi_twisted.storage.fileblobs import fsync_dir, make_dirs
from devpi_twisted.storage.types import Offload, ThreadOffload

STALE_TEMP = 3600  # seconds after which a temporary file is taken for a crashed copy's
_SHA256 = re.compile(r"[0-9a-f]{64}")

Fetch = Callable[[int, int], Deferred[bytes]]  # (position, count) -> at most count bytes


class BodyCache:
    def __init__(self, root: Path, limit: int, reactor: IReactorThreads,
                 threadpool: ThreadPool | None = None) -> None:
        self.root = Path(root)
        self._limit = limit
        self._in_thread: Offload = ThreadOffload(reactor, threadpool)
        self._open_files = OpenFiles()
        self._sizes: OrderedDict[str, int] = OrderedDict()  # sha256 -> size, least recent first
        self._total = 0
        self._scanned: Deferred[None] | None = None
        self._copying: dict[str, list[Deferred[None]]] = {}  # sha256 -> who waits for it
        # hits: downloads sent from a copy; misses: sent from the database (no copy yet)
        self.stats = {"hits": 0, "misses": 0, "copies_made": 0, "copy_errors": 0}

    @property
    def size(self) -> int:
        """Bytes of the copies this process knows of."""
        return self._total

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def wanted(self, sha256: str, size: int) -> bool:
        return 0 < size <= self._limit and _SHA256.fullmatch(sha256) is not None

    # -- serving -----------------------------------------------------------------------

    def lent(self, sha256: str) -> LocalBlob | None:
        """The copy of ``sha256`` if this process holds it open; no I/O."""
        local = self._open_files.get(sha256)
        if local is not None:
            self.stats["hits"] += 1
            self._used(sha256, local.size)
        return local

    def open(self, sha256: str, size: int) -> Deferred[LocalBlob | None]:
        """The copy of ``sha256`` opened for reading; None if there is none (yet)."""
        if not self.wanted(sha256, size):
            return succeed(None)
        local = self.lent(sha256)
        if local is not None:
            return succeed(local)
        return self._in_thread(_open_copy, self._path(sha256), size).addCallback(
            self._opened, sha256, size)

    def _opened(self, fd: int | None, sha256: str, size: int) -> LocalBlob | None:
        if fd is None:
            self.stats["misses"] += 1
            return None
        self.stats["hits"] += 1
        self._used(sha256, size)
        return self._open_files.add(sha256, fd, size)

    def _used(self, sha256: str, size: int) -> None:
        if sha256 in self._sizes:
            self._sizes.move_to_end(sha256)
        else:  # copied by another worker
            self._sizes[sha256] = size
            self._total += size

    # -- copying -----------------------------------------------------------------------

    def copy(self, sha256: str, size: int, fetch: Fetch) -> Deferred[None]:
        """Copy the body (``fetch`` gives its bytes), or join the copy of it being made;
        then evict. Fires when done; fails (and keeps nothing) when the bytes do not
        hash to ``sha256`` or the fetch fails."""
        if not self.wanted(sha256, size):
            return succeed(None)
        if sha256 not in self._copying:
            self._copying[sha256] = []
            Deferred.fromCoroutine(self._copy(sha256, size, fetch)).addBoth(self._copied, sha256)
        return self._waiter(sha256)

    def _waiter(self, sha256: str) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self._copying[sha256].append(waiter)
        return waiter

    def _copied(self, outcome: Any, sha256: str) -> None:
        self.stats["copy_errors" if isinstance(outcome, Failure) else "copies_made"] += 1
        for waiter in self._copying.pop(sha256):
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(None)

    def settle(self) -> Deferred[Any]:
        """Fires once the copies being made now are done (whatever their outcome)."""
        return DeferredList([self._waiter(sha256) for sha256 in self._copying], consumeErrors=True)

    async def _copy(self, sha256: str, size: int, fetch: Fetch) -> None:
        if self._scanned is None:
            self._scanned = self._in_thread(_scan, self.root, time.time()).addCallback(self._found)
        await self._scanned
        fd, temporary = await self._in_thread(_create_temporary, self.root)
        try:
            hasher = hashlib.sha256()
            position = 0
            while position < size:
                data = await fetch(position, min(CHUNK_SIZE, size - position))
                if not data:
                    raise BlobMissing(f"the body of {sha256} ended at byte {position}")
                await self._in_thread(_append, fd, data, hasher)
                position += len(data)
            actual = hasher.hexdigest()
            if actual != sha256:
                raise BlobHashMismatch(sha256, sha256, actual)
            await self._in_thread(_into_cache, fd, temporary, self._path(sha256))
        except BaseException:
            await self._in_thread(temporary.unlink, True)
            raise
        finally:
            await self._in_thread(os.close, fd)
        self._used(sha256, size)
        await self._evict()

    def _found(self, copies: list[tuple[str, int]]) -> None:
        for sha256, size in reversed(copies):  # each goes before the more recent ones
            if sha256 not in self._sizes:
                self._sizes[sha256] = size
                self._sizes.move_to_end(sha256, last=False)
                self._total += size

    async def _evict(self) -> None:
        victims = []
        while self._total > self._limit and self._sizes:
            sha256, size = self._sizes.popitem(last=False)
            self._total -= size
            self._open_files.drop(sha256)  # reads that hold it finish on their descriptor
            victims.append(self._path(sha256))
        if victims:
            await self._in_thread(_unlink_all, victims)


def _open_copy(path: Path, size: int) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:  # not ours, or cut short
        os.close(fd)
        return None
    try:
        os.utime(fd, None)  # its last use, for the next process's scan
    except OSError:
        pass  # not ours to touch: it is still the right bytes
    return fd


def _create_temporary(root: Path) -> tuple[int, Path]:
    make_dirs(root, sync=False)
    temporary = root / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), temporary


def _append(fd: int, data: bytes, hasher: Any) -> None:
    hasher.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _into_cache(fd: int, temporary: Path, target: Path) -> None:
    os.fsync(fd)
    make_dirs(target.parent, sync=False)
    os.replace(temporary, target)
    fsync_dir(target.parent)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _scan(root: Path, now: float) -> list[tuple[str, int]]:
    """The copies under ``root`` as (sha256, size), least recently used first; removes
    temporary files left by copies that crashed."""
    found = []
    try:
        tops = list(os.scandir(root))
    except FileNotFoundError:
        return []
    for top in tops:
        with contextlib.suppress(FileNotFoundError):  # another worker removed it meanwhile
            if top.name.startswith(TEMP_PREFIX):
                if top.stat().st_mtime < now - STALE_TEMP:
                    os.unlink(top.path)
                continue
            if not top.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(top.path):
                sha256 = top.name + entry.name
                with contextlib.suppress(FileNotFoundError):
                    if _SHA256.fullmatch(sha256) and entry.is_file(follow_symlinks=False):
                        st = entry.stat()
                        found.append((max(st.st_atime, st.st_mtime), sha256, st.st_size))
    found.sort()
    return [(sha256, size) for _, sha256, size in found]
