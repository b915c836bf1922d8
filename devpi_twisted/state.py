"""The server state a process opens: the configured storage and blob store, the service
that owns the storage in the service tree, and the initialisation of a new server
directory.

Command-line tools and ``makeService`` (which runs before the reactor) open the
storage without a reactor: every method of such a storage returns a Deferred that has
already fired, and ``run_blocking`` runs a coroutine over it to its end.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import IO, Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from devpi_twisted import serverdir as sd
from devpi_twisted.config import Config
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.initial import check_root_hash, root_pypi, root_user
from devpi_twisted.reactors import IServerReactor
from devpi_twisted.serverdir import StartupError
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.board import SerialBoard
from devpi_twisted.storage.bodycache import BodyCache
from devpi_twisted.storage.executor import InlineExecutor, ThreadExecutor
from devpi_twisted.storage.interface import RecordExists, Storage, StorageError, StorageUnavailable
from devpi_twisted.storage.sqlite import SqliteStorage

T = TypeVar("T")

log = Logger()

POLL_SECONDS = 1.0


def run_blocking(work: Coroutine[Deferred[Any], Any, T] | Deferred[T]) -> T:
    """Run ``work`` to its end at once and return its result (or raise its error). For
    work on a storage opened without a reactor, whose Deferreds fire as they are made;
    waiting for anything else is a bug and raises RuntimeError."""
    outcome: list[T | Failure] = []
    done = work if isinstance(work, Deferred) else Deferred.fromCoroutine(work)
    done.addBoth(outcome.append)
    if not outcome:
        done.cancel()
        raise RuntimeError("run_blocking: the work waited for something without a reactor")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def open_storage(config: Config, reactor: IServerReactor | None = None,
                 board: SerialBoard | None = None) -> Storage:
    """The configured storage. Without a reactor: a blocking one for command-line tools
    (every call returns a fired Deferred, see run_blocking)."""
    spec = config.storage
    try:
        if spec.name == "sqlite":
            if reactor is None:
                return SqliteStorage.open(config.serverdir / sd.SQLITE, InlineExecutor(),
                                          board=board)
            return SqliteStorage.open(config.serverdir / sd.SQLITE,
                                      ThreadExecutor(reactor, "devpi-sqlite"), board=board,
                                      reader=ThreadExecutor(reactor, "devpi-sqlite-read"))
        # psycopg2 and txpostgres (5 MB resident) only for PostgreSQL
        from devpi_twisted.storage.postgres import BlockingPostgresStorage, PostgresStorage
        if reactor is None:
            return BlockingPostgresStorage(spec.settings, board=board)
        return PostgresStorage.open(spec.settings, reactor, board=board)
    except (StorageError, OSError) as e:
        raise StartupError(f"cannot open the database: {e}") from None
    except sqlite3.DatabaseError as e:  # a corrupt or foreign file
        raise StartupError(f"cannot open the database {config.serverdir / sd.SQLITE}: {e}") from None


def open_blobs(config: Config, storage: Storage, reactor: IReactorThreads) -> BlobStore:
    """File bodies: in the database on PostgreSQL (hosts may share it), else under +files."""
    if config.storage.name != "sqlite":
        from devpi_twisted.storage.pgblobs import PgBlobStore  # psycopg2: see open_storage
        from devpi_twisted.storage.postgres import PostgresStorage
        if isinstance(storage, PostgresStorage):
            copies = BodyCache(config.serverdir / "+blobcache", config.blob_cache_size, reactor) \
                if config.blob_cache_size else None
            return PgBlobStore(storage.pool, reactor, copies=copies)
    return FileBlobStore(config.serverdir / "+files", reactor)


def initialise(config: Config, out: IO[str] = sys.stdout) -> None:
    """Create a new server state in ``config.serverdir`` (devpi-init): node file,
    secret, database with ``root`` (and ``root/pypi``) as serial 0."""
    serverdir = config.serverdir
    try:  # checked before anything is made: a refused hash leaves no half-made state
        check_root_hash(config.root_passwd_hash)
    except InvalidInput as e:
        raise StartupError(e.message) from None
    sd.prepare_empty(serverdir)
    (serverdir / "+files").mkdir(mode=0o700)
    if config.secretfile is None:
        sd.create_secret(serverdir / sd.SECRET)
    storage = open_storage(config)
    if config.role == "replica":  # empty: everything, root included, comes from the primary
        run_blocking(storage.close())
        sd.write_nodeinfo(serverdir, sd.NodeInfo(sd.new_nodeinfo("replica").uuid, "replica",
                                                 {"masterurl": config.primary_url}))
        print(f"devpi-twisted: initialised {serverdir} as a replica of {config.primary_url}",
              file=out)
        return

    async def bootstrap() -> None:
        indexes = [root_pypi()] if config.root_pypi else []
        root = root_user(config.root_passwd, config.root_passwd_hash, time.time())
        try:
            await storage.bootstrap([root], indexes)
        except RecordExists:
            raise StartupError("the database already holds a server state; "
                               "give a new serverdir an empty database") from None
        finally:
            await storage.close()

    run_blocking(bootstrap())
    sd.write_nodeinfo(serverdir, sd.new_nodeinfo(config.role))
    print(f"devpi-twisted: initialised {serverdir}", file=out)
    if not config.root_passwd and not config.root_passwd_hash:
        print("devpi-twisted: WARNING: user 'root' has an EMPTY password; anybody can log in "
              "as root until you set one (devpi-twisted passwd root)", file=out)


class StorageService(Service):
    """Owns the storage: polls for commits of other processes, closes it last (after
    ``settle``, e.g. the mirror's page writes in flight)."""

    def __init__(self, storage: Storage, clock: IReactorTime,
                 settle: Callable[[], Awaitable[None]] | None = None) -> None:
        self.storage = storage
        self._settle = settle
        self._poll = LoopingCall(self._poll_once)
        self._poll.clock = clock
        self._down = False

    async def _poll_once_async(self) -> None:
        try:
            await self.storage.poll()
        except StorageUnavailable as e:
            if not self._down:
                log.warn("The database is unavailable, answering 503 until it is back: {error}",
                         error=str(e))
            self._down = True
            return
        except Exception:
            log.failure("Polling the database for other processes' changes failed")
            return
        if self._down:
            log.info("The database is back")
            self._down = False

    def _poll_once(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._poll_once_async())

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        self._poll.start(POLL_SECONDS, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        if self._poll.running:
            self._poll.stop()
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        if self._settle is not None:
            try:
                await self._settle()
            except Exception:
                log.failure("Waiting for writes in flight before closing the storage")
        await self.storage.close()
