"""The PostgreSQL adapter: plans run through txpostgres on a small pool of connections
(pgpool.py: its transactions hold back statements without rows, so a plan costs a
round trip per statement that reads, plus the COMMIT).

Start-up (``open``) is blocking on purpose: it runs before the reactor, checks
the connection settings, refuses a database holding other software's tables,
migrates under an advisory lock and loads the cache. At run time every
transaction is asynchronous. A broken connection is dropped and replaced on
next use; while the database is down, operations fail with StorageUnavailable
(the web layer answers 503). Commits send ``NOTIFY devpi_changes, '<serial>'``;
every process LISTENs and catches its cache up.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from txpostgres.txpostgres import Connection

from devpi_twisted.storage import auditplans, migrations, plans
from devpi_twisted.storage.adapter import PlanStorage
from devpi_twisted.storage.board import SerialBoard
from devpi_twisted.storage.driver import DeferringCursor, drive, drive_async
from devpi_twisted.storage.interface import Change, Storage, StorageError, StorageUnavailable
from devpi_twisted.storage.pgpool import Pool, QuietConnection, broken, close_quietly, first_line
from devpi_twisted.storage.types import Now, TxReactor

T = TypeVar("T")

CHANNEL = "devpi_changes"
SETTINGS = frozenset({
    "host", "port", "database", "user", "password", "unix_sock", "ssl_check_hostname",
    "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "use_copy",
})
MIGRATION_LOCK = 0x64657670  # any constant; serialises concurrent start-ups
RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
TRANSACTION_RETRIES = 5
CONNECT_TIMEOUT = 10

log = Logger()

PgConnection = psycopg2.extensions.connection

_PG_SQL: dict[str, str] = {}


def pg_sql(sql: str) -> str:
    """A plan's ``?`` placeholders in psycopg2's ``%s`` style."""
    converted = _PG_SQL.get(sql)
    if converted is None:
        converted = _PG_SQL[sql] = sql.replace("?", "%s")
    return converted


def _true(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on", "t", "y")


def connect_kwargs(settings: Mapping[str, str]) -> dict[str, Any]:
    """libpq keywords for devpi-postgresql's ``--storage pg8000:...`` settings."""
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise StorageError(f"unknown PostgreSQL setting(s): {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(SETTINGS))})")
    kw: dict[str, Any] = {
        "dbname": settings.get("database", "devpi"),
        "user": settings.get("user", "devpi"),
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "devpi-twisted",
    }
    port = settings.get("port", "5432")
    if settings.get("unix_sock"):
        directory, name = os.path.split(settings["unix_sock"])
        match = re.fullmatch(r"\.s\.PGSQL\.(\d+)", name)
        if match:
            kw["host"], port = directory, match.group(1)
        else:
            kw["host"] = settings["unix_sock"]  # a socket directory
    else:
        kw["host"] = settings.get("host", "localhost")
    if not port.isdigit():
        raise StorageError(f"PostgreSQL port {port!r} is not a number")
    kw["port"] = int(port)
    if settings.get("password"):
        kw["password"] = settings["password"]
    ssl = {k: v for k, v in settings.items() if k.startswith("ssl_")}
    if ssl:
        for key, libpq in (("ssl_ca_certs", "sslrootcert"), ("ssl_certfile", "sslcert"),
                           ("ssl_keyfile", "sslkey")):
            if ssl.get(key):
                if not os.path.isfile(ssl[key]):
                    raise StorageError(f"{key} file {ssl[key]} does not exist")
                kw[libpq] = ssl[key]
        if "sslrootcert" in kw:
            kw["sslmode"] = "verify-full" if _true(ssl.get("ssl_check_hostname", "true")) else "verify-ca"
        else:
            kw["sslmode"] = "require"
    return kw


def describe(kw: Mapping[str, Any]) -> str:
    return f"database {kw['dbname']} at {kw['host']}:{kw['port']} as {kw['user']}"


