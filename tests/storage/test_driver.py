"""The one plan driver: the same plan gives the same result whether its statements run
on a blocking cursor or on one whose ``execute`` returns a Deferred."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from devpi_twisted.storage import plans
from devpi_twisted.storage.driver import PlanRun, drive, drive_async
from devpi_twisted.storage.interface import RecordExists


class DeferredCursor:
    """A sqlite3 cursor behind the asynchronous cursor interface (as pgpool.Pipeline's
    is): deferred statements run when the next one is executed."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self._queued: list[tuple[str, Sequence[Any]]] = []
        self.executed: list[str] = []
        self.round_trips = 0

    def defer(self, sql: str, params: Sequence[Any] | None = (), /) -> None:
        self._queued.append((sql, params or ()))

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Deferred[Any]:
        self.round_trips += 1
        self._queued.append((sql, params))
        for queued, values in self._queued:
            self.executed.append(queued)
            self._cursor.execute(queued, values)
        self._queued = []
        return succeed(None)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


def sample() -> plans.Plan[tuple[Any, list[Any], int]]:
    yield plans.run("CREATE TABLE t (n INTEGER)")
    yield plans.run("INSERT INTO t (n) VALUES (?), (?)", 1, 2)
    first = yield plans.one("SELECT n FROM t ORDER BY n")
    every = yield plans.rows("SELECT n FROM t ORDER BY n")
    return first, every, 3


def refusing() -> plans.Plan[None]:
    yield plans.one("SELECT 1")
    raise RecordExists("x")


def test_blocking_and_deferred_cursors_give_one_result() -> None:
    blocking = drive(sqlite3.connect(":memory:").cursor(), sample())
    cursor = DeferredCursor(sqlite3.connect(":memory:").cursor())
    asynchronous = Deferred.fromCoroutine(drive_async(cursor, sample()))
    assert blocking == ((1,), [(1,), (2,)], 3)
    assert asynchronous.result == blocking  # the cursor fires at once: so does the driver
    assert len(cursor.executed) == 4
    assert cursor.round_trips == 2  # the CREATE and INSERT went with the first SELECT


def test_the_dialect_rewrites_each_statement() -> None:
    cursor = DeferredCursor(sqlite3.connect(":memory:").cursor())
    Deferred.fromCoroutine(drive_async(cursor, sample(), lambda sql: sql + " -- pg"))
    assert all(sql.endswith(" -- pg") for sql in cursor.executed)


def test_a_plan_error_reaches_the_caller() -> None:
    with pytest.raises(RecordExists):
        drive(sqlite3.connect(":memory:").cursor(), refusing())
    failures: list[Failure] = []
    Deferred.fromCoroutine(drive_async(DeferredCursor(sqlite3.connect(":memory:").cursor()),
                                       refusing())).addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(RecordExists)


def test_a_plan_without_steps_is_done_at_once() -> None:
    def empty() -> plans.Plan[int]:
        return 7
        yield  # a generator

    run = PlanRun(empty())
    assert run.done and run.result == 7
