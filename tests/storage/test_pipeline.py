"""PostgreSQL's pipelined transactions (pgpool.Pipeline), on a real cluster: statements
without rows are held back and sent with the next statement or the COMMIT, so a failure
of a held statement, or of the plan after some were sent, must still leave nothing of
the transaction behind and the pooled connection usable; a replica's batch that fails
part-way writes none of its entries, and one applied is NOTIFYed to the other processes."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest
import pytest_twisted

from twisted.internet.defer import TimeoutError as DeferredTimeout

from devpi_twisted.storage.driver import DeferringCursor
from devpi_twisted.storage.interface import Change, IndexRecord, Record, UserRecord
from devpi_twisted.storage.postgres import PostgresStorage
from tests.pg import PgCluster

ROOT = UserRecord("root", {"created": "2024-01-01T00:00:00Z"}, "$argon2id$fake", 0)
PYPI = IndexRecord("root", "pypi", {"type": "mirror", "volatile": False}, 0)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def storage(pg_cluster: PgCluster) -> Any:
    """One connection in the pool: the transaction after a failed one runs on the very
    connection the failure happened on."""
    opened = PostgresStorage.open(pg_cluster.settings(pg_cluster.create_database()), _reactor(),
                                  pool_size=1)
    yield opened
    opened.close()


async def _count(storage: PostgresStorage) -> int:
    async def count(cursor: DeferringCursor) -> int:
        await cursor.execute("SELECT count(*) FROM changelog")
        return int(cursor.fetchone()[0])

    return await storage.pool.interaction(count)


@pytest_twisted.ensureDeferred
async def test_held_statements_go_with_the_commit_and_a_failing_one_rolls_back_all(
        storage: PostgresStorage) -> None:
    async def held(cursor: DeferringCursor) -> None:
        cursor.defer("INSERT INTO changelog (serial, at, records) VALUES (%s, %s, %s)", (100, 1.0, "[]"))

    await storage.pool.interaction(held)  # nothing but held statements: sent with the COMMIT
    assert await _count(storage) == 1

    async def failing(cursor: DeferringCursor) -> None:
        cursor.defer("INSERT INTO changelog (serial, at, records) VALUES (%s, %s, %s)", (101, 1.0, "[]"))
        cursor.defer("SELECT 1 / 0")  # fails in the database, with the COMMIT's round trip
        cursor.defer("INSERT INTO changelog (serial, at, records) VALUES (%s, %s, %s)", (102, 1.0, "[]"))

    with pytest.raises(psycopg2.DataError):
        await storage.pool.interaction(failing)
    assert await _count(storage) == 1  # same connection: not left in an aborted transaction


@pytest_twisted.ensureDeferred
async def test_a_plan_failing_after_statements_were_sent_leaves_nothing(
        storage: PostgresStorage) -> None:
    async def failing(cursor: DeferringCursor) -> None:
        await cursor.execute("INSERT INTO changelog (serial, at, records) VALUES (%s, %s, %s)",
                             (200, 1.0, "[]"))
        cursor.defer("INSERT INTO changelog (serial, at, records) VALUES (%s, %s, %s)", (201, 1.0, "[]"))
        raise RuntimeError("the plan gave up")

    with pytest.raises(RuntimeError):
        await storage.pool.interaction(failing)
    assert await _count(storage) == 0


@pytest_twisted.ensureDeferred
async def test_a_replica_batch_failing_part_way_writes_none_of_its_entries(
        storage: PostgresStorage, pg_cluster: PgCluster) -> None:
    await storage.bootstrap([ROOT], [PYPI])
    changes = [Change(serial, float(serial), (Record("user", f"u{serial}", {
        "profile": {"n": serial}, "pwhash": None}),)) for serial in range(1, 6)]
    # the fourth entry's record cannot be applied: the batch fails after the counter was
    # taken and the first entries' statements were rendered (held, never committed)
    broken = changes[:3] + [Change(4, 4.0, (Record("file", "no-slash", {"project": "p", "entry": {}}),))]
    with pytest.raises(ValueError):
        await storage.import_changes(broken)
    assert storage.serial == 0 and await _count(storage) == 1
    assert await storage.import_changes(changes) == 5  # the same connection, the whole batch
    assert storage.serial == 5
    assert [u.name for u in await storage.list_users()] == ["root", "u1", "u2", "u3", "u4", "u5"]
    reopened = PostgresStorage.open(pg_cluster.settings(storage._kw["dbname"]), _reactor())
    try:
        assert reopened.serial == 5
        assert [c.serial for c in await reopened.changes_since(-1)] == [0, 1, 2, 3, 4, 5]
    finally:
        reopened.close()


@pytest_twisted.ensureDeferred
async def test_an_applied_batch_is_notified_to_the_other_processes(
        storage: PostgresStorage, pg_cluster: PgCluster) -> None:
    worker = PostgresStorage.open(pg_cluster.settings(storage._kw["dbname"]), _reactor())
    try:
        await worker.poll()  # LISTENs from now on
        await storage.bootstrap([ROOT], [PYPI])
        await storage.import_changes([Change(serial, float(serial), (Record("user", f"u{serial}", {
            "profile": {}, "pwhash": None}),)) for serial in (1, 2, 3)])
        seen = worker.wait_for(3)
        seen.addTimeout(5, _reactor())
        try:
            await seen  # without a poll: the NOTIFY of the batch's last serial
        except DeferredTimeout:
            raise AssertionError(f"the worker stayed at serial {worker.serial}") from None
    finally:
        worker.close()


@pytest_twisted.ensureDeferred
async def test_a_lone_statement_is_a_transaction_of_its_own(storage: PostgresStorage) -> None:
    assert await storage.pool.statement("SELECT %s, %s", (1, "a")) == [(1, "a")]
    assert await storage.pool.statement(
        "INSERT INTO changelog (serial, at, records) VALUES (%s, %s, %s)", (300, 1.0, "[]")) == []
    with pytest.raises(psycopg2.DataError):
        await storage.pool.statement("SELECT 1 / %s", (0,))
    assert await storage.pool.statement("SELECT count(*) FROM changelog", ()) == [(1,)]  # committed
    assert await _count(storage) == 1  # the same connection, usable after the error