def notifying(plan: plans.Plan[T]) -> plans.Plan[T]:
    """A write plan that also NOTIFYs its serial; delivered at commit to every LISTENer."""
    change = yield from plan
    # an import's list of entries: its last serial (an empty list: nothing new)
    last = change[-1] if isinstance(change, list) and change else change
    if isinstance(last, Change):
        yield plans.run("SELECT pg_notify(?, ?)", CHANNEL, str(last.serial))
    return change


def migrate(conn: PgConnection) -> int:
    """Create or upgrade our schema; refuse a database that holds other tables."""
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = sorted(row[0] for row in cursor.fetchall())
        if tables and "schema_version" not in tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise StorageError(f"the database holds tables that are not devpi-twisted's ({shown}); "
                               "give devpi-twisted an empty database (createdb)")
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        cursor.execute("SELECT version FROM schema_version")
        row = cursor.fetchone()
        current = row[0] if row else 0
        latest = migrations.latest("postgres")
        if current > latest:
            raise StorageError(
                f"the database has schema version {current}, newer than this devpi-twisted knows ({latest})")
        for version, sql in migrations.scripts("postgres"):
            if version > current:
                for statement in migrations.statements(sql):
                    cursor.execute(statement)
                cursor.execute("DELETE FROM schema_version")
                cursor.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        return latest


def _connect(settings: Mapping[str, str]) -> tuple[dict[str, Any], PgConnection]:
    """A blocking connection: (its keyword arguments, it); StorageUnavailable if none."""
    kw = connect_kwargs(settings)
    try:
        return kw, psycopg2.connect(**kw)
    except psycopg2.Error as e:
        raise StorageUnavailable(f"cannot connect to {describe(kw)}: {first_line(e)}") from None


def connect_and_migrate(settings: Mapping[str, str]) -> tuple[dict[str, Any], PgConnection]:
    """A blocking connection to a migrated database; one-line StorageErrors."""
    kw, conn = _connect(settings)
    try:
        migrate(conn)
    except psycopg2.Error as e:
        conn.close()
        raise StorageError(f"{describe(kw)}: {first_line(e)}") from None
    except BaseException:
        conn.close()
        raise
    return kw, conn


def drop_schema(settings: Mapping[str, str]) -> None:
    """Drop every table of devpi-twisted's schema (blocking), so that an interrupted
    import starts over on an empty database. Refuses a database holding other tables."""
    from psycopg2 import sql

    kw, conn = _connect(settings)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            tables = sorted(row[0] for row in cursor.fetchall())
            if tables and "schema_version" not in tables:
                raise StorageError(f"the database holds tables that are not devpi-twisted's "
                                   f"({', '.join(tables[:5])}); not dropping them")
            for table in tables:
                cursor.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
    except psycopg2.Error as e:
        raise StorageError(f"{describe(kw)}: {first_line(e)}") from None
    finally:
        conn.close()


def _run_blocking(conn: PgConnection, kw: Mapping[str, Any], plan: plans.Plan[T]) -> T:
    try:
        with conn, conn.cursor() as cursor:
            return drive(cursor, plan, pg_sql)
    except psycopg2.OperationalError as e:
        raise StorageUnavailable(f"{describe(kw)}: {first_line(e)}") from None


