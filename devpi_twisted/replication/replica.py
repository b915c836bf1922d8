"""The replica's loop (spec/ops.md 6.3-6.6): a Service on the reactor that long-polls
the primary's changelog and imports every entry in serial order, each in one local
transaction under the primary's serial; then fetches the file bodies those entries
reference, in parallel (bounded), hash-checked, retried with back-off.

Files are fetched after their records are committed, not before: metadata catches up
fast and a big file never holds back the serials behind it. A file whose record
arrived but whose body has not is fetched from the primary on demand when a client
asks for it (``fetch_now``), so installers never wait for the loop.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import treq
from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from devpi_twisted.replication import protocol
from devpi_twisted.replication.client import PrimaryClient, PrimaryUnreachable, header
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import FILE, Change, Storage, StorageError

POLL_TIMEOUT = protocol.LONG_POLL + 7.5
# back-off (initial, maximum seconds, factor): polls while the primary is down or
# failing, and fetches of one file that failed (devpi: 11 s x 1.5^n up to 1 h)
POLL_BACKOFF = (0.5, 5.0, 1.5)
FILE_BACKOFF = (2.0, 3600.0, 1.5)
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "expect", "date", "server"})
# Answer headers the replica sets itself.
OWN_HEADERS = HOP_BY_HOP | {h.lower() for h in (
    "X-Devpi-Serial", "X-Devpi-Uuid", "X-Devpi-Primary-Uuid", "X-Devpi-Master-Uuid",
    "X-Devpi-Api-Version", "X-Devpi-Server-Version")}


class FileFetchFailed(Exception):
    """A file body could not be had from the primary (status, hash or size wrong)."""


class FileGone(FileFetchFailed):
    """The primary no longer has the file (404/410): retrying will not help."""


class Replica(Service):
    log = Logger()

    def __init__(self, storage: Storage, blobs: BlobStore, client: PrimaryClient, reactor: Any,
                 staging: Path, offload: Callable[..., Deferred[Any]],
                 remember_primary: Callable[[str], None], file_threads: int = 5,
                 request_timeout: float = 5.0, clock: Callable[[], float] = time.time,
                 poll_delay: Callable[[int], float] | None = None,
                 file_delay: Callable[[int], float] | None = None,
                 skip_indexes: tuple[str, ...] = ()) -> None:
        """``skip_indexes``: user/index names, index types or "all" whose files are not
        fetched eagerly (only on demand)."""
        self._skip = frozenset(skip_indexes)
        self._storage = storage
        self._blobs = blobs
        self._client = client
        self._reactor = reactor
        self._staging = staging
        self._offload = offload
        self._remember_primary = remember_primary
        self._threads = max(1, file_threads)
        self._timeout = request_timeout
        self._clock = clock
        self._poll_delay = poll_delay or backoffPolicy(*POLL_BACKOFF)
        self._file_delay = file_delay or backoffPolicy(*FILE_BACKOFF)
        self._task: Deferred[None] | None = None
        self._scan: Deferred[None] | None = None
        # relpath -> its entry as last imported (None: read it again), waiting for a fetch
        self._queue: dict[str, Mapping[str, Any] | None] = {}
        self._active: dict[str, Deferred[None]] = {}
        self._attempts: dict[str, int] = {}
        self._retries: dict[str, Any] = {}  # relpath -> IDelayedCall
        self.errors: dict[str, str] = {}
        self.primary_serial: int | None = None
        self.primary_serial_at: float | None = None
        self.last_contact: float | None = None
        self.updated_at: float | None = None
        self.metadata_in_sync_at: float | None = None
        self.files_in_sync_at: float | None = None
        self.init_queue_finished_at: float | None = None
        self.started_at: float | None = None
        self.stopped_reason: str | None = None
        self.files_fetched = 0

    # -- the service ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.started_at = self._clock()
        self._task = Deferred.fromCoroutine(self._run())
        self._task.addErrback(self._ended)

    def _ended(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            self.log.failure("The replication loop ended", failure)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        for call in self._retries.values():
            if call.active():
                call.cancel()
        self._retries.clear()
        self._queue.clear()
        pending = [d for d in (self._task, self._scan) if d is not None]
        pending += list(self._active.values())
        for d in pending:
            d.cancel()
        self._task = None
        return defer.DeferredList(pending, consumeErrors=True).addCallback(lambda _: None)

    async def _run(self) -> None:
        self._scan = Deferred.fromCoroutine(self._scan_missing_files())
        self._scan.addErrback(lambda f: None if f.check(CancelledError) else self.log.failure(
            "Scanning for missing files failed", f))
        await self._follow()

    async def _scan_missing_files(self) -> None:
        """After a restart: queue the files whose records came but whose bodies did not."""
        for record in await self._storage.live_files():
            if not await self._blobs.exists(record.relpath):
                self._queue[record.relpath] = record.entry
        self.init_queue_finished_at = self._clock()
        self._pump()
        self._files_settled()

    # -- following the changelog --------------------------------------------------------

    async def _follow(self) -> None:
        first, failures = True, 0
        while self.running:
            start = self._storage.serial + 1
            path = f"/+changelog/{start}-" + ("?initial_fetch" if first else "")
            try:
                ok = await self._poll(path, start)
                first = False
            except (PrimaryUnreachable, protocol.MalformedChanges, StorageError) as e:
                self.log.warn("Replication from {primary} failed, retrying: {error}",
                              primary=self._client.url, error=str(e))
                ok = False
            except CancelledError:
                raise
            except Exception:  # a bug: logged with its traceback, and the loop goes on
                self.log.failure("Replication from {primary} failed", primary=self._client.url)
                ok = False
            if self.stopped_reason is not None:
                return
            if ok:
                failures = 0
                continue
            await deferLater(self._reactor, self._poll_delay(failures), lambda: None)
            failures += 1

    async def _poll(self, path: str, start: int) -> bool:
        response = await self._client.get(path, POLL_TIMEOUT, Accept=protocol.CHANGES_TYPE)
        try:
            body = await treq.content(response)
        except CancelledError:
            raise
        except Exception as e:
            raise PrimaryUnreachable(f"reading the changelog broke off: {e}") from None
        if response.code not in (200, 202):
            self.log.warn("The primary answered {code} to {path}: {body}", code=response.code,
                          path=path, body=body[:200].decode("utf-8", "replace"))
            named = header(response, protocol.PRIMARY_UUID) or header(response, protocol.MASTER_UUID)
            if self._client.primary_uuid and named and named != self._client.primary_uuid:
                self._check_primary(response)  # another primary answers there: stop
            return False
        if not self._check_primary(response):
            return False
        self.last_contact = self._clock()
        serial = _int(header(response, protocol.SERIAL))
        if serial is not None and serial != self.primary_serial:
            self.primary_serial, self.primary_serial_at = serial, self._clock()
        if response.code == 200:
            for change in protocol.decode_changes(body, start):
                await self._storage.import_change(change)
                self.updated_at = self._clock()
                self._files_of(change)
        if self.primary_serial is not None and self._storage.serial >= self.primary_serial:
            self.metadata_in_sync_at = self._clock()
        return True

    def _check_primary(self, response: Any) -> bool:
        """The primary's uuid: learned once (and kept), then must never change (ops.md 6.1)."""
        primary = header(response, protocol.PRIMARY_UUID)
        master = header(response, protocol.MASTER_UUID)
        if (primary and master and primary != master) or not (primary or master):
            self.log.error("The primary's reply names no uuid, or two: {primary} {master}",
                           primary=primary, master=master)
            return False
        uuid = primary or master or ""
        if not self._client.primary_uuid:
            self._client.primary_uuid = uuid
            self._remember_primary(uuid)
        elif uuid != self._client.primary_uuid:
            self.stopped_reason = (f"the primary's uuid changed from {self._client.primary_uuid} "
                                   f"to {uuid}; replication stopped (this replica will not mix "
                                   "two histories)")
            self.log.error("{reason}", reason=self.stopped_reason)
            return False
        return True

    # -- file bodies ----------------------------------------------------------------------

    def _files_of(self, change: Change) -> None:
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
            running.addBoth(lambda result: (self._drop_later(relpath), result)[1])
            return
        Deferred.fromCoroutine(self._drop(relpath)).addErrback(
            lambda f: self.log.failure("Removing a deleted file failed", f))

    async def _drop(self, relpath: str) -> None:
        record = await self._storage.get_file(relpath)
        if record is not None and record.deleted:
            await self._blobs.delete(relpath)

    def _pump(self) -> None:
        while self._queue and len(self._active) < self._threads and self.running:
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
        await self._fetch(relpath, entry)

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

    def _replicated(self, result: Any, relpath: str) -> None:
        self._active.pop(relpath, None)
        if isinstance(result, Failure):
            if result.check(CancelledError):
                return None
            self.errors[relpath] = str(result.value)
            if result.check(FileGone):
                self.log.warn("Not replicated: {relpath}: {error}", relpath=relpath,
                              error=str(result.value))
            elif result.check(FileFetchFailed, PrimaryUnreachable, StorageError):
                attempt = self._attempts.get(relpath, 0)
                self._attempts[relpath] = attempt + 1
                delay = self._file_delay(attempt)
                self.log.warn("Fetching {relpath} failed, again in {delay:.1f}s: {error}",
                              relpath=relpath, delay=delay, error=str(result.value))
                if self.running:
                    self._retries[relpath] = self._reactor.callLater(delay, self._again, relpath)
            else:
                self.log.failure("Fetching {relpath} failed", result, relpath=relpath)
        else:
            self.errors.pop(relpath, None)
            self._attempts.pop(relpath, None)
        self._pump()
        self._files_settled()
        return None

    def _again(self, relpath: str) -> None:
        self._retries.pop(relpath, None)
        self._queue[relpath] = None
        self._pump()

    async def fetch_now(self, relpath: str) -> bool:
        """On demand: a file whose record is here and whose body is not, fetched from the
        primary now (a client waits). False if there is no such live record."""
        record = await self._storage.get_file(relpath)
        if record is None or record.deleted:
            return False
        await self._fetch(relpath, record.entry)
        return True

    async def _fetch(self, relpath: str, entry: Mapping[str, Any]) -> None:
        expected = (entry.get("hashes") or {}).get("sha256")
        path, size, sha256 = await self.download(relpath)
        try:
            if expected and sha256 != expected:
                raise FileFetchFailed(f"{relpath}: sha256 {sha256}, expected {expected}")
            if entry.get("size") not in (None, 0, size):
                raise FileFetchFailed(f"{relpath}: {size} bytes, expected {entry.get('size')}")
            await self._blobs.move_in([(relpath, path, sha256)])
            self.files_fetched += 1
        finally:
            await self._offload(_remove, path)

    async def download(self, relpath: str) -> tuple[Path, int, str]:
        """The primary's body of ``relpath`` in a staging file: (path, size, sha256). The
        caller owns (and removes) the file. FileGone on 404/410, FileFetchFailed else."""
        response = await self._client.get("/" + quote(relpath), self._timeout, file=True,
                                          unbuffered=True)
        if response.code != 200:
            await treq.content(response)
            error = f"{response.code} from the primary for {relpath}"
            raise (FileGone if response.code in (404, 410) else FileFetchFailed)(error)
        path, spool = await self._offload(_open_spool, self._staging)
        writer = _Spool(spool, self._offload)
        try:
            try:
                await treq.collect(response, writer.write)
            except CancelledError:
                raise
            except Exception as e:
                raise FileFetchFailed(f"{relpath}: the body broke off: {e}") from None
            finally:
                await writer.close()
            if isinstance(response.length, int) and writer.size != response.length:
                raise FileFetchFailed(f"{relpath}: {writer.size} of {response.length} bytes")
        except BaseException:
            await self._offload(_remove, path)
            raise
        return path, writer.size, writer.sha256.hexdigest()

    # -- mirror pages through the primary (mirror.md 10) -------------------------------

    async def mirror_page(self, name: str, project: str) -> str:
        """Have the primary bring its page of ``project`` up to date, then wait until
        that serial is imported here: "fresh", or "missing" when the primary has none."""
        response = await self._client.get(f"/{name}/+simple/{quote(project)}/", self._timeout,
                                          Accept="application/vnd.pypi.simple.v1+json")
        await treq.content(response)
        if response.code == 404:
            return "missing"
        serial = _int(header(response, protocol.SERIAL))
        if response.code != 200 or serial is None:
            raise PrimaryUnreachable(f"{response.code} from the primary for {name}/{project}")
        await self.wait_for(serial, self._timeout)
        return "fresh"

    async def wait_for(self, serial: int, timeout: float) -> None:
        """Until ``serial`` is imported here; PrimaryUnreachable after ``timeout``."""
        waiting = self._storage.wait_for(serial)
        waiting.addTimeout(timeout, self._reactor)
        try:
            await waiting
        except defer.TimeoutError:
            raise PrimaryUnreachable(
                f"serial {serial} was not replicated within {timeout:g}s") from None

    # -- writes through the replica (ops.md 6.6) ---------------------------------------

    async def relay(self, method: str, path: str, headers: Mapping[str, list[str]],
                    body: IO[bytes] | None, timeout: float) -> tuple[int, bytes, list[tuple[str, str]], bytes]:
        """Send a write to the primary; once it succeeded, wait (up to ``timeout``) until
        its serial is imported here. (status, reason, headers to pass on, body)."""
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        response = await self._client.request(method, path, timeout, sent, data=body)
        content = await treq.content(response)
        serial = _int(header(response, protocol.SERIAL))
        if response.code < 400 and serial is not None:
            try:
                await self.wait_for(serial, timeout)
            except PrimaryUnreachable as e:
                self.log.warn("Answering a relayed write before it arrived here: {error}",
                              error=str(e))
        passed = [(name.decode("latin-1"), value.decode("latin-1"))
                  for name, values in response.headers.getAllRawHeaders()
                  if name.decode("latin-1").lower() not in OWN_HEADERS for value in values]
        return response.code, response.phrase, passed, content

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The replica's part of ``/+status`` (api.md 3.4), plus its lag and file queue."""
        now = self._clock()
        serial = self._storage.serial
        behind = None if self.primary_serial is None else max(0, self.primary_serial - serial)
        if behind == 0:
            lag_seconds = 0.0
        else:  # since it was last in sync (or started)
            lag_seconds = now - (self.metadata_in_sync_at or self.started_at or now)
        stamps = (self.metadata_in_sync_at, self.files_in_sync_at, self.init_queue_finished_at)
        found = {
            "primary-url": self._client.url, "primary-uuid": self._client.primary_uuid,
            "primary-serial": self.primary_serial,
            "primary-serial-timestamp": self.primary_serial_at,
            "primary-contacted-at": self.last_contact, "update-from-primary-at": self.updated_at,
        }
        found.update({k.replace("primary", "master"): v for k, v in found.items()})
        found.update({
            "replica-started-at": self.started_at,
            "replica-files-in-sync-at": self.files_in_sync_at,
            "replica-init-queue-finished-at": self.init_queue_finished_at,
            "replica-metadata-in-sync-at": self.metadata_in_sync_at,
            "replica-in-sync-at": None if None in stamps else max(stamps),  # type: ignore[type-var]
            "replication-errors": dict(self.errors),
            "replication-lag": {"serials": behind, "seconds": lag_seconds},
            "replica-file-queue": self.file_queue,
            "replica-files-fetched": self.files_fetched,
            "replication-stopped": self.stopped_reason,
        })
        return found

    @property
    def file_queue(self) -> int:
        """Files waiting for a fetch, being fetched or waiting for a retry."""
        return len(self._queue) + len(self._active) + len(self._retries)

    def _files_settled(self) -> None:
        if self.file_queue == 0 and self.init_queue_finished_at is not None:
            self.files_in_sync_at = self._clock()


class _Spool:
    """Body chunks written to a file on threads, in order, hashed as they arrive."""

    def __init__(self, file: IO[bytes], offload: Callable[..., Deferred[Any]]) -> None:
        self._file = file
        self._offload = offload
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._tail: Deferred[Any] = defer.succeed(None)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= 1 << 20:
            self._flush()

    def _flush(self) -> None:
        chunk, self._pending, self._pending_size = b"".join(self._pending), [], 0
        if chunk:
            self._tail.addCallback(lambda _: self._offload(self._file.write, chunk))

    async def close(self) -> None:
        self._flush()
        self._tail.addBoth(lambda result: self._offload(self._file.close).addCallback(
            lambda _: result))
        await self._tail


def _open_spool(staging: Path) -> tuple[Path, IO[bytes]]:
    fd, name = tempfile.mkstemp(dir=staging, prefix="replica-")
    return Path(name), os.fdopen(fd, "wb")


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
