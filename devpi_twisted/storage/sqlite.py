"""The sqlite adapter: one connection, used only by one writer thread, in WAL mode.

User and index reads are answered from the in-memory StateCache. After every
write transaction the writer thread reads every changelog entry it has not yet
seen (its own commit, and any other process's, e.g. ``devpi-twisted passwd``
run beside the server) and the reactor thread applies them to the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed

from devpi_twisted.storage import migrations
from devpi_twisted.storage.cache import StateCache
from devpi_twisted.storage.executor import Executor
from devpi_twisted.storage.interface import (
    INDEX, USER, Change, IndexRecord, Record, RecordExists, RecordMissing, StaleRecord,
    StorageError, StorageUnavailable, UserRecord,
)

T = TypeVar("T")

SELECT_VERSION = "SELECT version FROM schema_version"
NEXT_SERIAL = "SELECT COALESCE(MAX(serial), -1) + 1 FROM changelog"
LAST_CHANGE = "SELECT serial, at FROM changelog ORDER BY serial DESC LIMIT 1"
INSERT_CHANGE = "INSERT INTO changelog (serial, at, records) VALUES (?, ?, ?)"
CHANGES_SINCE = "SELECT serial, at, records FROM changelog WHERE serial > ? ORDER BY serial LIMIT ?"
ALL_USERS = "SELECT name, profile, pwhash, serial FROM users"
ALL_INDEXES = "SELECT user, name, config, serial FROM indexes"
USER_SERIAL = "SELECT serial FROM users WHERE name = ?"
INDEX_SERIAL = "SELECT serial FROM indexes WHERE user = ? AND name = ?"
INDEXES_OF = "SELECT name, serial FROM indexes WHERE user = ?"
UPSERT_USER = (
    "INSERT INTO users (name, profile, pwhash, serial) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET profile = excluded.profile, "
    "pwhash = excluded.pwhash, serial = excluded.serial")
DELETE_USER = "DELETE FROM users WHERE name = ?"
UPSERT_INDEX = (
    "INSERT INTO indexes (user, name, config, serial) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (user, name) DO UPDATE SET config = excluded.config, serial = excluded.serial")
DELETE_INDEX = "DELETE FROM indexes WHERE user = ? AND name = ?"

CHANGES_BATCH = 10000


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT), WAL, full fsync.
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
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return latest


def _change_from_row(row: tuple[int, float, str]) -> Change:
    serial, at, records = row
    return Change(serial, at, tuple(Record.from_json(r) for r in json.loads(records)))


class SqliteStorage:
    """Storage on one sqlite file; see the module docstring for the threading."""

    def __init__(self, conn: sqlite3.Connection, executor: Executor,
                 clock: Callable[[], float] = time.time) -> None:
        self._conn = conn
        self._executor = executor
        self._clock = clock
        self._cache = StateCache()
        users = [UserRecord(n, json.loads(p), h, s) for n, p, h, s in conn.execute(ALL_USERS)]
        indexes = [IndexRecord(u, n, json.loads(c), s) for u, n, c, s in conn.execute(ALL_INDEXES)]
        last = conn.execute(LAST_CHANGE).fetchone()
        self._cache.load(last[0] if last else -1, last[1] if last else None, users, indexes)
        self._seen = self._cache.serial  # owned by the writer thread from here on

    @classmethod
    def open(cls, path: Path, executor: Executor, clock: Callable[[], float] = time.time) -> SqliteStorage:
        """Connect and migrate; blocking, meant for start-up before the reactor runs."""
        conn = connect(path)
        try:
            migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(conn, executor, clock)

    # -- reads -----------------------------------------------------------------

    @property
    def serial(self) -> int:
        return self._cache.serial

    @property
    def last_commit_time(self) -> float | None:
        return self._cache.last_commit_time

    def get_user(self, name: str) -> Deferred[UserRecord | None]:
        return succeed(self._cache.users.get(name))

    def list_users(self) -> Deferred[list[UserRecord]]:
        return succeed(sorted(self._cache.users.values(), key=lambda u: u.name))

    def get_index(self, user: str, index: str) -> Deferred[IndexRecord | None]:
        return succeed(self._cache.indexes.get((user, index)))

    def list_indexes(self, user: str | None = None) -> Deferred[list[IndexRecord]]:
        return succeed(self._cache.indexes_of(user))

    def changes_since(self, serial: int, limit: int = 1000) -> Deferred[list[Change]]:
        def read(conn: sqlite3.Connection) -> list[Change]:
            return [_change_from_row(r) for r in conn.execute(CHANGES_SINCE, (serial, limit))]
        return self._executor.run(self._guarded, read)

    def poll(self) -> Deferred[None]:
        """Pick up commits made by other processes since the last write or poll."""
        return self._write(lambda conn: None, transaction=False)

    # -- writes ----------------------------------------------------------------

    def bootstrap(self, users: Sequence[UserRecord], indexes: Sequence[IndexRecord]) -> Deferred[int]:
        def txn(conn: sqlite3.Connection) -> int:
            if conn.execute(LAST_CHANGE).fetchone() is not None:
                raise RecordExists("the database already holds a server state")
            records = [self._user_record(u.name, u.profile, u.pwhash) for u in users]
            records += [Record(INDEX, i.name, dict(i.config)) for i in indexes]
            return self._commit(conn, records)
        return self._write(txn)

    def create_user(self, name: str, profile: Mapping[str, Any], pwhash: str | None) -> Deferred[int]:
        def txn(conn: sqlite3.Connection) -> int:
            if conn.execute(USER_SERIAL, (name,)).fetchone() is not None:
                raise RecordExists(name)
            return self._commit(conn, [self._user_record(name, profile, pwhash)])
        return self._write(txn)

    def update_user(self, name: str, profile: Mapping[str, Any], pwhash: str | None,
                    expect_serial: int) -> Deferred[int]:
        def txn(conn: sqlite3.Connection) -> int:
            self._expect(conn.execute(USER_SERIAL, (name,)).fetchone(), expect_serial, name)
            return self._commit(conn, [self._user_record(name, profile, pwhash)])
        return self._write(txn)

    def delete_user(self, name: str, expect_serial: int,
                    expect_indexes: Mapping[str, int]) -> Deferred[int]:
        def txn(conn: sqlite3.Connection) -> int:
            self._expect(conn.execute(USER_SERIAL, (name,)).fetchone(), expect_serial, name)
            indexes = dict(conn.execute(INDEXES_OF, (name,)).fetchall())
            if indexes != dict(expect_indexes):
                raise StaleRecord(f"indexes of {name}")
            records = [Record(INDEX, f"{name}/{i}", None) for i in sorted(indexes)]
            return self._commit(conn, records + [Record(USER, name, None)])
        return self._write(txn)

    def create_index(self, user: str, index: str, config: Mapping[str, Any]) -> Deferred[int]:
        def txn(conn: sqlite3.Connection) -> int:
            if conn.execute(USER_SERIAL, (user,)).fetchone() is None:
                raise RecordMissing(user)
            if conn.execute(INDEX_SERIAL, (user, index)).fetchone() is not None:
                raise RecordExists(f"{user}/{index}")
            return self._commit(conn, [Record(INDEX, f"{user}/{index}", dict(config))])
        return self._write(txn)

    def update_index(self, user: str, index: str, config: Mapping[str, Any],
                     expect_serial: int) -> Deferred[int]:
        def txn(conn: sqlite3.Connection) -> int:
            row = conn.execute(INDEX_SERIAL, (user, index)).fetchone()
            self._expect(row, expect_serial, f"{user}/{index}")
            return self._commit(conn, [Record(INDEX, f"{user}/{index}", dict(config))])
        return self._write(txn)

    def delete_index(self, user: str, index: str, expect_serial: int) -> Deferred[int]:
        def txn(conn: sqlite3.Connection) -> int:
            row = conn.execute(INDEX_SERIAL, (user, index)).fetchone()
            self._expect(row, expect_serial, f"{user}/{index}")
            return self._commit(conn, [Record(INDEX, f"{user}/{index}", None)])
        return self._write(txn)

    def close(self) -> Deferred[None]:
        self._executor.stop()
        self._conn.close()
        return succeed(None)

    # -- internals (the _txn side runs on the writer thread) -------------------

    @staticmethod
    def _user_record(name: str, profile: Mapping[str, Any], pwhash: str | None) -> Record:
        return Record(USER, name, {"profile": dict(profile), "pwhash": pwhash})

    @staticmethod
    def _expect(row: tuple[int] | None, expect_serial: int, what: str) -> None:
        if row is None:
            raise RecordMissing(what)
        if row[0] != expect_serial:
            raise StaleRecord(what)

    def _commit(self, conn: sqlite3.Connection, records: list[Record]) -> int:
        serial = conn.execute(NEXT_SERIAL).fetchone()[0]
        for record in records:
            self._apply(conn, serial, record)
        payload = json.dumps([r.to_json() for r in records], separators=(",", ":"))
        conn.execute(INSERT_CHANGE, (serial, self._clock(), payload))
        return int(serial)

    @staticmethod
    def _apply(conn: sqlite3.Connection, serial: int, record: Record) -> None:
        value = record.value
        if record.type == USER:
            if value is None:
                conn.execute(DELETE_USER, (record.key,))
            else:
                conn.execute(UPSERT_USER, (record.key, _dumps(value["profile"]), value["pwhash"], serial))
        elif record.type == INDEX:
            user, index = record.key.split("/", 1)
            if value is None:
                conn.execute(DELETE_INDEX, (user, index))
            else:
                conn.execute(UPSERT_INDEX, (user, index, _dumps(value), serial))
        else:
            raise StorageError(f"unknown record type {record.type!r}")

    def _guarded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._conn)
        except sqlite3.OperationalError as e:
            raise StorageUnavailable(f"sqlite: {e}") from e

    def _write_txn(self, fn: Callable[[sqlite3.Connection], T], transaction: bool
                   ) -> tuple[T | None, BaseException | None, list[Change]]:
        conn = self._conn
        result: T | None = None
        error: BaseException | None = None
        try:
            if transaction:
                conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                if transaction:
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except StorageError as e:
            error = e
        except sqlite3.OperationalError as e:
            error = StorageUnavailable(f"sqlite: {e}")
        rows = conn.execute(CHANGES_SINCE, (self._seen, CHANGES_BATCH)).fetchall()
        changes = [_change_from_row(r) for r in rows]
        if changes:
            self._seen = changes[-1].serial
        return result, error, changes

    def _write(self, fn: Callable[[sqlite3.Connection], T], transaction: bool = True) -> Deferred[T]:
        def applied(outcome: tuple[T | None, BaseException | None, list[Change]]) -> T:
            result, error, changes = outcome
            self._cache.apply(changes)
            if error is not None:
                raise error
            return result  # type: ignore[return-value]
        return self._executor.run(self._write_txn, fn, transaction).addCallback(applied)
