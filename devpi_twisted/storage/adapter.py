"""What every adapter shares: reads from the StateCache, writes as plans, catch-up.

A subclass supplies ``_transact`` (run a write plan in one transaction, retrying
where its database asks for it) and ``_query`` (run a read-only plan); the webhook
methods are in hookmethods.py. After
every write, successful or refused, the adapter reads the changelog entries the
cache has not seen and applies them, so a refused compare-and-swap leaves the
cache current for the caller's retry. Entries committed by other processes
arrive the same way: after our next write, on ``catch_up`` (called on a
PostgreSQL NOTIFY and by the poll), or before a read when the SerialBoard shows
a newer serial than the cache holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredLock, fail, succeed

from devpi_twisted.storage import auditplans, plans, releaseplans, searchplans, tokenplans
from devpi_twisted.storage.board import SerialBoard
from devpi_twisted.storage.hookplans import with_events
from devpi_twisted.storage.hooktypes import HookEvent
from devpi_twisted.storage.cache import StateCache
from devpi_twisted.storage.interface import (
    AuditEntry, AuditQuery, BeforeCommit, Change, DocPage, FileRecord, IndexRecord, MirrorRecord,
    ReleaseDecision, SearchPage, SearchQuery, StorageError, TokenRecord, UserRecord, VersionRecord,
)
from devpi_twisted.storage.hookmethods import HookMethods
from devpi_twisted.storage.types import Now, shielded

__all__ = ["PlanStorage", "shielded"]

T = TypeVar("T")


class PlanStorage(HookMethods):
    dialect = "sqlite"  # which of searchplans' queries this database runs
    blocking_writes = False  # (sqlite's writer thread: True)

    def __init__(self, clock: Now = time.time, board: SerialBoard | None = None) -> None:
        self._clock = clock
        self._board = board
        self._cache = StateCache()
        self._catch_up_lock = DeferredLock()
        self._waiters: list[tuple[int, Deferred[None]]] = []

    # -- for subclasses ------------------------------------------------------------

    def _load(self, snapshot: plans.Snapshot) -> None:
        self._cache.load(snapshot.serial, snapshot.at, snapshot.users, snapshot.indexes,
                         snapshot.mirrors, snapshot.tokens)

    # -- freshness -------------------------------------------------------------------

    def _apply(self, changes: list[Change]) -> None:
        self._cache.apply(changes)
        if self._waiters:
            serial = self._cache.serial
            due = [d for s, d in self._waiters if s <= serial]
            if due:
                self._waiters = [(s, d) for s, d in self._waiters if s > serial]
                for d in due:
                    d.callback(None)

    def wait_for(self, serial: int) -> Deferred[None]:
        """Fires once this process has seen ``serial`` committed (at once if it has).
        Cancelling it (e.g. by ``addTimeout``) forgets the wait."""
        if self._cache.serial >= serial:
            return succeed(None)

        def forget(d: Deferred[None]) -> None:
            self._waiters = [(s, w) for s, w in self._waiters if w is not d]

        waiter: Deferred[None] = Deferred(forget)
        self._waiters.append((serial, waiter))
        return waiter

    async def _catch_up(self, target: int | None) -> None:
        """Read and apply unseen changes; one reader at a time. With a ``target`` serial,
        callers queued behind a catch-up that already got that far read nothing."""
        await self._catch_up_lock.acquire()
        try:
            while target is None or self._cache.serial < target:
                changes = await self._query(plans.changes_since(self._cache.serial))
                self._apply(changes)
                if len(changes) < plans.CATCH_UP_BATCH:
                    return
        finally:
            self._catch_up_lock.release()

    def catch_up(self, target: int | None = None) -> Deferred[None]:
        """Apply every committed change the cache has not seen (up to ``target`` at least)."""
        return shielded(Deferred.fromCoroutine(self._catch_up(target)))

    def sync(self) -> Deferred[None]:
        """Catch up if a process of this host has published a newer serial."""
        if self._board is not None:
            published = self._board.peek()
            if published > self._cache.serial:
                return self.catch_up(published)
        return succeed(None)

    def _read(self, value: Callable[[], T]) -> Deferred[T]:
        return self.sync().addCallback(lambda _: value())

    def _transact_then(self, before_commit: BeforeCommit | None,
                       make: Callable[..., plans.Plan[T]], *args: Any) -> Deferred[T]:
        """``_transact`` with work to do before the commit (``blocking_writes`` only)."""
        raise NotImplementedError

    async def _write_async(self, make: Callable[..., plans.Plan[Change]], *args: Any,
                           before_commit: BeforeCommit | None = None) -> int:
        try:
            change = await (self._transact(make, *args, self._clock()) if before_commit is None
                            else self._transact_then(before_commit, make, *args, self._clock()))
        except StorageError:
            await self._catch_up(None)  # the caller retries on what is current
            raise
        if change.serial == self._cache.serial + 1:
            self._apply([change])  # the next one: no need to read it back
        else:
            await self._catch_up(change.serial)
        if self._board is not None:
            self._board.publish(change.serial)
        return change.serial

    def _write(self, make: Callable[..., plans.Plan[Change]], *args: Any,
               before_commit: BeforeCommit | None = None) -> Deferred[int]:
        return shielded(Deferred.fromCoroutine(self._write_async(make, *args,
                                                                 before_commit=before_commit)))

    async def _import_async(self, changes: Sequence[Change]) -> int:
        try:
            done = await self._transact(plans.import_changes, list(changes), self._clock())
        except StorageError:
            await self._catch_up(None)
            raise
        if not done:
            if changes:
                await self._catch_up(changes[-1].serial)
            return 0
        if done[0].serial == self._cache.serial + 1:
            self._apply(done)
        else:
            await self._catch_up(done[-1].serial)
        if self._board is not None:
            self._board.publish(done[-1].serial)
        return len(done)

    def import_changes(self, changes: Sequence[Change]) -> Deferred[int]:
        """Apply a primary's consecutive changelog entries with their serials, all in one
        transaction (replication): how many were new. Raises StaleRecord when the serial
        before the first new one is missing here (and writes nothing)."""
        return shielded(Deferred.fromCoroutine(self._import_async(changes)))

    def import_change(self, change: Change) -> Deferred[bool]:
        """``import_changes`` of one entry: False if it was applied before."""
        return self.import_changes([change]).addCallback(bool)

    # -- the Storage interface --------------------------------------------------------

    @property
    def serial(self) -> int:
        return self._cache.serial

    @property
    def identity_serial(self) -> int:
        return self._cache.identity_serial

    @property
    def last_commit_time(self) -> float | None:
        return self._cache.last_commit_time

    def get_user(self, name: str) -> Deferred[UserRecord | None]:
        return self._read(lambda: self._cache.users.get(name))

    def list_users(self) -> Deferred[list[UserRecord]]:
        return self._read(lambda: sorted(self._cache.users.values(), key=lambda u: u.name))

    def get_index(self, user: str, index: str) -> Deferred[IndexRecord | None]:
        return self._read(lambda: self._cache.indexes.get((user, index)))

    def list_indexes(self, user: str | None = None) -> Deferred[list[IndexRecord]]:
        return self._read(lambda: self._cache.indexes_of(user))

    def get_token(self, user: str, token_id: str) -> Deferred[TokenRecord | None]:
        return self._read(lambda: self._cache.tokens.get((user, token_id)))

    def list_tokens(self, user: str) -> Deferred[list[TokenRecord]]:
        return shielded(self._query(tokenplans.list_tokens(user)))

    def create_token(self, user: str, token_id: str, value: Mapping[str, Any]) -> Deferred[int]:
        return self._write(tokenplans.create_token, user, token_id, dict(value))

    def delete_token(self, user: str, token_id: str) -> Deferred[int]:
        return self._write(tokenplans.delete_token, user, token_id)

    def record_token_use(self, user: str, token_id: str, at: float) -> Deferred[bool]:
        return shielded(self._transact(tokenplans.record_use, user, token_id, at))

    def changes_since(self, serial: int, limit: int = 1000) -> Deferred[list[Change]]:
        return shielded(self._query(plans.changes_since(serial, limit)))

    def append_audit(self, entries: Sequence[AuditEntry]) -> Deferred[None]:
        return shielded(self._transact(auditplans.append, list(entries)))

    def query_audit(self, query: AuditQuery) -> Deferred[list[AuditEntry]]:
        return shielded(self._query(auditplans.query(query)))

    def prune_audit(self, before: float, keep: int) -> Deferred[int]:
        return shielded(self._transact(auditplans.prune, before, keep))

    def poll(self) -> Deferred[None]:
        """Pick up commits made by other processes."""
        return self.catch_up(None)

    def list_projects(self, user: str, index: str) -> Deferred[list[str]]:
        return shielded(self._query(plans.list_projects(user, index)))

    def get_versions(self, user: str, index: str, project: str) -> Deferred[list[VersionRecord]]:
        return shielded(self._query(plans.get_versions(user, index, project)))

    def get_version(self, user: str, index: str, project: str,
                    version: str) -> Deferred[VersionRecord | None]:
        """From the state cache when written or read lately and its project unchanged
        since (an upload's second file of a version: no trip to the database); a stale
        one is refused by the write's serial check, which catches up (_write_async)."""
        return self.sync().addCallback(lambda _: self._get_version(user, index, project, version))

    def _get_version(self, user: str, index: str, project: str,
                     version: str) -> VersionRecord | None | Deferred[VersionRecord | None]:
        known, record = self._cache.cached_version(user, index, project, version)
        if known:
            return record
        seen = self._cache.serial
        return shielded(self._query(plans.get_version(user, index, project, version))).addCallback(
            self._cache.keep_version, user, index, project, version, seen)

    def get_file(self, relpath: str) -> Deferred[FileRecord | None]:
        return self.sync().addCallback(lambda _: self._get_file(relpath))

    def _get_file(self, relpath: str) -> FileRecord | None | Deferred[FileRecord | None]:
        cached = self._cache.cached_file(relpath)
        if cached is not None:
            return cached
        seen = self._cache.serial
        return shielded(self._query(plans.get_file(relpath))).addCallback(self._cache.keep_file, seen)

    def live_files(self) -> Deferred[list[FileRecord]]:
        return shielded(self._query(plans.live_files()))

    def write_release(self, user: str, index: str, project: str, version: str,
                      data: Mapping[str, Any] | None, files: Mapping[str, Mapping[str, Any]],
                      expect_serial: int, docs: Sequence[DocPage] | None = None,
                      events: Sequence[HookEvent] = (),
                      audit: Sequence[AuditEntry] = ()) -> Deferred[int]:
        plan = with_events(releaseplans.write_release, events)
        return self._write(auditplans.with_audit(plan, audit) if audit else plan, user, index,
                           project, version,
                           None if data is None else dict(data), dict(files), expect_serial,
                           None if docs is None else list(docs))

    def update_release(self, user: str, index: str, project: str, version: str,
                       decide: ReleaseDecision, docs: Sequence[DocPage] | None = None,
                       before_commit: BeforeCommit | None = None) -> Deferred[int]:
        if before_commit is not None and not self.blocking_writes:
            return fail(ValueError("this storage runs no blocking work in its writes"))
        return self._write(releaseplans.update_release, user, index, project, version, decide,
                           None if docs is None else list(docs), before_commit=before_commit)

    def write_doc_pages(self, user: str, index: str, project: str, version: str, name: str,
                        pages: Sequence[DocPage]) -> Deferred[int]:
        return self._write(searchplans.write_doc_pages, user, index, project, version, name,
                           list(pages))

    def get_doc_pages(self, user: str, index: str, project: str,
                      version: str) -> Deferred[list[DocPage]]:
        return shielded(self._query(searchplans.doc_pages(user, index, project, version)))

    def search(self, query: SearchQuery) -> Deferred[SearchPage]:
        return shielded(self._query(searchplans.search(self.dialect, query)))

    def build_search(self) -> Deferred[int]:
        return shielded(self._transact(searchplans.build))

    def search_docs_pending(self) -> Deferred[bool]:
        return shielded(self._query(searchplans.docs_pending()))

    def mark_search_docs_read(self) -> Deferred[None]:
        return shielded(self._transact(searchplans.mark_docs_read))

    def write_releases(self, user: str, index: str,
                       items: Sequence[tuple[str, str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]]
                       ) -> Deferred[int]:
        return self._write(releaseplans.write_releases, user, index,
                           [(p, v, dict(d), dict(f)) for p, v, d, f in items])

    def delete_project(self, user: str, index: str, project: str,
                       expect: Mapping[str, int], events: Sequence[HookEvent] = ()) -> Deferred[int]:
        return self._write(with_events(releaseplans.delete_project, events), user, index, project, dict(expect))

    def get_mirror_project(self, user: str, index: str,
                           project: str) -> Deferred[MirrorRecord | None]:
        return self.sync().addCallback(lambda _: self._get_mirror_project(user, index, project))

    def _get_mirror_project(self, user: str, index: str,
                            project: str) -> MirrorRecord | None | Deferred[MirrorRecord | None]:
        known, cached = self._cache.cached_mirror(user, index, project)
        if known:
            return cached
        seen = self._cache.serial
        return shielded(self._query(plans.get_mirror_project(user, index, project))).addCallback(
            self._cache.keep_mirror, user, index, project, seen)

    def list_mirror_projects(self, user: str, index: str) -> Deferred[list[str]]:
        return shielded(self._query(plans.list_mirror_projects(user, index)))

    def write_mirror_project(self, user: str, index: str, project: str,
                             value: Mapping[str, Any] | None,
                             files: Mapping[str, Mapping[str, Any]]) -> Deferred[int]:
        return self._write(plans.write_mirror_project, user, index, project,
                           None if value is None else dict(value), dict(files))

    def write_mirror_files(self, user: str, index: str, project: str,
                           files: Mapping[str, Mapping[str, Any]]) -> Deferred[int]:
        return self._write(plans.write_mirror_files, user, index, project, dict(files))

    def changed_since(self, project: str, serial: int) -> bool:
        """For caches of pages: did ``project``'s releases or any index config change?"""
        return self._cache.changed_since(project, serial)

    def listing_serial(self, stages: Iterable[str]) -> int:
        return self._cache.listing_serial(stages)

    def bootstrap(self, users: Sequence[UserRecord], indexes: Sequence[IndexRecord]) -> Deferred[int]:
        return self._write(plans.bootstrap, list(users), list(indexes))

    def create_user(self, name: str, profile: Mapping[str, Any], pwhash: str | None) -> Deferred[int]:
        return self._write(plans.create_user, name, profile, pwhash)

    def update_user(self, name: str, profile: Mapping[str, Any], pwhash: str | None,
                    expect_serial: int) -> Deferred[int]:
        return self._write(plans.update_user, name, profile, pwhash, expect_serial)

    def delete_user(self, name: str, expect_serial: int,
                    expect_indexes: Mapping[str, int]) -> Deferred[int]:
        return self._write(plans.delete_user, name, expect_serial, dict(expect_indexes))

    def create_index(self, user: str, index: str, config: Mapping[str, Any],
                     events: Sequence[HookEvent] = ()) -> Deferred[int]:
        return self._write(with_events(plans.create_index, events), user, index, config)

    def update_index(self, user: str, index: str, config: Mapping[str, Any],
                     expect_serial: int, events: Sequence[HookEvent] = ()) -> Deferred[int]:
        return self._write(with_events(plans.update_index, events), user, index, config, expect_serial)

    def delete_index(self, user: str, index: str, expect_serial: int,
                     events: Sequence[HookEvent] = ()) -> Deferred[int]:
        return self._write(with_events(plans.delete_index, events), user, index, expect_serial)
