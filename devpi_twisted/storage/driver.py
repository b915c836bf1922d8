"""The one plan driver: runs a plan's SQL steps on a cursor and hands each step its rows.

A plan (plans.py) holds all the logic of a transaction: taking the serial, the
record checks, the changelog entry. What differs between databases is only how a
statement is executed: sqlite3 and psycopg2 cursors block (``drive``), txpostgres'
cursor returns a Deferred (``drive_async``). Both loops are the same three lines
around ``PlanRun``, which steps the plan, rewrites its SQL for the dialect and reads
back what each step asked for. Transactions (BEGIN, savepoints, retries) are the
adapters' business; the driver runs inside one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred

from devpi_twisted.storage.plans import Plan, Step

T = TypeVar("T")


class Rows(Protocol):
    """What a DB-API cursor offers once a statement ran."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Cursor(Rows, Protocol):
    """A blocking DB-API cursor (sqlite3, psycopg2)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> object: ...


class AsyncCursor(Rows, Protocol):
    """txpostgres' cursor: ``execute`` fires once the statement ran."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Deferred[Any]: ...


def same(sql: str) -> str:
    """The plans' own dialect (``?`` placeholders): sqlite's."""
    return sql


class PlanRun(Generic[T]):
    """A plan under way: ``sql`` and ``params`` of the step to execute next, until ``done``;
    then ``result`` is the plan's return value. An exception of the plan propagates
    out of the constructor or ``resume``."""

    __slots__ = ("_plan", "_dialect", "_step", "done", "result", "sql", "params")

    def __init__(self, plan: Plan[T], dialect: Callable[[str], str] = same) -> None:
        self._plan = plan
        self._dialect = dialect
        self.done = False
        self.sql = ""
        self.params: tuple[Any, ...] = ()
        try:
            self._next(next(plan))
        except StopIteration as stop:
            self._finish(stop)

    def resume(self, cursor: Rows) -> None:
        """Hand the step just executed its rows (as it asked: one, all or none)."""
        fetch = self._step.fetch
        rows: Any = cursor.fetchone() if fetch == "one" else (
            cursor.fetchall() if fetch == "all" else None)
        try:
            self._next(self._plan.send(rows))
        except StopIteration as stop:
            self._finish(stop)

    def _next(self, step: Step) -> None:
        self._step = step
        self.sql = self._dialect(step.sql)
        self.params = step.params

    def _finish(self, stop: StopIteration) -> None:
        self.done = True
        self.result: T = stop.value


def drive(cursor: Cursor, plan: Plan[T], dialect: Callable[[str], str] = same) -> T:
    """Run ``plan`` on a blocking cursor; returns its result."""
    run = PlanRun(plan, dialect)
    while not run.done:
        cursor.execute(run.sql, run.params)
        run.resume(cursor)
    return run.result


async def drive_async(cursor: AsyncCursor, plan: Plan[T], dialect: Callable[[str], str] = same) -> T:
    """Run ``plan`` on a cursor whose ``execute`` returns a Deferred; returns its result."""
    run = PlanRun(plan, dialect)
    while not run.done:
        await cursor.execute(run.sql, run.params)
        run.resume(cursor)
    return run.result
