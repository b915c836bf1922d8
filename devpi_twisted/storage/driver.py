"""The one plan driver: runs a plan's SQL steps on a cursor and hands each step its rows.

A plan (plans.py) holds all the logic of a transaction: taking the serial, the
record checks, the changelog entry. What differs between databases is only how a
statement is executed: sqlite3 and psycopg2 cursors block (``drive``), txpostgres'
cursor returns a Deferred (``drive_async``). Both loops are the same three lines
around ``PlanRun``, which steps the plan, rewrites its SQL for the dialect and reads
back what each step asked for. A cursor that can hold statements back
(``DeferringCursor``: PostgreSQL's) is handed the steps that want no rows with
``defer``; they reach the database with the next statement that does want rows (or
the COMMIT), in one round trip. Transactions (BEGIN, savepoints, retries) are the
adapters' business; the driver runs inside one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.defer import Deferred

from devpi_twisted.storage.plans import Plan

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


class DeferringCursor(AsyncCursor, Protocol):
    """An AsyncCursor that also holds statements back: ``defer`` queues one (its errors
    surface with the next ``execute``, which sends everything queued before it)."""

    def defer(self, sql: str, params: Sequence[Any] | None = ..., /) -> None: ...


class PlanRun(Generic[T]):
    """A plan under way: ``sql`` and ``params`` of the step to execute next, until ``done``;
    then ``result`` is the plan's return value. ``dialect`` rewrites each statement
    (None: the plans' own, sqlite's). An exception of the plan propagates out of the
    constructor or ``resume``."""

    __slots__ = ("_plan", "_dialect", "_fetch", "done", "result", "sql", "params")

    def __init__(self, plan: Plan[T], dialect: Callable[[str], str] | None = None) -> None:
        self._plan = plan
        self._dialect = dialect
        self.done = False
        try:
            step = next(plan)
        except StopIteration as stop:
            self.done = True
            self.result: T = stop.value
            return
        self._fetch = step.fetch
        self.sql = step.sql if dialect is None else dialect(step.sql)
        self.params: tuple[Any, ...] = step.params

    @property
    def wants_rows(self) -> bool:
        return self._fetch != "none"

    def resume(self, cursor: Rows) -> None:
        """Hand the step just executed its rows (as it asked: one, all or none)."""
        fetch = self._fetch
        rows: Any = cursor.fetchone() if fetch == "one" else (
            cursor.fetchall() if fetch == "all" else None)
        try:
            step = self._plan.send(rows)
        except StopIteration as stop:
            self.done = True
            self.result = stop.value
            return
        self._fetch = step.fetch
        self.sql = step.sql if self._dialect is None else self._dialect(step.sql)
        self.params = step.params


def drive(cursor: Cursor, plan: Plan[T], dialect: Callable[[str], str] | None = None) -> T:
    """Run ``plan`` on a blocking cursor; returns its result."""
    run = PlanRun(plan, dialect)
    while not run.done:
        cursor.execute(run.sql, run.params)
        run.resume(cursor)
    return run.result


async def drive_async(cursor: DeferringCursor, plan: Plan[T],
                      dialect: Callable[[str], str] | None = None) -> T:
    """Run ``plan`` on a cursor whose ``execute`` returns a Deferred; returns its result.
    Steps that want no rows are deferred: sent with the next that does, or the COMMIT."""
    run = PlanRun(plan, dialect)
    while not run.done:
        if run.wants_rows:
            await cursor.execute(run.sql, run.params)
        else:
            cursor.defer(run.sql, run.params)
        run.resume(cursor)
    return run.result
