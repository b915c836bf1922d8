"""``twistd devpi``: ``makeService`` and the service tree ``build_service`` makes of a
Config: storage first (so it stops last), the web site on the listening endpoints (or
on a worker's inherited sockets), the mirror, replica, changelog feed and workers.

``makeService`` runs before the reactor, so it may block: it initialises (with
``--init``), takes the serverdir lock, derives keys from the secret and opens
and migrates the database. Every problem there ends the process with one line.
Opening the state lives in state.py, listening in listening.py, workers in workers.py.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import attrs
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger, STDLibLogObserver, globalLogPublisher

from devpi_twisted import memory, serverdir as sd
from devpi_twisted.config import DEVPI_ARGON2, BaseOptions, Config, TwistdOptions, as_replica_of, \
    load_yaml_file
from devpi_twisted.listening import AdoptService, DevpiService, ListenService, listening_sockets
from devpi_twisted.options import OPTIONS, ConfigError
from devpi_twisted.reactors import IServerReactor
from devpi_twisted.state import StorageService, initialise, open_blobs, open_storage
from devpi_twisted.storage.interface import Storage
from devpi_twisted.mirror.cache import PREFETCH, Mirror
from devpi_twisted.mirror.upstream import Upstream, http_client
from devpi_twisted.model.acl import Policy, parse_principals
from devpi_twisted.model.audit import AuditOps
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.directory import Directory
from devpi_twisted.keychild import KeyDerivationError, derive_in_child
from devpi_twisted.model.tokens import AUTH_SALT, REPLICA_SALT, DerivedKeys, TokenSigner
from devpi_twisted.serverdir import StartupError
from devpi_twisted.storage.board import SerialBoard
from devpi_twisted.storage.types import Offload, ThreadOffload
from devpi_twisted.storage.values import MirrorConfig
from devpi_twisted.workers import WorkerSupervisor, worker_command
from devpi_twisted.model.release_ops import ReleaseOps
from devpi_twisted.model.search import SearchOps, StoredDocText, build_docs
from devpi_twisted.storage.interface import DocPage
from devpi_twisted.web.blobcopy import BlobCopies
from devpi_twisted.doctext import doc_pages
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.web.auditlog import BATCH_SECONDS, AuditLog
from devpi_twisted.web.hashing import HashingPool
from devpi_twisted.web.compose import build_site
from devpi_twisted.web.site import ServerInfo
from devpi_twisted.replication.feed import ChangelogFeed
from devpi_twisted.webhooks.delivery import HookDelivery


class Options(TwistdOptions):
    """Run the devpi-twisted package index server."""

    _options = OPTIONS


if TYPE_CHECKING:
    from devpi_twisted.replication.client import ClientCertificatePolicy

T = TypeVar("T")

log = Logger()


def _secret(config: Config) -> bytes:
    if config.secretfile is not None:
        return sd.read_secret(config.secretfile)
    default = config.serverdir / sd.SECRET
    if default.exists():
        return sd.read_secret(default)
    log.warn("No secret file: login tokens are signed with a random key and end at restart")
    return os.urandom(32)


def delivers_hooks(config: Config) -> bool:
    """Webhooks go out from the main process where changes originate: never from a
    ``--requests-only`` worker, never from a replica (which writes no outbox rows)."""
    return not config.listen_fds and not config.requests_only and config.role != "replica"


def _setup_stdlib_logging(path: Path) -> None:
    if path.suffix == ".json":
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"--logger-cfg {path}: {e}") from None
    else:
        cfg = load_yaml_file(path, "--logger-cfg")
    import logging.config  # only with --logger-cfg (0.6 MB)
    try:
        logging.config.dictConfig(cfg)
    except (ValueError, TypeError, AttributeError, ImportError) as e:
        raise ConfigError(f"--logger-cfg {path}: {e}") from None
    globalLogPublisher.addObserver(STDLibLogObserver(name="devpi_twisted"))


def build_service(config: Config, reactor: IServerReactor) -> IService:
    """The service tree for ``config``; raises StartupError or ConfigError."""
    if config.logger_cfg is not None:
        _setup_stdlib_logging(config.logger_cfg)
    worker = bool(config.listen_fds)
    directory = None
    if config.ldap_config is not None:  # before any thread starts: a bad file ends the start
        from devpi_twisted.identity.ldap import open_directory  # ldaptor imports the reactor

        directory = open_directory(config.ldap_config, reactor)
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
    config = _replica_by_default(config, node)
    node = _check_role(config, node)
    lock = None if config.requests_only else sd.lock(config.serverdir)
    worker_args = worker_command(config) if config.workers else None
    secret = _secret(config)
    keys = _derive_keys(secret, config)
    board = SerialBoard(config.serverdir / sd.BOARD)
    storage = open_storage(config, reactor, board)
    try:
        return _services(config, reactor, node, storage, directory, keys, lock, worker_args,
                         secret)
    except BaseException:
        storage.close()  # its threads end, so the process exits with the message
        raise


def _services(config: Config, reactor: IServerReactor, node: sd.NodeInfo, storage: Storage,
              directory: Directory | None, keys: DerivedKeys, lock: IO[bytes] | None,
              worker_args: tuple[list[str], dict[str, str]] | None,
              secret: bytes = b"") -> IService:
    """The services over an open storage (build_service closes it when this raises)."""
    worker = bool(config.listen_fds)
    offload = ThreadOffload(reactor)

    policy = Policy(parse_principals(config.restrict_modify) if config.restrict_modify else None)
    # argon2 never waits behind, nor holds up, the shared pool; its children end when idle
    hashing = HashingPool(reactor, clock=reactor)
    audit_log = AuditLog(storage, reactor, config.audit_retention_days, prune=not config.requests_only,
                         batch=BATCH_SECONDS)
    ops = ServerOps(storage, policy, TokenSigner(keys.auth, reactor.seconds), offload, time.time,
                    hashing=hashing, pause=lambda seconds: deferLater(reactor, seconds),
                    directory=directory, auditor=audit_log)
    info = ServerInfo(
        uuid=node.uuid, serverdir=str(config.serverdir), role=config.role, host=config.host,
        port=config.port, outside_url=config.outside_url, max_body=config.max_request_body_size,
        max_json_body=config.max_json_body_size, requests_only=config.requests_only,
        storage=_storage_text(config), devpi_api=config.devpi_api)
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
        # a replica's only: the follower, file replication and devpi-server's translators
        from devpi_twisted.dump.devpi_changes import translator_for
        from devpi_twisted.replication.client import PrimaryClient
        from devpi_twisted.replication.replica import build_replica
        primary_http = http
        if config.replica_cert is not None:  # a TLS client certificate for the primary
            primary_http = http_client(reactor, _replica_cert_policy(config.replica_cert))
        client = PrimaryClient(primary_http, reactor, config.primary_url, node.uuid,
                               TokenSigner(keys.replica, time.time), config.outside_url,
                               str(node.extra.get("primary-uuid") or ""))
        replica = build_replica(storage, blobs, client, reactor, staging, offload,
                                _primary_remembered(config.serverdir, offload),
                                config.file_replication_threads, config.request_timeout,
                                skip_indexes=config.file_replication_skip_indexes,
                                skip_serial=config.skip_serial, translator_for=translator_for,
                                devpi_signer=None if config.argon2_given else partial(
                                    _devpi_signer, secret, offload))
    feed = ChangelogFeed(storage, node.uuid, TokenSigner(keys.replica, time.time), reactor,
                         enabled=config.role == "primary")
    mirror = Mirror(storage, upstream, blobs, staging, offload, reactor,
                    offline=config.offline_mode, default_expiry=config.mirror_cache_expiry,
                    wait=config.request_timeout,
                    via=replica.mirror_page if replica is not None else None,
                    prefetch=PREFETCH if config.mirror_prefetch else 0)
    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(_warm(storage, mirror)))
    if not worker and not config.requests_only:
        copies = BlobCopies(blobs, staging)

        def no_text(relpath: str, error: Exception) -> None:
            log.warn("Search: no text of {relpath}: {error}", relpath=relpath, error=error)

        async def stored_doc_text(relpath: str) -> list[DocPage]:
            return await copies.doc_text(relpath, offload, no_text)

        docs = stored_doc_text if config.role != "replica" else None  # (a replica's come with changes)
        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(_build_search(storage, docs)))
    delivery = None
    if delivers_hooks(config):
        delivery = HookDelivery(storage, http_client(reactor), reactor, lambda: storage.serial)
    releases = ReleaseOps(storage, blobs, time.time, audit_log,
                          doc_text=lambda path: offload(doc_pages, path))
    site = build_site(ops, info, releases,
                      SimpleOps(storage, mirror.page), blobs, offload, staging,
                      serial=lambda: storage.serial, http=http, mirror=mirror, feed=feed,
                      replica=replica, primary_url=config.primary_url or "",
                      proxy_timeout=config.proxy_timeout,
                      primary_uuid=(lambda: client.primary_uuid) if replica is not None else None,
                      access_log=config.debug or config.access_log,
                      audit=AuditOps(storage, policy), search=SearchOps(storage, mirror.names),
                      wake_hooks=delivery.wake if delivery is not None else lambda: None,
                      hook_stats=(lambda: attrs.asdict(delivery.stats)) if delivery is not None
                      else dict)

    root = DevpiService(lock)
    root.attach(StorageService(storage, reactor, mirror.settled))
    root.attach(audit_log)  # stops (its writes done) before the storage closes
    root.attach(hashing)
    if replica is not None:  # stops before the storage closes
        root.attach(replica)
    if delivery is not None:  # stops (in-flight attempts cancelled) before the storage closes
        root.attach(delivery)
    if worker:
        root.attach(AdoptService(reactor, config.listen_fds, site))
    else:
        listening = sd.LISTENING if not config.requests_only else f"{sd.LISTENING}-{os.getpid()}"
        listener = ListenService(reactor, config.listen, site, config.serverdir / listening)
        root.attach(listener)
        if worker_args is not None:
            args, env = worker_args
            root.attach(WorkerSupervisor(reactor, config.workers, args, env,
                                         lambda: listening_sockets(listener)))
    log.info("devpi-twisted {version} on {serverdir} ({storage}) at serial {serial}{role}",
             version=info.version, serverdir=str(config.serverdir), storage=config.storage.name,
             serial=storage.serial, role=" as worker" if worker else "")
    return root


async def _warm(storage: Storage, mirror: Mirror) -> None:
    """What the mirror indexes load at start (their stored project lists)."""
    for record in await storage.list_indexes():
        if isinstance(record.config, MirrorConfig):
            await mirror.warm(f"{record.user}/{record.index}", record.config)


async def _build_search(storage: Storage, doc_text: StoredDocText | None) -> None:
    """The search rows of what was stored before search existed (once), and the text of
    its documentation (where this node writes changes: not on a replica)."""
    try:
        made = await storage.build_search()
        if made:
            log.info("Search: made the rows of {count} stored versions and mirror projects",
                     count=made)
        # (again at the next start where this one stopped before all were read)
        if doc_text is not None and await storage.search_docs_pending():
            docs = await build_docs(storage, doc_text)
            await storage.mark_search_docs_read()
            log.info("Search: stored the text of the docs of {count} versions", count=docs)
    except Exception:
        log.failure("Building the search rows failed")


def _storage_text(config: Config) -> str:
    """The database and where file bodies go, as the status page says it (no password)."""
    if config.storage.name == "sqlite":
        return "sqlite (server directory), files under +files"
    where = " ".join(f"{k}={v}" for k, v in sorted(config.storage.settings.items())
                     if k in ("host", "port", "database", "dbname", "user"))
    return f"{config.storage.name} {where}".strip() + ", files in the database"


def _derive_keys(secret: bytes, config: Config) -> DerivedKeys:
    """Both keys of the secret, derived in a child process (keychild: the server never
    holds argon2's memory)."""
    try:
        auth, replica = derive_in_child(secret, [AUTH_SALT, REPLICA_SALT], config.argon2_time_cost,
                                        config.argon2_memory_cost, config.argon2_parallelism)
    except KeyDerivationError as e:
        raise StartupError(str(e)) from e
    return DerivedKeys(auth=auth, replica=replica)


async def _devpi_signer(secret: bytes, offload: Offload) -> TokenSigner:
    """The replica's token signer for a devpi-server primary: the replica key derived
    from the shared secret with devpi's own costs (DEVPI_ARGON2: 512 MiB, seconds; in a
    child process, waited for on a thread)."""
    memory, passes, lanes = DEVPI_ARGON2
    keys = await offload(derive_in_child, secret, [REPLICA_SALT], passes, memory, lanes)
    return TokenSigner(keys[0], time.time)


def _replica_by_default(config: Config, node: sd.NodeInfo) -> Config:
    """A replica's state started without --role and --primary-url: a replica of the
    primary it was made for (``init --primary-url``)."""
    url = node.extra.get("masterurl")
    if node.role == "replica" and not config.role_given and not config.primary_url and url:
        return as_replica_of(config, str(url))
    return config


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


def _replica_cert_policy(path: Path) -> ClientCertificatePolicy:
    from devpi_twisted.replication.client import ClientCertificatePolicy

    try:
        return ClientCertificatePolicy(path.read_bytes())
    except OSError as e:
        raise StartupError(f"--replica-cert {path}: {e.strerror}") from None
    except Exception as e:  # not a PEM certificate with its key
        raise StartupError(f"--replica-cert {path}: not a PEM certificate and key ({e})") from None


def _primary_remembered(serverdir: Path, offload: Callable[..., Deferred[Any]],
                        ) -> Callable[[str], None]:
    """What a replica calls once it learns its primary's uuid: kept in .nodeinfo."""

    def remember(uuid: str) -> None:
        def write() -> None:
            node = sd.read_nodeinfo(serverdir)
            if node is not None:
                sd.write_nodeinfo(serverdir, sd.NodeInfo(
                    node.uuid, node.role, {**node.extra, "primary-uuid": uuid}))

        offload(write).addErrback(lambda f: log.failure("Writing .nodeinfo failed", f))

    return remember


def makeService(options: BaseOptions) -> IService:
    from twisted.internet import reactor as global_reactor  # the one use of the global reactor

    reactor = cast(IServerReactor, global_reactor)
    memory.tune()  # before the threads start
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

