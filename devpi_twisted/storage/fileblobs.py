"""The file blob store: one file per key under the server directory's ``+files``.

Writes go to a temporary file in the target directory, are fsynced and hash-checked,
then ``os.replace``d into place and the directory fsynced; a crash leaves at most a
stray ``.tmp-blob-*`` file, never a half-written blob. The blocking file operations
(the ``_*_sync`` functions, ``fsync_dir``, ``make_dirs``) run on a thread pool.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IConsumer, IReactorThreads
from twisted.python.threadpool import ThreadPool

from devpi_twisted.storage.blobs import (
    CHUNK_SIZE, TEMP_PREFIX, TOUCH_INTERVAL, BlobHashMismatch, BlobKeyInvalid, BlobMissing,
    BlobStore, BlobUsage, ChunkPump, DailyTouches, LocalBlob, OpenFiles, byte_range, check_key,
)
from devpi_twisted.storage.types import Offload, ThreadOffload


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
        return self._in_thread(_put_sync, target, key, Path(path), sha256.lower(), self._sync)

    def link_file(self, key: str, path: Path, sha256: str) -> Deferred[int]:
        """Like ``put_file``, but a hard link to ``path`` where the file system allows one
        (export/import ``--hard-links``); a copy otherwise."""
        try:
            target = self._path(key)
        except BlobKeyInvalid:
            return _failed()
        self._open_files.drop(key)
        return self._in_thread(_link_sync, target, key, Path(path), sha256.lower(), self._sync)

    def put_files(self, items: Sequence[tuple[str, Path, str]], link: bool = False) -> Deferred[None]:
        """``put_file`` (or ``link_file``) of every ``(key, path, sha256)`` in one trip to
        the thread pool: for a bulk load of many small files (import)."""
        try:
            jobs = [(self._path(key), key, Path(path), sha256.lower()) for key, path, sha256 in items]
        except BlobKeyInvalid:
            return _failed()
        for key, _, _ in items:
            self._open_files.drop(key)
        return self._in_thread(_put_all_sync, jobs, _link_sync if link else _put_sync, self._sync)

    def move_in(self, items: Sequence[tuple[str, Path, str]]) -> Deferred[None]:
        try:
            moves = [(self._path(key), key, Path(path), sha256) for key, path, sha256 in items]
        except BlobKeyInvalid:
            return _failed()
        for key, _, _ in items:
            self._open_files.drop(key)
        return self._in_thread(_move_all_sync, moves)

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


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path, sync: bool = True) -> list[Path]:
    """Create ``directory`` and its missing parents, each made durable by an fsync of the
    directory holding it (unless ``sync`` is false: then the caller fsyncs the
    directories returned, those that got a new entry)."""
    missing = []
    current = directory
    while not current.is_dir() and current.parent != current:
        missing.append(current)
        current = current.parent
    changed = []
    for made in reversed(missing):
        try:
            made.mkdir()
        except FileExistsError:
            continue  # made by a concurrent put
        if sync:
            fsync_dir(made.parent)
        changed.append(made.parent)
    return changed


def _put_sync(target: Path, key: str, source: Path, sha256: str, sync: bool = True) -> int:
    """Copy ``source`` to a temporary file next to ``target`` while hashing it, fsync,
    check the hash, rename into place, fsync the directory (no fsyncs if not ``sync``)."""
    make_dirs(target.parent, sync)
    temporary = target.parent / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    hasher = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(temporary, "xb") as dst:
            os.fchmod(dst.fileno(), 0o644)  # nginx reads what X-Accel-Redirect names
            while chunk := src.read(CHUNK_SIZE):
                hasher.update(chunk)
                dst.write(chunk)
                size += len(chunk)
            dst.flush()
            if sync:
                os.fsync(dst.fileno())
        actual = hasher.hexdigest()
        if actual != sha256:
            raise BlobHashMismatch(key, sha256, actual)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _into_place(temporary, target, sync)
    return size


def _into_place(temporary: Path, target: Path, sync: bool) -> None:
    """Rename a finished temporary file over ``target`` (removed if that fails), then
    make the rename durable with an fsync of the directory."""
    try:
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(target.parent)


def _link_sync(target: Path, key: str, source: Path, sha256: str, sync: bool = True) -> int:
    """Check ``source``'s hash, then hard-link it into place under a temporary name and
    rename; falls back to ``_put_sync`` where links are impossible (other file system)."""
    hasher = hashlib.sha256()
    size = 0
    with open(source, "rb") as src:
        while chunk := src.read(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    actual = hasher.hexdigest()
    if actual != sha256:
        raise BlobHashMismatch(key, sha256, actual)
    make_dirs(target.parent, sync)
    temporary = target.parent / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    try:
        os.link(source, temporary)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        return _put_sync(target, key, source, sha256, sync)
    _into_place(temporary, target, sync)
    return size


def _put_all_sync(jobs: Sequence[tuple[Path, str, Path, str]],
                  put: Callable[[Path, str, Path, str, bool], int], sync: bool) -> None:
    for target, key, source, sha256 in jobs:
        put(target, key, source, sha256, sync)


def _move_all_sync(moves: Sequence[tuple[Path, str, Path, str]]) -> None:
    """Move spooled files into place, all durable on return, with as few journal commits
    as the file system needs: each source is opened, then the missing directories are
    made and each source is hard-linked in under its key where nothing is stored yet (a
    link, unlike a rename, never replaces: only one of concurrent puts of a key gets
    there this way), then the files are fsynced (on ext4 the first fsync commits the new
    entries too) and every directory that got one, once. A key already stored gets its
    new body the careful way: fsynced first, then renamed over it (copied across file
    systems, as _put_sync does). Nothing refers to a key before the caller commits a
    record after this returns, so a crash in between leaves at most an unreferenced file,
    which a later put replaces the careful way."""
    opened: list[int] = []
    try:
        for _, _, source, _ in moves:
            opened.append(fd := os.open(source, os.O_RDONLY | os.O_CLOEXEC))
            os.fchmod(fd, 0o644)  # nginx reads what X-Accel-Redirect names
        directories: dict[Path, None] = {}
        for fd, (target, key, source, sha256) in zip(opened, moves):
            if target.parent not in directories:
                directories.update(dict.fromkeys(make_dirs(target.parent, sync=False)))
            try:
                os.link(source, target)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.EXDEV, errno.EPERM, errno.EMLINK,
                                   errno.ENOTSUP):
                    raise
                os.fsync(fd)  # a stored key (or no links here): whole before it shows
                _rename_over(target, key, source, sha256)
                continue
            os.unlink(source)
            directories[target.parent] = None
        for fd in opened:
            os.fsync(fd)
    finally:
        for fd in opened:
            os.close(fd)
    for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
        fsync_dir(directory)


def _rename_over(target: Path, key: str, source: Path, sha256: str) -> None:
    """Rename a (fsynced) source over ``target`` and fsync its directory; a copy where a
    rename cannot go (another file system)."""
    try:
        os.rename(source, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _put_sync(target, key, source, sha256)
        return
    fsync_dir(target.parent)


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
