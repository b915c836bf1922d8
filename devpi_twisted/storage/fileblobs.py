"""The file blob store: one file per key under the server directory's ``+files``.

Writes go to a temporary file in the target directory, are fsynced and hash-checked,
then ``os.replace``d into place and the directory fsynced; a crash leaves at most a
stray ``.tmp-blob-*`` file, never a half-written blob. The blocking file operations
(filesync.py's writes, the ``_*_sync`` reads here) run on a thread pool.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer, IReactorThreads
from twisted.python.threadpool import ThreadPool

from devpi_twisted.storage.blobs import (
    TEMP_PREFIX, TOUCH_INTERVAL, BlobKeyInvalid, BlobMissing, BlobStore, BlobUsage, ChunkPump,
    DailyTouches, LocalBlob, OpenFiles, byte_range, check_key,
)
from devpi_twisted.storage.filesync import (
    fsync_dir, link_sync, make_dirs, move_all_sync, place_all_sync, put_all_sync, put_sync,
)
from devpi_twisted.storage.types import Offload, ThreadOffload

__all__ = ["FileBlobStore", "fsync_dir", "make_dirs"]


class FileBlobStore:
    """Blobs as files under ``root`` (the server directory's ``+files``), one per key;
    file operations on ``threadpool`` (by default the reactor's)."""

    def __init__(self, root: Path, reactor: IReactorThreads, threadpool: ThreadPool | None = None,
                 sync: bool = True) -> None:
        self.root = Path(root)
        self._reactor = reactor
        self._offload = ThreadOffload(reactor, threadpool)
        self._in_thread: Offload = self._offload
        self._open_files = OpenFiles()
        self._sync = sync
        self._touches = DailyTouches()

    def unsynced(self) -> FileBlobStore:
        """The same store, but ``put_file``/``link_file`` skip their fsyncs: for a bulk
        load (import) that makes everything durable at once (``os.sync``) before anything
        refers to it. Renames stay atomic."""
        return FileBlobStore(self.root, self._reactor, self._offload.pool, sync=False)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    # -- put -----------------------------------------------------------------------

    def put_file(self, key: str, path: Path, sha256: str) -> Deferred[int]:
        try:
            target = self._path(key)
        except BlobKeyInvalid:
            return _failed()
        self._open_files.drop(key)  # a descriptor of what it replaces must not be lent
        return self._in_thread(put_sync, target, key, Path(path), sha256.lower(), self._sync)

    def link_file(self, key: str, path: Path, sha256: str) -> Deferred[int]:
        """Like ``put_file``, but a hard link to ``path`` where the file system allows one
        (export/import ``--hard-links``); a copy otherwise."""
        try:
            target = self._path(key)
        except BlobKeyInvalid:
            return _failed()
        self._open_files.drop(key)
        return self._in_thread(link_sync, target, key, Path(path), sha256.lower(), self._sync)

    def put_files(self, items: Sequence[tuple[str, Path, str]], link: bool = False) -> Deferred[None]:
        """``put_file`` (or ``link_file``) of every ``(key, path, sha256)`` in one trip to
        the thread pool: for a bulk load of many small files (import)."""
        try:
            jobs = [(self._path(key), key, Path(path), sha256.lower()) for key, path, sha256 in items]
        except BlobKeyInvalid:
            return _failed()
        for key, _, _ in items:
            self._open_files.drop(key)
        return self._in_thread(put_all_sync, jobs, link_sync if link else put_sync, self._sync)

    def move_in(self, items: Sequence[tuple[str, Path | bytes, str]]) -> Deferred[None]:
        try:
            moves = self._moves(items)
        except BlobKeyInvalid:
            return _failed()
        return self._in_thread(move_all_sync, moves)

    def move_in_blocking(self, items: Sequence[tuple[str, Path | bytes, str]]
                         ) -> Callable[[], Callable[[], None]]:
        return partial(place_all_sync, self._moves(items))

    def _moves(self, items: Sequence[tuple[str, Path | bytes, str]]
               ) -> list[tuple[Path, str, Path | bytes, str]]:
        moves = [(self._path(key), key, path if isinstance(path, bytes) else Path(path), sha256)
                 for key, path, sha256 in items]
        for key, _, _ in items:
            self._open_files.drop(key)
        return moves

    # -- queries -------------------------------------------------------------------------

    def size(self, key: str) -> Deferred[int | None]:
        try:
            target = self._path(key)
        except BlobKeyInvalid:
            return _failed()
        return self._in_thread(_size_sync, target)

    def exists(self, key: str) -> Deferred[bool]:
        return self.size(key).addCallback(lambda size: size is not None)

    # -- read ------------------------------------------------------------------------------

    def read(self, key: str, consumer: IConsumer, offset: int = 0,
             length: int | None = None) -> Deferred[int]:
        return Deferred.fromCoroutine(self._read(key, consumer, offset, length))

    async def _read(self, key: str, consumer: IConsumer, offset: int, length: int | None) -> int:
        target = self._path(key)
        fd, size = await self._in_thread(_open_sync, key, target)
        try:
            start, end = byte_range(size, offset, length)

            def fetch(position: int, count: int) -> Deferred[bytes]:
                return self._in_thread(os.pread, fd, count, position)

            return await ChunkPump(consumer, fetch, start, end).run()
        finally:
            os.close(fd)

    def open_local(self, key: str, sha256: str | None = None) -> Deferred[LocalBlob | None]:
        cached = self._open_files.get(key)  # its key was checked when it was opened
        if cached is not None:
            return succeed(cached)
        try:
            target = self._path(key)
        except BlobKeyInvalid:
            return _failed()
        return self._in_thread(_open_sync, key, target).addCallback(
            lambda opened: self._open_files.add(key, *opened))

    def copy_stats(self) -> dict[str, int]:
        return {}

    # -- access times --------------------------------------------------------------------

    def touch(self, key: str, now: float) -> Deferred[None] | None:
        """The file's atime (its mtime stays, nginx sends it as Last-Modified), written
        on a thread when older than a day, at most once a day per key and process."""
        if not self._touches.first_today(key, now):
            return None
        try:
            target = self._path(key)
        except BlobKeyInvalid:
            return None
        return self._in_thread(_touch_sync, target, now)

    def usage(self, prefix: str) -> Deferred[list[BlobUsage]]:
        try:
            top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        except BlobKeyInvalid:
            return _failed()
        return self._in_thread(_usage_sync, self.root, top)

    # -- delete ----------------------------------------------------------------------------

    def delete(self, key: str) -> Deferred[None]:
        try:
            target = self._path(key)
        except BlobKeyInvalid:
            return _failed()
        self._open_files.drop(key)
        return self._in_thread(_delete_sync, target)


def _failed() -> Deferred[Any]:
    """The exception being handled, as a failed Deferred."""
    return fail()


def _size_sync(target: Path) -> int | None:
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _open_sync(key: str, target: Path) -> tuple[int, int]:
    try:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise BlobMissing(f"no blob {key}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BlobMissing(f"no blob {key}")
    return fd, st.st_size


def _delete_sync(target: Path) -> None:
    try:
        os.unlink(target)
    except (FileNotFoundError, NotADirectoryError):
        return
    fsync_dir(target.parent)


def _touch_sync(target: Path, now: float) -> None:
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return
    if st.st_atime < now - TOUCH_INTERVAL or st.st_atime < st.st_mtime:
        os.utime(target, ns=(int(now * 1e9), st.st_mtime_ns))


def _usage_sync(root: Path, top: Path) -> list[BlobUsage]:
    found = []
    for directory, _, names in os.walk(top):
        for name in names:
            if name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:  # deleted meanwhile
                continue
            if stat.S_ISREG(st.st_mode):
                key = Path(path).relative_to(root).as_posix()
                found.append(BlobUsage(key, st.st_size, max(st.st_atime, st.st_mtime)))
    return found


def _conforms(store: FileBlobStore) -> BlobStore:
    """For mypy: a FileBlobStore is a BlobStore."""
    return store
