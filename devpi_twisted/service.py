"""``twistd devpi``: the service tree, and initialisation of a server directory.

``makeService`` runs before the reactor, so it may block: it initialises (with
``--init``), takes the serverdir lock, derives keys from the secret and opens
and migrates the database. Every problem there ends the process with one line.
"""

from __future__ import annotations

import json
import logging.config
import os
import shutil
import socket
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, STDLibLogObserver, globalLogPublisher

from devpi_twisted import serverdir as sd
from devpi_twisted.config import (
    Config, ConfigError, SERVER_OPTIONS, TwistdOptions, load_yaml_file, make_options_class,
)
from devpi_twisted.mirror.cache import PREFETCH, Mirror
from devpi_twisted.mirror.upstream import Upstream, http_client
from devpi_twisted.model.acl import Policy, parse_principals
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.indexes import MIRROR
from devpi_twisted.model.ops import ServerOps, check_root_hash, root_pypi, root_user
from devpi_twisted.model.tokens import TokenSigner, derive_keys
from devpi_twisted.serverdir import StartupError
from devpi_twisted.storage.board import SerialBoard
from devpi_twisted.storage.executor import InlineExecutor, ThreadExecutor
from devpi_twisted.storage.interface import RecordExists, Storage, StorageError, StorageUnavailable
from devpi_twisted.storage.postgres import BlockingPostgresStorage, PostgresStorage
from devpi_twisted.storage.sqlite import SqliteStorage
from devpi_twisted.workers import WorkerSupervisor
from devpi_twisted.model.release_ops import ReleaseOps
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.bodycache import BodyCache
from devpi_twisted.storage.pgblobs import PgBlobStore
from devpi_twisted.web.hashing import HashingPool
from devpi_twisted.web.index_app import IndexApp
from devpi_twisted.web.metrics import RequestMetrics
from devpi_twisted.web.site import DevpiSite, ServerInfo
from devpi_twisted.replication.client import PrimaryClient
from devpi_twisted.replication.feed import ChangelogFeed
from devpi_twisted.replication.replica import Replica
from devpi_twisted.web.replica_writes import ReplicaWrites

Options = make_options_class(SERVER_OPTIONS, "Run the devpi-twisted package index server.",
                             TwistdOptions)

log = Logger()

POLL_SECONDS = 1.0


def open_storage(config: Config, reactor: Any = None, board: SerialBoard | None = None) -> Storage:
    """The configured storage. Without a reactor: a blocking one for command-line tools
    (every call returns a fired Deferred)."""
    spec = config.storage
    try:
        if spec.name == "sqlite":
            if reactor is None:
                return SqliteStorage.open(config.serverdir / sd.SQLITE, InlineExecutor(),
                                          board=board)
            return SqliteStorage.open(config.serverdir / sd.SQLITE,
                                      ThreadExecutor(reactor, "devpi-sqlite"), board=board,
                                      reader=ThreadExecutor(reactor, "devpi-sqlite-read"))
        if reactor is None:
            return BlockingPostgresStorage(spec.settings, board=board)
        return PostgresStorage.open(spec.settings, reactor, board=board)
    except (StorageError, OSError) as e:
        raise StartupError(f"cannot open the database: {e}") from None
    except sqlite3.DatabaseError as e:  # a corrupt or foreign file
        raise StartupError(f"cannot open the database {config.serverdir / sd.SQLITE}: {e}") from None


def open_blobs(config: Config, storage: Any, reactor: Any) -> Any:
    """File bodies: in the database on PostgreSQL (hosts may share it), else under +files."""
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
        storage.close()
        sd.write_nodeinfo(serverdir, sd.NodeInfo(sd.new_nodeinfo("replica").uuid, "replica",
                                                 {"masterurl": config.primary_url}))
        print(f"devpi-twisted: initialised {serverdir} as a replica of {config.primary_url}",
              file=out)
        return
    try:
        indexes = [root_pypi()] if config.root_pypi else []
        root = root_user(config.root_passwd, config.root_passwd_hash, time.time())
        try:
            storage.bootstrap([root], indexes).result  # type: ignore[attr-defined]
        except RecordExists:
            raise StartupError("the database already holds a server state; "
                               "give a new serverdir an empty database") from None
    finally:
        storage.close()
    sd.write_nodeinfo(serverdir, sd.new_nodeinfo(config.role))
    print(f"devpi-twisted: initialised {serverdir}", file=out)
    if not config.root_passwd and not config.root_passwd_hash:
        print("devpi-twisted: WARNING: user 'root' has an EMPTY password; anybody can log in "
              "as root until you set one (devpi-twisted passwd root)", file=out)


