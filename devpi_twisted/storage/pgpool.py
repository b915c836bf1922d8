"""The PostgreSQL adapter's connections: a small pool of txpostgres connections, each
transaction on a Pipeline (statements without rows held back and sent with the next
statement or the COMMIT: a replica's batch of 250 serials or an import's batch of small
bodies is a few round trips), and lone statements without BEGIN/COMMIT. A broken
connection is closed and replaced on next use (StorageUnavailable meanwhile).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg2
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.logger import Logger
from txpostgres.txpostgres import Connection

from devpi_twisted.storage.adapter import shielded
from devpi_twisted.storage.driver import DeferringCursor
from devpi_twisted.storage.interface import StorageUnavailable
from devpi_twisted.storage.types import TxReactor

T = TypeVar("T")

log = Logger()

Interaction = Callable[[DeferringCursor], Awaitable[T]]  # a transaction's work on its cursor


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines()[0].split())


class QuietConnection(Connection):  # type: ignore[misc]  # txpostgres has no type information
    """txpostgres' Connection, quiet when the server goes away under an idle connection
    (its reader would otherwise log an unhandled error); the pool replaces it on next use."""

    def doRead(self) -> None:
        try:
            super().doRead()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            log.warn("PostgreSQL connection lost: {error}", error=first_line(e))
            self.reactor.removeReader(self)
        except ValueError:
            # the socket went away while txpostgres read (libpq's descriptor is -1 then, and
            # txpostgres watches it again): the same loss, seen a step later
            if self._descriptor() != -1:
                raise
            log.warn("PostgreSQL connection lost: its socket is closed")
            self.reactor.removeReader(self)

    def _descriptor(self) -> int:
        try:
            return int(self.fileno())
        except (psycopg2.InterfaceError, psycopg2.OperationalError):
            return -1


class Pipeline:
    """A txpostgres cursor that holds statements back: ``defer`` renders one (psycopg2's
    client-side ``mogrify``, as ``execute`` would) and queues it; the next ``execute``
    sends the queue and its own statement as one query string, one round trip, and its
    rows are the last statement's. A queued statement that fails fails that ``execute``
    (PostgreSQL skips the rest of the string; the transaction is then aborted)."""

    __slots__ = ("_cursor", "_queued", "sent")

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self._queued: list[bytes] = []
        self.sent = False  # whether anything reached the database yet

    def defer(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self._queued.append(self._cursor.mogrify(sql, params))

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Deferred[Any]:
        self.sent = True
        if not self._queued:
            return self._cursor.execute(sql, params)  # type: ignore[no-any-return]
        self._queued.append(self._cursor.mogrify(sql, params))
        query, self._queued = b";\n".join(self._queued), []
        return self._cursor.execute(query)  # type: ignore[no-any-return]

    def discard(self) -> None:
        self._queued = []

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()  # type: ignore[no-any-return]


async def _transaction(conn: Connection, fn: Interaction[T]) -> T:
    """BEGIN, ``fn(cursor)``, COMMIT, on a Pipeline: BEGIN goes with the first statement,
    statements without rows with the next one or the COMMIT. ROLLBACK on any error
    (txpostgres' runInteraction would log a failed rollback of a dead connection as an
    unhandled error); a failed COMMIT ended the transaction already, the ROLLBACK after
    it only draws a warning."""
    cursor = Pipeline(conn.cursor())
    cursor.defer("BEGIN")
    try:
        result = await fn(cursor)
        await cursor.execute("COMMIT")
    except BaseException:
        cursor.discard()
        if cursor.sent and not broken(conn):
            try:
                await cursor.execute("ROLLBACK")
            except psycopg2.Error:
                pass  # the connection is gone; the caller closes it
        raise
    return result


def broken(conn: Connection) -> bool:
    raw = getattr(conn, "_connection", None)
    return raw is None or bool(raw.closed)


class Pool:
    """Up to ``size`` txpostgres connections, made on demand and replaced when broken."""

    def __init__(self, reactor: TxReactor, kw: Mapping[str, Any], size: int) -> None:
        self._reactor = reactor
        self._kw = dict(kw)
        self._idle: list[Connection] = []
        self._slots = DeferredSemaphore(size)

    async def _checkout(self) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if not broken(conn):
                return conn
            close_quietly(conn)
        conn = QuietConnection(reactor=self._reactor)
        try:
            await conn.connect(**self._kw)
        except psycopg2.Error as e:
            close_quietly(conn)
            raise StorageUnavailable(f"PostgreSQL: {first_line(e)}") from None
        return conn

    def interaction(self, fn: Interaction[T]) -> Deferred[T]:
        """Run ``fn(cursor)`` (a coroutine function) in a transaction on a pooled connection.
        A connection that breaks is closed and StorageUnavailable raised; others go back.

        Cancelling the result (twisted.web does when a client hangs up) leaves the
        transaction to finish on its own: txpostgres would otherwise try to cancel the
        running query and raise _CancelInProgress out of the canceller."""
        return shielded(Deferred.fromCoroutine(self._interaction(fn)))

    def statement(self, sql: str, params: Sequence[Any]) -> Deferred[list[Any]]:
        """One statement on a pooled connection, without BEGIN and COMMIT (an asynchronous
        psycopg2 connection autocommits: the statement is a transaction of its own), so
        one round trip instead of two; its rows ([] if it has none). As ``interaction``
        on errors and cancellation."""
        async def run(cursor: Any) -> list[Any]:
            await cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description is not None else []

        return shielded(Deferred.fromCoroutine(self._interaction(run, alone=True)))

    async def _interaction(self, fn: Interaction[T], alone: bool = False) -> T:
        await self._slots.acquire()
        try:
            conn = await self._checkout()
            try:
                result = await (fn(conn.cursor()) if alone else _transaction(conn, fn))
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
                if broken(conn) or isinstance(e, psycopg2.InterfaceError):
                    close_quietly(conn)
                    raise StorageUnavailable(f"PostgreSQL: {first_line(e)}") from None
                self._idle.append(conn)
                raise
            except BaseException:
                if broken(conn):
                    close_quietly(conn)
                else:
                    self._idle.append(conn)
                raise
            self._idle.append(conn)
            return result
        finally:
            self._slots.release()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            close_quietly(conn)


def close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:  # a broken connection may refuse to close cleanly
        pass
