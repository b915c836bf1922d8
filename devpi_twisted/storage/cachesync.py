"""The mirror's cached files, stored without waiting for the disk (issue 25).

A mirror's first download can be fetched from upstream again, so its body is linked
into ``+files`` without an fsync before the client is answered and its record
committed. A sweep makes the files linked since the last sweep durable (an fdatasync
of each, an fsync of each directory that got an entry), on a thread of its own, once
no file was stored for ``QUIET`` seconds (an install's downloads come in a burst: its
sweep does not compete with the client's own writes, before and after its downloads),
at the latest ``MAX_DELAY`` seconds after the first file it syncs was stored. Private uploads keep their fsync
before the answer (fileblobs.py); only the mirror's cache goes this way.

Before the record of the first undurable file is committed, the state file
(storage/cachestate.py) says "not durable since ..." (one write per burst, on the
same thread, off the client's answer); once a sweep leaves nothing undurable it says
"all durable" again. So a crash while it said "not durable" is found at the next
start, and the cached files linked in that span are checked before they are served.
Only a process without workers defers: with ``--workers`` every process fsyncs as
before (one state file cannot follow several writers).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from devpi_twisted.storage.cachestate import CrashWindows, write_state
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.filesync import fsync_dir, make_dirs, move_all_sync

# seconds without a store before a sweep: after its last download pip still unpacks and
# writes what it installs (a second or more for 58 distributions on a busy machine)
QUIET = 5.0
MAX_DELAY = 60.0  # seconds from a store to the sweep making it durable, at most
_log = Logger()

_NO_LINK = frozenset({errno.EEXIST, errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})
Move = tuple[str, Path, str]  # (key, spooled file, its sha256)
Linked = tuple[list[Path], list[Path]]  # files linked into place, directories with a new entry


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
        if not _link(source, target):
            move_all_sync([(target, key, source, sha256)])
            continue
        os.unlink(source)
        files.append(target)
        directories[target.parent] = None
    return files, list(directories)


def _link(source: Path, target: Path) -> bool:
    """Hard-link ``source`` as ``target``; False where that cannot be (a key stored
    already, another file system, no hard links there)."""
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno in _NO_LINK:
            return False
        raise
    return True


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


# -- the process's side ----------------------------------------------------------------

class CacheFiles:
    """The mirror's stores into the file blob store ``blobs``: deferred (``defer``),
    or as ``blobs.move_in`` (durable before it fires). The state file ``state`` and the
    sweeps are written on a thread of its own (started when first needed: its work
    does not wait behind, nor hold up, the shared pool's); ``close`` ends it."""

    def __init__(self, blobs: FileBlobStore, state: Path, crashes: CrashWindows,
                 reactor: IReactorFromThreads, clock: IReactorTime, defer: bool,
                 quiet: float = QUIET, max_delay: float = MAX_DELAY,
                 now: Callable[[], float] = time.time) -> None:
        """``crashes``: the windows of earlier crashes (kept in the state file) and the
        check of the files changed in them (``check``)."""
        self._blobs = blobs
        self._state = state
        self._windows = crashes.windows
        self.check = crashes.check
        self._reactor = reactor
        self._clock = clock
        self._thread = ThreadPool(0, 1, "devpi-cache-sync")
        self._thread.start()
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
        self._undurable = False  # what the state file says (or is about to)
        self._writes = 0  # state writes under way
        self._waiting: list[Deferred[None]] = []  # for them to end
        self._failed: Failure | None = None  # the last state write's, if it failed
        self._closed = False
        self.stats = {"cache_sweeps": 0, "cache_files_synced": 0}

    @property
    def deferring(self) -> bool:
        """Whether stores are durable only at the next sweep."""
        return self._defer

    def _in_thread(self, fn: Callable[..., object], *args: object) -> Deferred[object]:
        return deferToThreadPool(self._reactor, self._thread, fn, *args)

    # -- the state file ---------------------------------------------------------------------

    def _write_state(self, since: float | None) -> None:
        """Say ``since`` in the state file (after any write under way: one thread)."""
        self._undurable = since is not None
        self._writes += 1
        self._in_thread(write_state, self._state, since, self._windows).addBoth(self._written)

    def _written(self, result: object) -> None:
        self._writes -= 1
        self._failed = result if isinstance(result, Failure) else None
        if self._failed is not None:
            _log.failure("writing {path}", self._failed, path=str(self._state))
        if self._writes == 0:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                if self._failed is not None:
                    d.errback(self._failed)
                else:
                    d.callback(None)

    def marked(self) -> Deferred[None]:
        """Fires once the state file says what was begun may not be durable: before
        the record of a file stored undurably is committed. Fails if it could not be
        written (nothing may refer to such a file then)."""
        if self._writes == 0:
            return fail(self._failed) if self._failed is not None else succeed(None)
        waiting: Deferred[None] = Deferred()
        self._waiting.append(waiting)
        return waiting

    # -- stores ------------------------------------------------------------------------------

    def move_in(self, items: Sequence[Move]) -> Deferred[None]:
        """Store the spooled files (before their records are committed); durable at the
        next sweep when deferring."""
        if not self._defer:
            return self._blobs.move_in(list(items))
        return Deferred.fromCoroutine(self._move_in(items))

    async def _move_in(self, items: Sequence[Move]) -> None:
        token = self.begin()
        linked = None
        try:
            linked = await self._blobs.move_in_with(link_unsynced, items)
            await self.marked()
        finally:
            self.end(token, linked)

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
        durable (``marked`` says when the state file says so); ``end`` with the token."""
        token = object()
        self._moving[token] = now = self._now()
        if not self._undurable:
            self._write_state(now)
        return token

    def end(self, token: object, linked: Linked | None) -> None:
        """The store begun with ``token`` is over, having ``linked`` these files and
        directories (None: nothing): they are synced by the next sweep."""
        start = self._moving.pop(token, None)
        if linked is not None and start is not None:
            files, directories = linked
            self._files.extend(files)
            self._directories.update(dict.fromkeys(directories))
            self._pending_since = start if self._pending_since is None \
                else min(start, self._pending_since)
        self._schedule()

    # -- sweeps ------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """The sweep: ``quiet`` seconds from now, at most ``max_delay`` after the first
        store not synced yet (one sweep at a time); with nothing to sync, but the state
        file saying otherwise, one to say so."""
        if self._closed or self._sweeping is not None or not (self._files or self._undurable):
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
        try:
            await self._in_thread(sync_later, files, directories)
        except BaseException:  # kept for the next sweep
            self._files[:0] = files
            self._directories.update(dict.fromkeys(directories))
            if since is not None:
                self._pending_since = min(since, self._pending_since or since)
            raise
        self.stats["cache_sweeps"] += 1
        self.stats["cache_files_synced"] += len(files)
        # what is still undurable: linked since the batch was taken, or being linked
        starts = [*self._moving.values()]
        if self._pending_since is not None:
            starts.append(self._pending_since)
        if self._undurable:
            self._write_state(min(starts) if starts else None)

    async def close(self) -> None:
        """At shutdown, once no store is under way: the last sweep; the state file says
        every file is durable. Later stores (none expected) are durable at once. With
        nothing ever stored it uses no thread (a start that failed ends at once)."""
        self._defer = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            if self._sweeping is not None:
                await self._sweeping
            if self._files or (self._undurable and not self._moving):
                await self._sweep()
            if self._writes:
                await self.marked()
        finally:
            self._closed = True
            self._thread.stop()  # (idle by now: a join that does not wait)
