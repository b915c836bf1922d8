"""``twistd devpi``: the service tree, and initialisation of a server directory.

``makeService`` runs before the reactor, so it may block: it initialises (with
``--init``), takes the serverdir lock, derives keys from the secret and opens
and migrates the database. Every problem there ends the process with one line.
"""

from __future__ import annotations

import json
import logging.config
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, STDLibLogObserver, globalLogPublisher

from devpi_twisted import serverdir as sd
from devpi_twisted.config import Config, ConfigError, SERVER_OPTIONS, load_yaml_file, make_options_class
from devpi_twisted.model.acl import Policy, parse_principals
from devpi_twisted.model.ops import ServerOps, root_pypi, root_user
from devpi_twisted.model.tokens import TokenSigner, derive_keys
from devpi_twisted.serverdir import StartupError
from devpi_twisted.storage.executor import Executor, InlineExecutor, ThreadExecutor
from devpi_twisted.storage.interface import StorageError
from devpi_twisted.storage.sqlite import SqliteStorage
from devpi_twisted.web.app import ManagementApp
from devpi_twisted.web.site import DevpiSite, ServerInfo

Options = make_options_class(SERVER_OPTIONS, "Run the devpi-twisted package index server.")

log = Logger()

POLL_SECONDS = 1.0


def open_storage(config: Config, executor: Executor) -> SqliteStorage:
    try:
        return SqliteStorage.open(config.serverdir / sd.SQLITE, executor)
    except (StorageError, OSError) as e:
        raise StartupError(f"cannot open the database: {e}") from None
    except Exception as e:  # sqlite3.DatabaseError and kin: a corrupt or foreign file
        raise StartupError(f"cannot open the database {config.serverdir / sd.SQLITE}: {e}") from None


def initialise(config: Config, out: IO[str] = sys.stdout) -> None:
    """Create a new server state in ``config.serverdir`` (devpi-init): node file,
    secret, database with ``root`` (and ``root/pypi``) as serial 0."""
    serverdir = config.serverdir
    sd.prepare_empty(serverdir)
    (serverdir / "+files").mkdir(mode=0o700)
    if config.secretfile is None:
        sd.create_secret(serverdir / sd.SECRET)
    storage = open_storage(config, InlineExecutor())
    try:
        indexes = [root_pypi()] if config.root_pypi else []
        root = root_user(config.root_passwd, config.root_passwd_hash, time.time())
        storage.bootstrap([root], indexes).result  # type: ignore[attr-defined]
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
        cfg = load_yaml_file(path)
    try:
        logging.config.dictConfig(cfg)
    except (ValueError, TypeError, AttributeError, ImportError) as e:
        raise ConfigError(f"--logger-cfg {path}: {e}") from None
    globalLogPublisher.addObserver(STDLibLogObserver(name="devpi_twisted"))


class StorageService(Service):
    """Owns the storage: polls for commits of other processes, closes it last."""

    def __init__(self, storage: SqliteStorage, clock: IReactorTime) -> None:
        self.storage = storage
        self._poll = LoopingCall(self._poll_once)
        self._poll.clock = clock

    async def _poll_once_async(self) -> None:
        try:
            await self.storage.poll()
        except Exception:
            log.failure("Polling the database for other processes' changes failed")

    def _poll_once(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._poll_once_async())

    def startService(self) -> None:
        super().startService()
        self._poll.start(POLL_SECONDS, now=False)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._poll.running:
            self._poll.stop()
        return self.storage.close()


class ListenService(Service):
    """Listens on every endpoint at start; a port that cannot be bound ends start-up."""

    def __init__(self, reactor: Any, descriptions: tuple[str, ...], factory: Any,
                 serverdir: Path) -> None:
        self._reactor = reactor
        self._descriptions = descriptions
        self._factory = factory
        self._serverdir = serverdir
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
        sd.write_listening(self._serverdir, bound)
        log.info("devpi-twisted serving on {addresses}", addresses=", ".join(bound))

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        ports, self._ports = self._ports, []
        return gatherResults([maybeDeferred(p.stopListening) for p in ports])


class DevpiService(MultiService):
    """The root service: a failure to listen ends the process with one line."""

    def __init__(self, lock: IO[bytes]) -> None:
        super().__init__()
        self._lock = lock

    def startService(self) -> None:
        try:
            super().startService()
        except CannotListenError as e:
            for service in reversed(list(self)):
                if service.running:
                    service.stopService()
            raise SystemExit(f"devpi-twisted: cannot listen on {e.interface or '*'}:{e.port}: "
                             f"{e.socketError}") from None


def build_service(config: Config, reactor: Any) -> IService:
    """The service tree for ``config``; raises StartupError or ConfigError."""
    if config.logger_cfg is not None:
        _setup_stdlib_logging(config.logger_cfg)
    if sd.read_nodeinfo(config.serverdir) is None:
        if not config.init:
            raise StartupError(
                f"{config.serverdir} contains no devpi-twisted state; create it with "
                f"'devpi-twisted init --serverdir {config.serverdir}' (or start with --init)")
        initialise(config)
    node = sd.read_nodeinfo(config.serverdir)
    assert node is not None
    lock = sd.lock(config.serverdir)
    secret = _secret(config)
    keys = derive_keys(secret, config.argon2_time_cost, config.argon2_memory_cost,
                       config.argon2_parallelism)
    storage = open_storage(config, ThreadExecutor(reactor, "devpi-sqlite"))

    def offload(fn: Any, *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

    policy = Policy(parse_principals(config.restrict_modify) if config.restrict_modify else None)
    ops = ServerOps(storage, policy, TokenSigner(keys.auth, reactor.seconds), offload, time.time)
    info = ServerInfo(
        uuid=node.uuid, serverdir=str(config.serverdir), role=config.role, host=config.host,
        port=config.port, outside_url=config.outside_url, max_body=config.max_request_body_size)
    site = DevpiSite(ManagementApp(ops, info).resource(), info, lambda: storage.serial,
                     access_log=config.debug)

    root = DevpiService(lock)
    StorageService(storage, reactor).setServiceParent(root)
    ListenService(reactor, config.listen, site, config.serverdir).setServiceParent(root)
    log.info("devpi-twisted {version} on {serverdir} at serial {serial}",
             version=info.version, serverdir=str(config.serverdir), serial=storage.serial)
    return root


def makeService(options: Any) -> IService:
    from twisted.internet import reactor

    try:
        return build_service(options.config(), reactor)
    except (ConfigError, StartupError) as e:
        raise SystemExit(f"devpi-twisted: {e}") from None

