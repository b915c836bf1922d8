"""What only the sqlite adapter does: its file, its migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from devpi_twisted.storage import migrations
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.interface import RecordExists, StorageError, StorageUnavailable
from devpi_twisted.storage.sqlite import SqliteStorage


def test_new_database_records_its_schema_version_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    SqliteStorage.open(path, InlineExecutor()).close()
    conn = sqlite3.connect(str(path))
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(migrations.latest("sqlite"),)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    assert path.stat().st_mode & 0o077 == 0


def test_reopening_applies_no_migration_twice(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    for _ in range(3):
        SqliteStorage.open(path, InlineExecutor()).close()
    conn = sqlite3.connect(str(path))
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    conn.close()


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    SqliteStorage.open(path, InlineExecutor()).close()
    conn = sqlite3.connect(str(path))
    conn.execute("UPDATE schema_version SET version = 999")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="newer than this devpi-twisted knows"):
        SqliteStorage.open(path, InlineExecutor())


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [v for v, _ in migrations.scripts("sqlite")]
    assert versions == list(range(1, len(versions) + 1))


class HeldExecutor:
    """Runs each call inline, but only when the test releases it."""

    def __init__(self) -> None:
        self.held: list[tuple[Any, tuple[Any, ...], Deferred[Any]]] = []
        self.ran: list[str] = []  # the names of the calls run

    def run(self, fn: Any, *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.held.append((fn, args, done))
        return done

    def release(self) -> None:
        fn, args, done = self.held.pop(0)
        self.ran.append(fn.__name__)
        try:
            result = fn(*args)
        except BaseException:
            done.errback()
        else:
            done.callback(result)

    def drain(self) -> None:
        while self.held:
            self.release()

    def stop(self) -> None:
        pass


def test_writes_queued_during_a_commit_are_committed_together_each_on_its_own(
        tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    executor = HeldExecutor()
    storage = SqliteStorage.open(path, executor)
    outcomes: dict[int, Any] = {}
    for i, name in enumerate(("alice", "bob", "alice", "carol")):
        storage.create_user(name, {"email": f"{name}@example.org"}, None).addBoth(
            lambda result, i=i: outcomes.__setitem__(i, result))
    assert len(executor.held) == 1  # alice's commit is under way, the others wait
    executor.release()
    assert outcomes == {0: storage.serial}
    assert len(executor.held) == 1  # the three queued ones: one transaction
    executor.drain()  # (and the read of the changelog after the refusal)
    assert executor.ran.count("_transact_txn") == 2
    first = outcomes[0]
    assert outcomes[1] == first + 1 and outcomes[3] == first + 2  # no gap for the refusal
    assert isinstance(outcomes[2], Failure) and outcomes[2].check(RecordExists)
    assert storage.serial == first + 2
    storage.close()
    reopened = SqliteStorage.open(path, InlineExecutor())
    users = {u.name: u.serial for u in reopened.list_users().result}
    assert users == {"alice": first, "bob": first + 1, "carol": first + 2}
    assert [c.serial for c in reopened.changes_since(first - 1).result] == \
        [first, first + 1, first + 2]
    reopened.close()


def test_a_database_error_fails_every_write_of_the_transaction(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    executor = HeldExecutor()
    storage = SqliteStorage.open(path, executor)
    outcomes: list[Any] = []
    for name in ("alice", "bob", "carol"):
        storage.create_user(name, {}, None).addBoth(outcomes.append)
    executor.release()
    blocker = sqlite3.connect(str(path), timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    storage._conn.execute("PRAGMA busy_timeout = 0")
    executor.release()  # bob's and carol's transaction
    blocker.execute("ROLLBACK")
    blocker.close()
    executor.drain()
    assert len(outcomes) == 3 and all(isinstance(o, Failure) for o in outcomes[1:])
    assert all(o.check(StorageUnavailable) for o in outcomes[1:])
    storage.create_user("bob", {}, None).addBoth(outcomes.append)
    executor.drain()
    assert outcomes[3] == outcomes[0] + 1  # nothing of the failed transaction stayed
    storage.close()


def test_close_commits_the_writes_asked_for_before_and_refuses_later_ones(
        tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    executor = HeldExecutor()
    storage = SqliteStorage.open(path, executor)
    outcomes: list[Any] = []
    for name in ("alice", "bob"):
        storage.create_user(name, {}, None).addBoth(outcomes.append)
    closed: list[Any] = []
    storage.close().addBoth(closed.append)
    refused: list[Any] = []
    storage.create_user("carol", {}, None).addBoth(refused.append)
    assert closed == []  # alice's commit is under way, bob's waits
    executor.drain()
    assert closed == [None]
    assert outcomes == [outcomes[0], outcomes[0] + 1]
    assert len(refused) == 1 and refused[0].check(StorageUnavailable)
    assert "closed" in str(refused[0].value)
    reopened = SqliteStorage.open(path, InlineExecutor())
    assert {u.name for u in reopened.list_users().result} == {"alice", "bob"}
    reopened.close()


def test_a_shared_migration_step_runs_the_same_sql_in_both_dialects() -> None:
    """``-- include: releases.sql`` scripts (sqlite 2, PostgreSQL 3) run the shared file."""
    sqlite, postgres = dict(migrations.scripts("sqlite")), dict(migrations.scripts("postgres"))
    assert sqlite[2] == postgres[3]
    assert not sqlite[2].startswith("-- include:")
    assert [s.split("(")[0] for s in migrations.statements(sqlite[2])] == [
        "CREATE TABLE versions ", "CREATE TABLE files ",
        "CREATE INDEX files_by_project ON files "]