def _secret(config: Config) -> bytes:
    if config.secretfile is not None:
        return sd.read_secret(config.secretfile)
    default = config.serverdir / sd.SECRET
    if default.exists():
        return sd.read_secret(default)
    log.warn("No secret file: login tokens are signed with a random key and end at restart")
    return os.urandom(32)


def _setup_stdlib_logging(path: Path) -> None:
    if path.suffix == ".json":
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"--logger-cfg {path}: {e}") from None
    else:
        cfg = load_yaml_file(path, "--logger-cfg")
    try:
        logging.config.dictConfig(cfg)
    except (ValueError, TypeError, AttributeError, ImportError) as e:
        raise ConfigError(f"--logger-cfg {path}: {e}") from None
    globalLogPublisher.addObserver(STDLibLogObserver(name="devpi_twisted"))


class StorageService(Service):
    """Owns the storage: polls for commits of other processes, closes it last (after
    ``settle``, e.g. the mirror's page writes in flight)."""

    def __init__(self, storage: Any, clock: IReactorTime,
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
        super().startService()
        self._poll.start(POLL_SECONDS, now=False)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
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


class ListenService(Service):
    """Listens on every endpoint at start; a port that cannot be bound ends start-up."""

    def __init__(self, reactor: Any, descriptions: tuple[str, ...], factory: Any,
                 report: Path) -> None:
        self._reactor = reactor
        self._descriptions = descriptions
        self._factory = factory
        self._report = report
        self._ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()
        bound = []
        for description in self._descriptions:
            endpoint = serverFromString(self._reactor, description)
            failures: list[Any] = []
            endpoint.listen(self._factory).addCallbacks(self._ports.append, failures.append)
            if failures:
                failures[0].raiseException()
            address = self._ports[-1].getHost()
            if hasattr(address, "port"):
                host = address.host if ":" not in address.host else f"[{address.host}]"
                bound.append(f"http://{host}:{address.port}")
            else:
                bound.append(f"unix:{address.name}")
        sd.write_listening(self._report, bound)
        log.info("devpi-twisted serving on {addresses}", addresses=", ".join(bound))

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        ports, self._ports = self._ports, []
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])

    @property
    def ports(self) -> list[IListeningPort]:
        return list(self._ports)


class AdoptService(Service):
    """A worker's side of --workers: serve the listening sockets inherited from the main process."""

    FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}

    def __init__(self, reactor: Any, fds: tuple[tuple[int, str], ...], factory: Any) -> None:
        self._reactor = reactor
        self._fds = fds
        self._factory = factory
        self._ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()
        for fd, family in self._fds:
            self._ports.append(self._reactor.adoptStreamPort(fd, self.FAMILIES[family], self._factory))
            os.close(fd)

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        ports, self._ports = self._ports, []
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])


def listening_sockets(service: ListenService) -> list[tuple[int, str]]:
    found = []
    for port in service.ports:
        address = port.getHost()
        if isinstance(address, IPv6Address):
            family = "INET6"
        elif isinstance(address, IPv4Address):
            family = "INET"
        else:
            family = "UNIX"
        found.append((port.fileno(), family))
    return found