class PostgresStorage(PlanStorage):
    dialect = "postgres"

    def __init__(self, kw: Mapping[str, Any], reactor: TxReactor, clock: Now = time.time,
                 board: SerialBoard | None = None, pool_size: int = 4) -> None:
        super().__init__(clock, board)
        self._kw = dict(kw)
        self._reactor = reactor
        self._pool = Pool(reactor, kw, pool_size)
        self._listener: Connection | None = None
        self._listening: Deferred[None] | None = None

    @classmethod
    def open(cls, settings: Mapping[str, str], reactor: TxReactor, clock: Now = time.time,
             board: SerialBoard | None = None, pool_size: int = 4) -> PostgresStorage:
        """Check, migrate and load; blocking, for start-up. Raises StorageError with one line."""
        kw, conn = connect_and_migrate(settings)
        try:
            snapshot = _run_blocking(conn, kw, plans.snapshot())
        finally:
            conn.close()
        storage = cls(kw, reactor, clock, board, pool_size)
        storage._load(snapshot)
        return storage

    async def _transact_async(self, make: Callable[..., plans.Plan[T]], args: tuple[Any, ...]) -> T:
        async def txn(cursor: DeferringCursor) -> T:
            if make in auditplans.LAZY:  # (auditplans.LAZY says why)
                cursor.defer("SET LOCAL synchronous_commit TO OFF")
            return await drive_async(cursor, notifying(make(*args)), pg_sql)

        for attempt in range(TRANSACTION_RETRIES):
            try:
                return await self._pool.interaction(txn)
            except psycopg2.OperationalError as e:
                if e.pgcode not in RETRY_SQLSTATES or attempt + 1 == TRANSACTION_RETRIES:
                    raise StorageUnavailable(f"PostgreSQL: {first_line(e)}") from None
        raise AssertionError("unreachable")

    def _transact(self, make: Callable[..., plans.Plan[T]], *args: Any) -> Deferred[T]:
        return Deferred.fromCoroutine(self._transact_async(make, args))

    def _query(self, plan: plans.Plan[T]) -> Deferred[T]:
        return self._pool.interaction(lambda cursor: drive_async(cursor, plan, pg_sql))

    @property
    def pool(self) -> Pool:
        """The connection pool, shared with the blob store."""
        return self._pool

    # -- LISTEN/NOTIFY ----------------------------------------------------------------

    def _notified(self, notify: object) -> None:
        try:
            serial = int(getattr(notify, "payload", ""))
        except (TypeError, ValueError):
            return
        if serial > self.serial:
            self.catch_up(serial).addErrback(
                lambda f: log.warn("Catching up after NOTIFY failed: {error}", error=f.getErrorMessage()))

    async def _listen(self) -> None:
        conn = QuietConnection(reactor=self._reactor)
        try:
            await conn.connect(**self._kw)
            conn.addNotifyObserver(self._notified)
            await conn.runOperation(f"LISTEN {CHANNEL}")
        except psycopg2.Error as e:
            close_quietly(conn)
            raise StorageUnavailable(f"PostgreSQL: {first_line(e)}") from None
        self._listener = conn

    def poll(self) -> Deferred[None]:
        """(Re)start listening if the listening connection is gone, then catch up:
        a NOTIFY lost while it was down is made up for here."""
        if self._listener is not None and broken(self._listener):
            close_quietly(self._listener)
            self._listener = None
        if self._listener is None:
            return Deferred.fromCoroutine(self._listen_and_catch_up())
        return self.catch_up(None)

    async def _listen_and_catch_up(self) -> None:
        await self._listen()
        await self.catch_up(None)

    def close(self) -> Deferred[None]:
        self._pool.close()
        if self._listener is not None:
            close_quietly(self._listener)
            self._listener = None
        return succeed(None)


class BlockingPostgresStorage(PlanStorage):
    """PostgreSQL for command-line tools: every plan on one blocking connection, so each
    method returns an already fired Deferred and no reactor needs to run."""

    dialect = "postgres"

    def __init__(self, settings: Mapping[str, str], clock: Now = time.time,
                 board: SerialBoard | None = None) -> None:
        super().__init__(clock, board)
        self._kw, self._conn = connect_and_migrate(settings)
        self._load(_run_blocking(self._conn, self._kw, plans.snapshot()))

    def _run(self, plan: plans.Plan[T]) -> Deferred[T]:
        try:
            return succeed(_run_blocking(self._conn, self._kw, plan))
        except BaseException:
            return fail()

    def _transact(self, make: Callable[..., plans.Plan[T]], *args: Any) -> Deferred[T]:
        return self._run(notifying(make(*args)))

    def _query(self, plan: plans.Plan[T]) -> Deferred[T]:
        return self._run(plan)

    def close(self) -> Deferred[None]:
        self._conn.close()
        return succeed(None)


def _conforms_postgres(storage: PostgresStorage) -> Storage:
    """For mypy: a PostgresStorage is a Storage."""
    return storage


def _conforms_blockingpostgres(storage: BlockingPostgresStorage) -> Storage:
    """For mypy: a BlockingPostgresStorage is a Storage."""
    return storage
