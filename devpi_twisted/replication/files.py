"""The replica's file queue (spec/ops.md 6.5): the bodies of files whose records were
imported, fetched after their records are committed, in parallel (at most ``workers``
at a time), each fetch retried with back-off on the clock; bodies of deleted files
removed; after a restart, the files whose bodies never came queued again. Indexes in
``skip`` are left to on-demand fetches.

Files are fetched after their records, not before: metadata catches up fast and a big
file never holds back the serials behind it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from devpi_twisted.replication.client import PrimaryUnreachable
from devpi_twisted.replication.fetch import FileFetcher, FileFetchFailed, FileGone
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import FILE, Change, Storage, StorageError

# back-off of the fetches of one file that failed: (initial, maximum s, factor)
# (devpi: 11 s x 1.5^n up to 1 h)
FILE_BACKOFF = (2.0, 3600.0, 1.5)


class FileReplicator:
    """The queue and its workers, from ``start`` until ``stop``; its state (queue length,
    errors, sync times) for the status view."""

    log = Logger()

    def __init__(self, clock: IReactorTime, storage: Storage, blobs: BlobStore,
                 fetcher: FileFetcher, workers: int, delay: Callable[[int], float],
                 skip: Iterable[str] = ()) -> None:
        """``delay(attempt)``: seconds before a failed fetch is tried again; ``skip``:
        user/index names, index types or "all" whose files are not fetched eagerly."""
        self._clock = clock
        self._storage = storage
        self._blobs = blobs
        self._fetcher = fetcher
        self._workers = max(1, workers)
        self._delay = delay
        self._skip = frozenset(skip)
        self._scan: Deferred[None] | None = None
        # relpath -> its entry as last imported (None: read it again), waiting for a fetch
        self._queue: dict[str, Mapping[str, Any] | None] = {}
        self._active: dict[str, Deferred[None]] = {}
        self._attempts: dict[str, int] = {}
        self._retries: dict[str, IDelayedCall] = {}
        self.running = False
        self.held = False  # (hold): no new fetches while the metadata catches up
        self.errors: dict[str, str] = {}
        self.files_in_sync_at: float | None = None
        self.init_queue_finished_at: float | None = None

    def start(self) -> None:
        """Queues the files whose records came but whose bodies did not (a restart)."""
        self.running = True
        self._scan = Deferred.fromCoroutine(self._scan_missing_files())
        self._scan.addErrback(self._scan_failed)

    def _scan_failed(self, failure: Failure) -> None:
        if not isinstance(failure.value, CancelledError):
            self.log.failure("Scanning for missing files failed", failure)

    def stop(self) -> list[Deferred[None]]:
        """Cancels the retries, the scan and the fetches under way; what to wait for."""
        self.running = False
        for call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()
        self._queue.clear()
        pending = [self._scan] if self._scan is not None else []
        pending += list(self._active.values())
        for d in pending:
            d.cancel()
        return pending

    @property
    def file_queue(self) -> int:
        """Files waiting for a fetch, being fetched or waiting for a retry."""
        return len(self._queue) + len(self._active) + len(self._retries)

    async def _scan_missing_files(self) -> None:
        for record in await self._storage.live_files():
            if not await self._blobs.exists(record.relpath):
                self._queue[record.relpath] = record.entry
        self.init_queue_finished_at = self._clock.seconds()
        self._pump()
        self._files_settled()

    def imported(self, change: Change) -> None:
        """The files of an entry just imported: queued, or (deleted) their bodies removed."""
        for record in change.records:
            if record.type != FILE:
                continue
            if record.value.get("entry"):
                self._queue[record.key] = record.value["entry"]
            else:
                self._queue.pop(record.key, None)
                self._drop_later(record.key)
        self._pump()

    def _drop_later(self, relpath: str) -> None:
        """Remove a deleted file's body; after its fetch if one is running."""
        running = self._active.get(relpath)
        if running is not None:
            def again(result: None | Failure) -> None | Failure:
                self._drop_later(relpath)
                return result

            running.addBoth(again)
            return
        Deferred.fromCoroutine(self._drop(relpath)).addErrback(
            lambda f: self.log.failure("Removing a deleted file failed", f))

    async def _drop(self, relpath: str) -> None:
        record = await self._storage.get_file(relpath)
        if record is not None and record.deleted:
            await self._blobs.delete(relpath)

    def hold(self, held: bool) -> None:
        """Start no fetches while ``held``: a replica far behind applies its metadata
        first (the database and the CPU are its alone) and fetches the bodies after;
        a client's on-demand fetch is not held."""
        self.held = held
        if not held:
            self._pump()

    def _pump(self) -> None:
        while self._queue and len(self._active) < self._workers and self.running and not self.held:
            relpath = next(iter(self._queue))
            entry = self._queue.pop(relpath)
            if relpath in self._active:
                continue
            work = Deferred.fromCoroutine(self._replicate(relpath, entry))
            self._active[relpath] = work
            work.addBoth(self._replicated, relpath)

    async def _replicate(self, relpath: str, entry: Mapping[str, Any] | None) -> None:
        """Fetch a file's body unless it is here. With the entry of the change just
        imported no read of the database is needed: a deletion imported meanwhile took
        the file out of the queue, and one arriving during the fetch removes the body
        again (``_drop`` runs after the blob store has it)."""
        if await self._skipped(relpath):
            return
        if entry is None:
            record = await self._storage.get_file(relpath)
            if record is None or record.deleted:
                return
            entry = record.entry
        if await self._blobs.exists(relpath):
            return
        await self._fetcher.fetch(relpath, entry)

    async def _skipped(self, relpath: str) -> bool:
        if not self._skip:
            return False
        if "all" in self._skip:
            return True
        user, index = relpath.split("/", 2)[:2]
        if f"{user}/{index}" in self._skip:
            return True
        found = await self._storage.get_index(user, index)
        return found is not None and found.config.type in self._skip

    def _replicated(self, result: None | Failure, relpath: str) -> None:
        self._active.pop(relpath, None)
        if isinstance(result, Failure):
            if isinstance(result.value, CancelledError):
                return None
            self._failed(relpath, result)
        else:
            self.errors.pop(relpath, None)
            self._attempts.pop(relpath, None)
        self._pump()
        self._files_settled()
        return None

    def _failed(self, relpath: str, failure: Failure) -> None:
        self.errors[relpath] = str(failure.value)
        if isinstance(failure.value, FileGone):
            self.log.warn("Not replicated: {relpath}: {error}", relpath=relpath,
                          error=str(failure.value))
        elif isinstance(failure.value, (FileFetchFailed, PrimaryUnreachable, StorageError)):
            attempt = self._attempts.get(relpath, 0)
            self._attempts[relpath] = attempt + 1
            delay = self._delay(attempt)
            self.log.warn("Fetching {relpath} failed, again in {delay:.1f}s: {error}",
                          relpath=relpath, delay=delay, error=str(failure.value))
            if self.running:
                self._retries[relpath] = self._clock.callLater(delay, self._again, relpath)
        else:
            self.log.failure("Fetching {relpath} failed", failure, relpath=relpath)

    def _again(self, relpath: str) -> None:
        self._retries.pop(relpath, None)
        self._queue[relpath] = None
        self._pump()

    def _files_settled(self) -> None:
        if self.file_queue == 0 and self.init_queue_finished_at is not None:
            self.files_in_sync_at = self._clock.seconds()