def worker_command(config: Config) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment that make a worker serve like this process.
    The storage settings (maybe a password) travel in the environment, not in argv."""
    secretfile = config.secretfile or config.serverdir / sd.SECRET
    if not secretfile.exists():
        raise StartupError("--workers needs a secret file shared by all processes (--secretfile)")
    args = ["--serverdir", str(config.serverdir), "--secretfile", str(secretfile),
            "--max-request-body-size", str(config.max_request_body_size),
            "--max-json-body-size", str(config.max_json_body_size),
            "--mirror-cache-expiry", str(config.mirror_cache_expiry),
            "--request-timeout", str(config.request_timeout),
            "--argon2-memory-cost", str(config.argon2_memory_cost),
            "--argon2-time-cost", str(config.argon2_time_cost),
            "--argon2-parallelism", str(config.argon2_parallelism),
            "--host", config.host, "--port", str(config.port)]
    if config.outside_url:
        args += ["--outside-url", config.outside_url]
    if config.role == "primary":  # every process serves the changelog feed
        args += ["--role", "primary"]
    if config.restrict_modify is not None:
        args += ["--restrict-modify", ",".join(config.restrict_modify)]
    if config.logger_cfg:
        args += ["--logger-cfg", str(config.logger_cfg)]
    args += [flag for flag, on in (("--debug", config.debug), ("--offline-mode", config.offline_mode)) if on]
    args += ["--access-log"] if config.access_log else []
    spec = config.storage
    storage = spec.name + (":" + ",".join(f"{k}={v}" for k, v in spec.settings.items()) if spec.settings else "")
    return args, {"DEVPISERVER_STORAGE": storage}


class DevpiService(MultiService):
    """The root service: a failure to listen ends the process with one line."""

    def __init__(self, lock: IO[bytes]) -> None:
        super().__init__()
        self._lock = lock

    def startService(self) -> None:
        try:
            super().startService()
        except (CannotListenError, OSError) as e:  # OSError: a unix socket path, .listening
            for service in reversed(list(self)):
                if service.running:
                    service.stopService()
            if isinstance(e, OSError):
                raise SystemExit(f"devpi-twisted: cannot start serving: "
                                 f"{sd.explain_oserror(None, e)}") from None
            raise SystemExit(f"devpi-twisted: cannot listen on {e.interface or '*'}:{e.port}: "
                             f"{e.socketError}") from None


def build_service(config: Config, reactor: Any) -> IService:
    """The service tree for ``config``; raises StartupError or ConfigError."""
    if config.logger_cfg is not None:
        _setup_stdlib_logging(config.logger_cfg)
    worker = bool(config.listen_fds)
    if (config.serverdir / sd.IMPORTING).exists() and sd.read_nodeinfo(config.serverdir) is None:
        raise StartupError(f"an import into {config.serverdir} did not finish; run the import "
                           "again (it starts over), or remove the directory")
    if sd.read_nodeinfo(config.serverdir) is None:
        if not config.init or worker:
            raise StartupError(
                f"{config.serverdir} contains no devpi-twisted state; create it with "
                f"'devpi-twisted init --serverdir {config.serverdir}' (or start with --init)")
        initialise(config)
    node = sd.read_nodeinfo(config.serverdir)
    assert node is not None
    node = _check_role(config, node)
    lock = None if config.requests_only else sd.lock(config.serverdir)
    worker_args = worker_command(config) if config.workers else None
    secret = _secret(config)
    keys = derive_keys(secret, config.argon2_time_cost, config.argon2_memory_cost,
                       config.argon2_parallelism)
    board = SerialBoard(config.serverdir / sd.BOARD)
    storage = open_storage(config, reactor, board)

    def offload(fn: Any, *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    policy = Policy(parse_principals(config.restrict_modify) if config.restrict_modify else None)
    hashing = HashingPool(reactor)  # argon2 never waits behind, nor holds up, the shared pool
    ops = ServerOps(storage, policy, TokenSigner(keys.auth, reactor.seconds), offload, time.time,
                    hashing=hashing, pause=lambda seconds: deferLater(reactor, seconds))
    info = ServerInfo(
        uuid=node.uuid, serverdir=str(config.serverdir), role=config.role, host=config.host,
        port=config.port, outside_url=config.outside_url, max_body=config.max_request_body_size,
        max_json_body=config.max_json_body_size, requests_only=config.requests_only)
    blobs = open_blobs(config, storage, reactor)
    staging = config.serverdir / sd.STAGING
    if not config.requests_only:  # the main process starts first: nothing is in flight yet
        shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700, exist_ok=True)
    http = http_client(reactor)
    # A request waits --request-timeout for upstream; the fetch itself may go on for
    # longer in the background and store what it gets (mirror.md 3).
    upstream = Upstream(reactor, http, timeout=max(30.0, 6 * config.request_timeout))
    replica = None
    if config.role == "replica" and config.primary_url:
        primary_http = http
        if config.replica_cert is not None:  # a TLS client certificate for the primary
            primary_http = http_client(reactor, _replica_cert_policy(config.replica_cert))
        client = PrimaryClient(primary_http, reactor, config.primary_url, node.uuid,
                               TokenSigner(keys.replica, time.time), config.outside_url,
                               str(node.extra.get("primary-uuid") or ""))
        replica = Replica(storage, blobs, client, reactor, staging, offload,
                          _primary_remembered(config.serverdir, offload),
                          config.file_replication_threads, config.request_timeout,
                          skip_indexes=config.file_replication_skip_indexes)
    feed = ChangelogFeed(storage, node.uuid, TokenSigner(keys.replica, time.time), reactor,
                         enabled=config.role == "primary")
    mirror = Mirror(storage, upstream, blobs, staging, offload, offline=config.offline_mode,
                    default_expiry=config.mirror_cache_expiry, reactor=reactor,
                    wait=config.request_timeout,
                    via=replica.mirror_page if replica is not None else None,
                    prefetch=PREFETCH if config.mirror_prefetch else 0)
    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(_warm(storage, mirror)))
    metrics = RequestMetrics()
    app = IndexApp(ops, info, ReleaseOps(storage, blobs, time.time),
                   SimpleOps(storage, mirror.page), blobs, offload, staging, http, mirror, metrics,
                   feed=feed, replica=replica)
    resource = app.resource()
    if replica is not None:
        resource = ReplicaWrites(resource, replica, config.primary_url or "", info,
                                 config.proxy_timeout)
    site = DevpiSite(resource, info, lambda: storage.serial,
                     access_log=config.debug or config.access_log, metrics=metrics,
                     primary_uuid=(lambda: client.primary_uuid) if replica is not None else None)

    root = DevpiService(lock)
    StorageService(storage, reactor, mirror.settled).setServiceParent(root)
    hashing.setServiceParent(root)
    if replica is not None:  # stops before the storage closes
        replica.setServiceParent(root)
    if worker:
        AdoptService(reactor, config.listen_fds, site).setServiceParent(root)
    else:
        listening = sd.LISTENING if not config.requests_only else f"{sd.LISTENING}-{os.getpid()}"
        listener = ListenService(reactor, config.listen, site, config.serverdir / listening)
        listener.setServiceParent(root)
        if worker_args is not None:
            args, env = worker_args
            WorkerSupervisor(reactor, config.workers, args, env,
                             lambda: listening_sockets(listener)).setServiceParent(root)
    log.info("devpi-twisted {version} on {serverdir} ({storage}) at serial {serial}{role}",
             version=info.version, serverdir=str(config.serverdir), storage=config.storage.name,
             serial=storage.serial, role=" as worker" if worker else "")
    return root


async def _warm(storage: Any, mirror: Mirror) -> None:
    """What the mirror indexes load at start (their stored project lists)."""
    for record in await storage.list_indexes():
        if record.config.get("type") == MIRROR:
            await mirror.warm(f"{record.user}/{record.index}", record.config)


def _check_role(config: Config, node: sd.NodeInfo) -> sd.NodeInfo:
    """A replica stays a replica and nothing else becomes one (ops.md 2.1); standalone and
    primary may switch (remembered in .nodeinfo)."""
    if config.role == "replica" and node.role != "replica":
        raise StartupError(f"cannot run as replica, was previously run as {node.role}")
    if node.role == "replica" and config.role != "replica":
        raise StartupError(f"{config.serverdir} holds a replica's state; start it with "
                           "--role replica --primary-url URL")
    if node.role != config.role and not config.requests_only:
        node = sd.NodeInfo(node.uuid, config.role, node.extra)
        sd.write_nodeinfo(config.serverdir, node)
    if config.role == "replica" and node.extra.get("masterurl") != config.primary_url \
            and not config.requests_only:
        node = sd.NodeInfo(node.uuid, node.role, {**node.extra, "masterurl": config.primary_url})
        sd.write_nodeinfo(config.serverdir, node)
    return node


def _replica_cert_policy(path: Path) -> Any:
    from devpi_twisted.replication.client import ClientCertificatePolicy

    try:
        return ClientCertificatePolicy(path.read_bytes())
    except OSError as e:
        raise StartupError(f"--replica-cert {path}: {e.strerror}") from None
    except Exception as e:  # not a PEM certificate with its key
        raise StartupError(f"--replica-cert {path}: not a PEM certificate and key ({e})") from None


def _primary_remembered(serverdir: Path, offload: Any) -> Any:
    """What a replica calls once it learns its primary's uuid: kept in .nodeinfo."""

    def remember(uuid: str) -> None:
        def write() -> None:
            node = sd.read_nodeinfo(serverdir)
            if node is not None:
                sd.write_nodeinfo(serverdir, sd.NodeInfo(
                    node.uuid, node.role, {**node.extra, "primary-uuid": uuid}))

        offload(write).addErrback(lambda f: log.failure("Writing .nodeinfo failed", f))

    return remember


def makeService(options: Any) -> IService:
    from twisted.internet import reactor

    config = None
    try:
        config = options.config()
        if config.export_dir is not None or config.import_dir is not None:
            from devpi_twisted.dump.run import run  # twistd devpi --export/--import DIR

            raise SystemExit(run(config, open_storage, open_blobs))
        return build_service(config, reactor)
    except (ConfigError, StartupError) as e:
        raise SystemExit(f"devpi-twisted: {e}") from None
    except OSError as e:  # a file the process cannot use: one line, never a traceback
        raise SystemExit("devpi-twisted: " + sd.explain_oserror(
            config.serverdir if config is not None else None, e)) from None

