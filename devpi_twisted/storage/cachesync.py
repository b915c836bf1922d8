"""The mirror's cached files, stored without waiting for the disk (issue 25).

A mirror's first download can be fetched from upstream again, so its body is linked
into ``+files`` without an fsync before the client is answered and its record
committed. A sweep on a thread makes the files linked since the last sweep durable
(an fdatasync of each, an fsync of each directory that got an entry), never on the
reactor thread: once no file was stored for ``QUIET`` seconds (an install's downloads
come in a burst: its sweep does not compete with the client's own writes), at the
latest ``MAX_DELAY`` seconds after the first file it syncs was stored. Private uploads keep their fsync
before the answer (fileblobs.py); only the mirror's cache goes this way.

What a crash can leave is a record whose body is missing, short or wrong. The state
file (``STATE_FILE`` in the server directory, replaced atomically and fsynced) says
since when files may not be durable; the process that finds it saying so at start
(the last one did not end cleanly) keeps that span, up to its own start, as a
*window*. A cached file whose inode changed (its ctime: the link into place) inside a
window is hashed on its first use in each process, before it is served; a missing or
wrong body is removed and fetched again from upstream like any file not cached
(web/files.py). Only a process without workers defers: with ``--workers`` every
process fsyncs as before (one state file cannot follow several writers), and all of
them still check the windows.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from devpi_twisted.storage.blobs import CHUNK_SIZE, TEMP_PREFIX
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.filesync import fsync_dir, make_dirs, move_all_sync
from devpi_twisted.storage.types import Offload

STATE_FILE = ".mirror-cache-sync"
QUIET = 1.0  # seconds without a store before a sweep
MAX_DELAY = 10.0  # seconds from a store to the sweep making it durable, at most
# ctime is the kernel's coarse clock, and a window's edges are taken around the work
SLACK = 2.0
MAX_STATE = 1 << 16  # bytes of the state file read; more is a damaged file
_log = Logger()

Window = tuple[float, float]
Move = tuple[str, Path, str]  # (key, spooled file, its sha256)
Linked = tuple[list[Path], list[Path]]  # files linked into place, directories with a new entry


# -- the state file (blocking: at start, or on a thread) --------------------------------

def read_state(path: Path) -> tuple[float | None, list[Window]]:
    """(since when files may not be durable, None: all are; the windows of earlier
    crashes). No file: a server directory whose files were all fsynced. A damaged file
    trusts nothing: one window over all time."""
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read(MAX_STATE + 1)[:MAX_STATE])
        since = data["unsynced_since"]
        windows = [(float(a), float(b)) for a, b in data["windows"]]
        if since is not None:
            since = float(since)
    except FileNotFoundError:
        return None, []
    except (OSError, ValueError, KeyError, TypeError):
        return None, [(0.0, time.time() + SLACK)]
    return since, windows


def write_state(path: Path, since: float | None, windows: Sequence[Window]) -> None:
    """Replace the state file durably (written beside it, fsynced, renamed, the
    directory fsynced)."""
    temporary = path.with_name(f"{TEMP_PREFIX}{path.name}")
    with open(temporary, "w", encoding="ascii") as file:
        json.dump({"unsynced_since": since, "windows": [list(w) for w in windows]}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def open_state(path: Path, now: float, defer: bool, writer: bool = True) -> list[Window]:
    """At start, before serving: the windows in which cached files may have been left
    damaged. ``writer`` (the main process) turns an unclean end of the last one into a
    new window and records that from now on files may be undurable (``defer``), or not."""
    since, windows = read_state(path)
    if writer:
        if since is not None:
            windows.append((since - SLACK, now + SLACK))
        write_state(path, now if defer else None, windows)
    return windows


# -- the files (blocking, on threads) ---------------------------------------------------

def link_unsynced(moves: Sequence[tuple[Path, str, Path, str]]) -> Linked:
    """Hard-link each spooled source in under its key, without fsyncs, and remove the
    source; returns the files and the directories with a new entry, for ``sync_later``.
    A key stored already (or no links possible here) gets its body the careful way,
    durable at once (filesync.move_all_sync)."""
    files: list[Path] = []
    directories: dict[Path, None] = {}
    for target, key, source, sha256 in moves:
        os.chmod(source, 0o644)  # nginx reads what X-Accel-Redirect names
        directories.update(dict.fromkeys(make_dirs(target.parent, sync=False)))
        try:
            os.link(source, target)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.EXDEV, errno.EPERM, errno.EMLINK,
                               errno.ENOTSUP):
                raise
            move_all_sync([(target, key, source, sha256)])
            continue
        os.unlink(source)
        files.append(target)
        directories[target.parent] = None
    return files, list(directories)


def sync_later(files: Sequence[Path], directories: Sequence[Path]) -> None:
    """Make linked files durable: their data, then the directory entries, deepest
    first. A file or directory removed meanwhile needs nothing."""
    for path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
    for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
        try:
            fsync_dir(directory)
        except FileNotFoundError:
            continue


def intact_sync(path: Path, sha256: str, windows: Sequence[Window]) -> bool:
    """False if the file at ``path`` changed inside a window and its bytes do not have
    ``sha256``; True otherwise (a missing file too: the caller finds it missing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return True
    try:
        ctime = os.fstat(fd).st_ctime
        if not any(start <= ctime <= end for start, end in windows):
            return True
        hasher = hashlib.sha256()
        while chunk := os.read(fd, CHUNK_SIZE):
            hasher.update(chunk)
    finally:
        os.close(fd)
    return hasher.hexdigest() == sha256.lower()


# -- the process's side ----------------------------------------------------------------

class CacheFiles:
    """The mirror's stores into the file blob store ``blobs``: deferred (``defer``),
    or as ``blobs.move_in`` (durable before it fires); the sweeps; the check of a
    cached file changed in a crash ``window``, once per key and process."""

    def __init__(self, blobs: FileBlobStore, state: Path, windows: Sequence[Window],
                 clock: IReactorTime, offload: Offload, defer: bool,
                 quiet: float = QUIET, max_delay: float = MAX_DELAY,
                 now: Callable[[], float] = time.time) -> None:
        self._blobs = blobs
        self._state = state
        self._windows = list(windows)
        self._clock = clock
        self._offload = offload
        self._defer = defer
        self._quiet = quiet
        self._max_delay = max_delay
        self._now = now
        self._files: list[Path] = []  # linked, not synced yet
        self._directories: dict[Path, None] = {}
        self._pending_since: float | None = None  # the earliest start of those links
        self._first_stored: float | None = None  # when the first of them was (clock's time)
        self._moving: dict[object, float] = {}  # links under way: their start
        self._timer: IDelayedCall | None = None
        self._sweeping: Deferred[None] | None = None
        self._verified: set[str] = set()
        self.stats = {"cache_sweeps": 0, "cache_files_synced": 0, "cache_refetched": 0}

    @property
    def deferring(self) -> bool:
        """Whether stores are durable only at the next sweep."""
        return self._defer

    def move_in(self, items: Sequence[Move]) -> Deferred[None]:
        """Store the spooled files; durable at the next sweep when deferring."""
        if not self._defer:
            return self._blobs.move_in(list(items))
        token = self.begin()
        moved = self._blobs.move_in_with(link_unsynced, items)

        def failed(failure: Failure) -> Failure:
            self.end(token, None)
            return failure

        return moved.addCallbacks(lambda linked: self.end(token, linked), failed)

    def link_sync(self, items: Sequence[Move]) -> Linked:
        """On a thread, between ``begin`` and ``end``: ``link_unsynced`` of the spooled
        files under their keys (a key's bytes never change: no open descriptor of this
        process can hold other bytes under it)."""
        return link_unsynced([(self._target(key), key, source, sha256)
                              for key, source, sha256 in items])

    def _target(self, key: str) -> Path:
        path = self._blobs.local_path(key)
        assert path is not None  # (a file store's)
        return path

    def begin(self) -> object:
        """A store (``link_sync``) is starting: files linked from now on may not be
        durable; ``end`` with the token."""
        token = object()
        self._moving[token] = self._now()
        return token

    def end(self, token: object, linked: Linked | None) -> None:
        """The store begun with ``token`` is over, having ``linked`` these files and
        directories (None: nothing): they are synced by the next sweep."""
        start = self._moving.pop(token, None)
        if linked is None or start is None:
            return
        files, directories = linked
        self._files.extend(files)
        self._directories.update(dict.fromkeys(directories))
        self._pending_since = start if self._pending_since is None \
            else min(start, self._pending_since)
        self._schedule()

    def _schedule(self) -> None:
        """The sweep: ``quiet`` seconds from now, at most ``max_delay`` after the first
        store not synced yet (one sweep at a time)."""
        if self._sweeping is not None or not self._files:
            return
        now = self._clock.seconds()
        if self._first_stored is None:
            self._first_stored = now
        delay = max(0.0, min(now + self._quiet, self._first_stored + self._max_delay) - now)
        if self._timer is None:
            self._timer = self._clock.callLater(delay, self._sweep)
        else:
            self._timer.reset(delay)

    def _sweep(self) -> Deferred[None]:
        self._timer = None
        self._sweeping = Deferred.fromCoroutine(self._sweep_once())
        self._sweeping.addErrback(lambda f: _log.failure("syncing the mirror's cached files", f))

        def over(_: object) -> None:
            self._sweeping = None
            self._schedule()

        return self._sweeping.addBoth(over)

    async def _sweep_once(self) -> None:
        files, directories, since = self._files, list(self._directories), self._pending_since
        self._files, self._directories, self._pending_since = [], {}, None
        self._first_stored = None
        started = self._now()
        try:
            await self._offload(sync_later, files, directories)
        except BaseException:  # kept for the next sweep
            self._files[:0] = files
            self._directories.update(dict.fromkeys(directories))
            if since is not None:
                self._pending_since = min(since, self._pending_since or since)
            raise
        self.stats["cache_sweeps"] += 1
        self.stats["cache_files_synced"] += len(files)
        starts = [started, *self._moving.values()]
        if self._pending_since is not None:
            starts.append(self._pending_since)
        await self._offload(write_state, self._state, min(starts), self._windows)

    async def close(self) -> None:
        """At shutdown, once no store is under way: the last sweep; the state file says
        every file is durable. Later stores (none expected) are durable at once."""
        self._defer = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sweeping is not None:
            await self._sweeping
        if self._files:
            await self._sweep()
        if not self._moving and not self._files:
            await self._offload(write_state, self._state, None, self._windows)

    # -- reading ------------------------------------------------------------------------

    def check(self, key: str, sha256: str) -> Deferred[bool] | None:
        """None when the cached file under ``key`` needs no check (no crash window, or
        checked already in this process); else a Deferred firing False when its body
        was damaged (it is removed then: fetch it again), True when it is whole."""
        if not self._windows or not sha256 or key in self._verified:
            return None
        path = self._blobs.local_path(key)
        assert path is not None
        return Deferred.fromCoroutine(self._check(key, path, sha256))

    async def _check(self, key: str, path: Path, sha256: str) -> bool:
        if await self._offload(intact_sync, path, sha256, self._windows):
            self._verified.add(key)
            return True
        _log.warn("The cached {key} was damaged by a crash; fetching it again", key=key)
        self.stats["cache_refetched"] += 1
        await self._blobs.delete(key)
        return False
