"""The sqlite adapter: a connection in WAL mode used only by one writer thread, and
another used only by one reader thread.

Write plans run on the writer's thread under ``BEGIN IMMEDIATE`` (sqlite's write
lock orders writers of every process). Plans that queue up while a commit is under
way are committed together in the next transaction, each in a savepoint of its own
(group commit: one fsync for all of them; a plan that fails is rolled back alone,
and its caller alone gets the error). Read plans run on the reader's, each in a
transaction of its own (one snapshot), so a read never queues behind a commit's
fsync. Reads of users and indexes come from the cache (adapter.py), so the reactor
never waits for the database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from devpi_twisted.storage import auditplans, migrations, plans
from devpi_twisted.storage.adapter import PlanStorage
from devpi_twisted.storage.board import SerialBoard
from devpi_twisted.storage.driver import drive
from devpi_twisted.storage.executor import Executor
from devpi_twisted.storage.interface import BeforeCommit, Storage, StorageError, StorageUnavailable
from devpi_twisted.storage.types import Now

T = TypeVar("T")
GROUP_COMMIT = 64  # write plans committed in one transaction at most
FSYNC_THREADS = 8  # the fsyncs of a group's uploads at once at most

SELECT_VERSION = "SELECT version FROM schema_version"


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (plans issue BEGIN/COMMIT), WAL, full fsync.
    A new database file is made readable by its owner only (it holds password hashes)."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply pending migrations (copying the file aside first); returns the schema version."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute(SELECT_VERSION).fetchone()
    current = row[0] if row else 0
    pending = [(v, sql) for v, sql in migrations.scripts("sqlite") if v > current]
    latest = migrations.latest("sqlite")
    if current > latest:
        raise StorageError(
            f"{path} has schema version {current}, newer than this devpi-twisted knows ({latest})")
    if pending and current > 0:
        shutil.copy2(path, path.with_name(f"{path.name}.v{current}.bak"))
    for version, sql in pending:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations.statements(sql):
                conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return latest


class SqliteStorage(PlanStorage):
    """Storage on one sqlite file; see the module docstring for the threading."""

    blocking_writes = True  # plans run on the writer's thread

    def __init__(self, conn: sqlite3.Connection, executor: Executor,
                 clock: Now = time.time, board: SerialBoard | None = None,
                 reader: tuple[sqlite3.Connection, Executor] | None = None) -> None:
        """``reader``: a second connection to the same file and where it is used; without
        one, reads share the writer's connection and thread."""
        super().__init__(clock, board)
        self._conn = conn
        self._executor = executor
        self._read_conn, self._reader = reader or (conn, executor)
        self._closed = False  # new writes refused (close() called)
        self._stopped = False  # the connections closed
        # write plans waiting for the commit under way (group commit), and whether one is
        self._queued: list[tuple[Callable[..., plans.Plan[Any]], tuple[Any, ...],
                                 Deferred[Any], BeforeCommit | None]] = []
        self._committing = False
        self._drained: list[Deferred[None]] = []  # close() waiting for the commits
        self._fsyncs: ThreadPoolExecutor | None = None  # (made when a group first needs it)
        self._load(drive(conn.cursor(), plans.snapshot()))

    @classmethod
    def open(cls, path: Path, executor: Executor, clock: Now = time.time,
             board: SerialBoard | None = None, reader: Executor | None = None) -> SqliteStorage:
        """Connect and migrate; blocking, meant for start-up before the reactor runs.
        With a ``reader`` executor, reads get a connection of their own, used there."""
        conn = connect(path)
        # the writer's statement journals (a savepoint per plan) in memory: not a file
        # created and removed per commit (reads keep big sorts on disk)
        conn.execute("PRAGMA temp_store = MEMORY")
        try:
            migrate(conn, path)
            reading = (connect(path), reader) if reader is not None else None
        except BaseException:
            conn.close()
            raise
        return cls(conn, executor, clock, board, reading)

    def _transact(self, make: Callable[..., plans.Plan[T]], *args: Any) -> Deferred[T]:
        return self._transact_then(None, make, *args)

    def _transact_then(self, before_commit: BeforeCommit | None,
                       make: Callable[..., plans.Plan[T]], *args: Any) -> Deferred[T]:
        if self._closed:
            return fail(StorageUnavailable("sqlite: the storage is closed"))
        done: Deferred[T] = Deferred()
        self._queued.append((make, args, done, before_commit))
        if not self._committing:
            self._commit_queued()
        return done

    def _commit_queued(self) -> None:
        batch, self._queued = self._queued[:GROUP_COMMIT], self._queued[GROUP_COMMIT:]
        self._committing = True
        self._executor.run(self._transact_txn, [(make, args, before) for make, args, _, before in batch]
                           ).addBoth(self._committed, [done for _, _, done, _ in batch])

    def _committed(self, outcomes: list[Any] | Failure, waiting: list[Deferred[Any]]) -> None:
        self._committing = False
        for done, outcome in zip(waiting, outcomes if isinstance(outcomes, list)
                                 else [outcomes] * len(waiting)):
            if isinstance(outcome, (Failure, Exception)):
                done.errback(outcome)
            else:
                done.callback(outcome)
        if self._queued and not self._committing:  # (a callback may have started one)
            self._commit_queued()
        elif not self._committing:
            drained, self._drained = self._drained, []
            for closing in drained:
                closing.callback(None)

    def _transact_txn(self, batch: list[tuple[Callable[..., plans.Plan[Any]], tuple[Any, ...],
                                              BeforeCommit | None]]) -> list[Any]:
        """Run write plans in one transaction, each in a savepoint: its result, or the
        exception it raised (its changes rolled back), in order. A plan's ``before``
        (update_release's before_commit) runs once the plan succeeded (what it raises
        fails that plan alone); the work it hands back (fsyncs) runs for all of them
        before the COMMIT, so concurrent uploads share their file system's journal
        commits as they share the database's fsync. The database failing (locked too
        long, I/O error), or that work, fails them all: StorageUnavailable."""
        conn = self._conn
        outcomes: list[Any] = []
        durable: list[Callable[[], None]] = []
        lazy = all(make in auditplans.LAZY for make, _, _ in batch)
        try:
            if lazy:  # (not in a transaction: sqlite takes the setting between them)
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for make, args, before in batch:
                    conn.execute("SAVEPOINT plan")
                    try:
                        outcome = drive(conn.cursor(), make(*args))
                        if before is not None:
                            durable.append(before())
                    except sqlite3.OperationalError:
                        raise
                    except Exception as e:  # the plan refused: its caller's error
                        outcome = e
                        conn.execute("ROLLBACK TO plan")
                    outcomes.append(outcome)
                    conn.execute("RELEASE plan")
                try:
                    self._make_durable(durable)
                except OSError as e:
                    raise StorageUnavailable(f"sqlite: stored files not made durable: {e}") from e
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            raise StorageUnavailable(f"sqlite: {e}") from e
        finally:
            if lazy:
                conn.execute("PRAGMA synchronous = FULL")
        return outcomes

    def _make_durable(self, durable: list[Callable[[], None]]) -> None:
        """Run the fsyncs of the writes of one transaction, those of different writes at
        the same time (each fsync waits for the disk; one after another, a group of
        uploads would wait for each in turn)."""
        if len(durable) <= 1:
            for sync in durable:
                sync()
            return
        if self._fsyncs is None:
            self._fsyncs = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="devpi-fsync")
        for done in [self._fsyncs.submit(sync) for sync in durable]:
            done.result()

    def _query_txn(self, plan: plans.Plan[T]) -> T:
        conn = self._read_conn
        try:
            if conn is self._conn:  # the writer's thread: no write is open here
                return drive(conn.cursor(), plan)
            conn.execute("BEGIN")
            try:
                return drive(conn.cursor(), plan)
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            raise StorageUnavailable(f"sqlite: {e}") from e

    def _query(self, plan: plans.Plan[T]) -> Deferred[T]:
        if self._stopped:
            return fail(StorageUnavailable("sqlite: the storage is closed"))
        return self._reader.run(self._query_txn, plan)

    def close(self) -> Deferred[None]:
        """Refuse new writes; stop once those asked for before are committed."""
        self._closed = True
        if self._committing:
            drained: Deferred[None] = Deferred()
            self._drained.append(drained)
            return drained.addCallback(lambda _: self._stop())
        return self._stop()

    def _stop(self) -> Deferred[None]:
        if not self._stopped:
            self._stopped = True
            self._executor.stop()
            if self._fsyncs is not None:
                self._fsyncs.shutdown(wait=False)
            self._conn.close()
            if self._read_conn is not self._conn:
                self._reader.stop()
                self._read_conn.close()
        return succeed(None)


def _conforms_sqlite(storage: SqliteStorage) -> Storage:
    """For mypy: a SqliteStorage is a Storage."""
    return storage
