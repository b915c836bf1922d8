"""``devpi-twisted export|import`` and ``twistd devpi --export/--import``.

Import never leaves a state that looks complete: the dump is read and every file
hashed before the target is touched; then the server directory gets the
``.import-unfinished`` marker first and its ``.nodeinfo`` last (a server refuses a
directory without ``.nodeinfo``, and names the marker). A failed import removes
what it wrote; one killed outright leaves the marker, and the next import into
that directory (and database) wipes it and starts over.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, cast

from twisted.internet.defer import Deferred

from devpi_twisted import serverdir as sd
from devpi_twisted.config import Config
from devpi_twisted.dump.exporter import Exporter
from devpi_twisted.dump.format import Dump, DumpError, read_dump
from devpi_twisted.dump.importer import Importer, Summary, Verified, verify_files
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.initial import check_root_hash, root_pypi, root_user
from devpi_twisted.reactors import IServerReactor
from devpi_twisted.serverdir import StartupError
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.interface import RecordExists, Storage, StorageError
from devpi_twisted.storage.postgres import drop_schema
from devpi_twisted.storage.types import Offload, ThreadOffload

# (config, reactor) -> storage; (config, storage, reactor) -> blob store
OpenStorage = Callable[[Config, IServerReactor], Storage]
OpenBlobs = Callable[[Config, Storage, IServerReactor], BlobStore]


def _version() -> str:
    from devpi_twisted import __version__

    return f"devpi-twisted {__version__}"


def _storage_label(config: Config) -> dict[str, Any]:
    """What the marker records of the storage (never the password)."""
    settings = {k: v for k, v in config.storage.settings.items() if k != "password"}
    return {"name": config.storage.name, "settings": settings}


async def export(config: Config, directory: Path, reactor: IServerReactor, open_storage: OpenStorage,
                 open_blobs: OpenBlobs, out: IO[str] = sys.stderr) -> None:
    if sd.read_nodeinfo(config.serverdir) is None:
        raise StartupError(f"{config.serverdir} contains no devpi-twisted state to export")
    directory = directory.absolute()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise StartupError(f"{directory} exists and is not empty; export needs a new or empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    storage = open_storage(config, reactor)
    try:
        blobs = open_blobs(config, storage, reactor)
        exporter = Exporter(storage, blobs, directory, ThreadOffload(reactor), out, _version(),
                            hard_links=config.hard_links,
                            include_mirrored_files=config.include_mirrored_files,
                            dump_format=config.export_format)
        summary = await exporter.run()
    finally:
        await storage.close()
    out.write(f"devpi-twisted: exported {summary.users} users, {summary.indexes} indexes and "
              f"{summary.files} files (serial {summary.serial}) to {directory} "
              f"as a devpi-server {config.export_format} dump "
              f"in {summary.seconds:.1f}s\n")


async def _check_database_empty(config: Config, reactor: IServerReactor, open_storage: OpenStorage) -> None:
    """Before the marker is written: an import never starts on (nor later wipes) a
    database that holds a state."""
    storage = open_storage(config, reactor)
    try:
        if storage.serial != -1:
            raise StartupError("the database already holds a server state; "
                               "import needs an empty database")
    finally:
        await storage.close()


def _wipe_unfinished(config: Config, out: IO[str], why: str = "starting over") -> None:
    """Remove what an interrupted import left in the server directory and database."""
    marker = config.serverdir / sd.IMPORTING
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("storage")
    except (OSError, ValueError):
        recorded = None
    if recorded is not None and recorded != _storage_label(config):
        raise StartupError(
            f"{config.serverdir} holds an unfinished import into another storage "
            f"({recorded}); give the same --storage, or a new serverdir")
    if config.storage.name != "sqlite":
        try:
            drop_schema(config.storage.settings)
        except StorageError as e:
            raise StartupError(f"cannot clear the unfinished import from the database: {e}") from None
    for child in config.serverdir.iterdir():
        if child.name == sd.IMPORTING:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    out.write(f"devpi-twisted: removed an unfinished import from {config.serverdir}, {why}\n")


def _check_target(config: Config, out: IO[str]) -> None:
    serverdir = config.serverdir
    if not serverdir.exists():
        return
    if not serverdir.is_dir():
        raise StartupError(f"{serverdir} exists and is not a directory")
    if (serverdir / sd.IMPORTING).exists() and sd.read_nodeinfo(serverdir) is None:
        _wipe_unfinished(config, out)
        return
    if any(serverdir.iterdir()):
        raise StartupError(f"{serverdir} is not empty; import needs a new or empty server directory")


async def import_(config: Config, directory: Path, reactor: IServerReactor, open_storage: OpenStorage,
                  open_blobs: OpenBlobs, out: IO[str] = sys.stderr) -> None:
    offload = ThreadOffload(reactor)
    dump = read_dump(directory, config.skip_import_types)  # every problem, before any write
    out.write(f"devpi-twisted: importing a dump of {dump.server} (dumpversion {dump.dumpversion}): "
              f"{len(dump.users)} users, {len(dump.indexes)} indexes, {dump.file_count} files\n")
    for warning in dump.warnings:
        out.write(f"devpi-twisted: warning: {warning}\n")
    verified = await verify_files(dump, offload, out)
    _check_target(config, out)
    serverdir = config.serverdir
    made_dir = not serverdir.exists()
    serverdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if config.storage.name != "sqlite":
        try:
            await _check_database_empty(config, reactor, open_storage)
        except BaseException:
            if made_dir:
                serverdir.rmdir()
            raise
    marker = serverdir / sd.IMPORTING
    marker.write_text(json.dumps({"dump": str(directory.absolute()), "started": time.time(),
                                  "storage": _storage_label(config)}), encoding="utf-8")
    try:
        summary = await _fill(config, dump, verified, reactor, open_storage, open_blobs, offload, out)
    except BaseException:
        try:
            _wipe_unfinished(config, out, "as the import failed")
            marker.unlink()
            if made_dir:
                serverdir.rmdir()
        except Exception as e:  # the marker stays: the next import starts over
            out.write(f"devpi-twisted: could not clean up ({e}); run the import again\n")
        raise
    sd.write_nodeinfo(serverdir, sd.new_nodeinfo("standalone"))  # complete from here on
    marker.unlink()
    out.write(f"devpi-twisted: imported {summary.users} users, {summary.indexes} indexes, "
              f"{summary.versions} versions and {summary.files} files into {serverdir} "
              f"in {summary.seconds:.1f}s\n")


async def _fill(config: Config, dump: Dump, verified: Mapping[Path, Verified],
                reactor: IServerReactor, open_storage: OpenStorage, open_blobs: OpenBlobs,
                offload: Offload, out: IO[str]) -> Summary:
    serverdir = config.serverdir
    (serverdir / "+files").mkdir(mode=0o700, exist_ok=True)
    staging = serverdir / sd.STAGING
    staging.mkdir(mode=0o700, exist_ok=True)
    if config.secretfile is None:
        sd.create_secret(serverdir / sd.SECRET)
    storage = open_storage(config, reactor)
    try:
        if storage.serial != -1:
            raise StartupError("the database already holds a server state; "
                               "import needs an empty database")
        blobs = open_blobs(config, storage, reactor)
        unsynced = isinstance(blobs, FileBlobStore)
        if isinstance(blobs, FileBlobStore):  # one os.sync() a batch, not two fsyncs a file
            blobs = blobs.unsynced()
        try:
            check_root_hash(config.root_passwd_hash)
        except InvalidInput as e:
            raise StartupError(e.message) from None
        extra_users = [] if "root" in dump.users else [
            await offload(root_user, config.root_passwd, config.root_passwd_hash, time.time())]
        extra_indexes = [root_pypi()] if config.root_pypi else []
        importer = Importer(dump, verified, storage, blobs, staging, offload, out,
                            hard_links=config.hard_links, unsynced=unsynced)
        try:
            summary = await importer.run(extra_users, extra_indexes)
            await offload(os.sync)  # the files durable before .nodeinfo says "complete"
            return summary
        except RecordExists:
            raise StartupError("the database already holds a server state; "
                               "import needs an empty database") from None
    finally:
        await storage.close()


def run(config: Config, open_storage: OpenStorage, open_blobs: OpenBlobs) -> int:
    """Run ``--export``/``--import`` of ``config`` on the global reactor; the exit status."""
    from twisted.internet import reactor as installed

    reactor = cast(IServerReactor, installed)
    status: list[int] = []

    async def main() -> None:
        try:
            if config.export_dir is not None:
                await export(config, config.export_dir, reactor, open_storage, open_blobs)
            elif config.import_dir is not None:
                await import_(config, config.import_dir, reactor, open_storage, open_blobs)
            status.append(0)
        except (DumpError, StartupError) as e:
            print(f"devpi-twisted: {e}", file=sys.stderr)
            status.append(1)
        except StorageError as e:
            print(f"devpi-twisted: storage: {e}", file=sys.stderr)
            status.append(1)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            status.append(1)
        finally:
            reactor.callLater(0, reactor.stop)

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()))
    reactor.run()  # (with signal handlers: the default)
    return status[0] if status else 1
