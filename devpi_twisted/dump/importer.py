"""Importing a checked dump (format.py) into an empty storage and blob store.

``verify_files`` reads every file of the dump and checks it against every hash the
dump declares, before anything is written. ``Importer.run`` then writes serial 0
(all users and index configs, ``bootstrap``) and the versions of a stage in batches
of whole projects of about ``BATCH_FILES`` files: the batch's file bodies are stored
(in parallel), made durable together (one ``os.sync`` for a filesystem store written
without per-file fsyncs), then its versions committed in one transaction that
references them (invariant 2: a body is durable before any record naming it).
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import os
import posixpath
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

from devpi_twisted.doctext import doc_pages
from devpi_twisted.dump.format import DOCZIP, RELEASEFILE, TOXRESULT, Dump, DumpError, FileDesc, IndexDump
from devpi_twisted.dump.progress import Progress
from devpi_twisted.model import releases
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.interface import IndexRecord, Storage, UserRecord
from devpi_twisted.storage.values import VersionData
from devpi_twisted.web.forms import UploadedFile, spool_core_metadata

PARALLEL = 8  # files hashed or stored at once; projects written at once
BATCH_FILES = 1000  # files of whole projects stored, synced and committed together
METADATA_SUFFIX = ".metadata"


@attrs.frozen
class Verified:
    sha256: str
    size: int
    hashes: Mapping[str, str]


def _hash_file(path: Path, kinds: Sequence[str]) -> tuple[int, dict[str, str]]:
    hashers = {kind: hashlib.new(kind) for kind in {"sha256", *kinds}}
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
    return size, {kind: h.hexdigest() for kind, h in hashers.items()}


async def bounded(items: Sequence[Any], work: Callable[[Any], Coroutine[Any, Any, Any]],
                  limit: int) -> list[Any]:
    semaphore = DeferredSemaphore(limit)

    def one(item: Any) -> Deferred[Any]:
        return semaphore.run(lambda: Deferred.fromCoroutine(work(item)))

    return list(await gatherResults([one(item) for item in items], consumeErrors=True))


async def verify_files(dump: Dump, offload: Callable[..., Awaitable[Any]],
                       out: IO[str]) -> dict[Path, Verified]:
    """Every file's size and hashes; DumpError naming each file that differs from its
    declared hashes."""
    files = [f for index in dump.indexes for f in index.files]
    progress = Progress("verified", len(files), out)
    problems: list[str] = []
    found: dict[Path, Verified] = {}

    async def check(desc: FileDesc) -> None:
        size, actual = await offload(_hash_file, desc.path, sorted(desc.hashes))
        if desc.size is not None and desc.size != size:
            problems.append(f"{desc.relpath}: {size} bytes, the dump says {desc.size}")
        for kind, expected in sorted(desc.hashes.items()):
            if actual[kind] != expected:
                problems.append(f"{desc.relpath}: {kind} is {actual[kind]}, the dump says {expected}")
        hashes = {**desc.hashes, "sha256": actual["sha256"]}
        found[desc.path] = Verified(actual["sha256"], size, hashes)
        progress.step()

    await bounded(files, check, PARALLEL)
    if files:
        progress.done()
    if problems:
        raise DumpError(sorted(problems))
    return found


def _upload_time(last_modified: str | None, now: float) -> str:
    when = None
    if last_modified:
        try:
            when = email.utils.parsedate_to_datetime(last_modified)
        except (TypeError, ValueError):
            when = None
    if when is None:
        when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entry(hashes: Mapping[str, str], sha256: str, size: int, last_modified: str | None,
           project: str, version: str, now: float) -> dict[str, Any]:
    return {"hash_spec": f"sha256={sha256}", "hashes": dict(hashes),
            "last_modified": last_modified or email.utils.formatdate(now, usegmt=True),
            "project": project, "version": version, "size": size}


@attrs.frozen
class Summary:
    users: int
    indexes: int
    versions: int
    files: int
    seconds: float


def _spool_all(archives: Sequence[tuple[Path, str]], staging: Path) -> list[UploadedFile | None]:
    return [spool_core_metadata(path, filename, staging) for path, filename in archives]


def _unlink_all(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class Importer:
    def __init__(self, dump: Dump, verified: Mapping[Path, Verified], storage: Storage, blobs: BlobStore,
                 staging: Path, offload: Callable[..., Awaitable[Any]], out: IO[str],
                 hard_links: bool = False, clock: Callable[[], float] = time.time,
                 unsynced: bool = False) -> None:
        """``unsynced``: ``blobs`` skips its fsyncs (FileBlobStore.unsynced); each batch is
        then synced before its commit."""
        self._dump = dump
        self._verified = verified
        self._storage = storage
        self._blobs = blobs
        self._staging = staging
        self._offload = offload
        self._out = out
        # only files on disk can be links (on PostgreSQL the bodies are in the database)
        self._links = blobs if hard_links and isinstance(blobs, FileBlobStore) else None
        self._clock = clock
        self._unsynced = unsynced
        self._progress = Progress("imported", dump.file_count, out)
        self._versions = 0
        self._files: dict[tuple[str, str, str], list[FileDesc]] = {}
        for index in dump.indexes:
            for desc in index.files:
                self._files.setdefault((index.name, desc.project, desc.version), []).append(desc)

    async def run(self, extra_users: Sequence[UserRecord], extra_indexes: Sequence[IndexRecord]) -> Summary:
        """``extra_*``: what init would make that the dump lacks (root, root/pypi)."""
        users = [UserRecord(name, u["profile"], u["pwhash"], 0) for name, u in self._dump.users.items()]
        users += [u for u in extra_users if u.name not in self._dump.users]
        names = {i.name for i in self._dump.indexes}
        indexes = [IndexRecord(i.user, i.index, i.config, 0) for i in self._dump.indexes]
        indexes += [i for i in extra_indexes if i.name not in names]
        await self._storage.bootstrap(users, indexes)
        for scope, url, secret, events, creator in self._dump.hooks:
            await self._storage.create_hook(scope, url, secret, events, creator)
        for index in self._dump.indexes:
            if index.mirror:
                await bounded([(index, p) for p in sorted(index.projects)], self._mirror_project,
                              PARALLEL)
                continue
            await self._stage(index)
        seconds = self._progress.done()
        return Summary(len(users), len(indexes), self._versions, self._progress.count, seconds)

    def _batches(self, index: IndexDump) -> Iterator[list[str]]:
        """The stage's projects in groups of about BATCH_FILES files (a version without
        files counts as one)."""
        batch: list[str] = []
        count = 0
        for project in sorted(index.projects):
            batch.append(project)
            count += sum(max(1, len(self._files.get((index.name, project, v), [])))
                         for v in index.projects[project])
            if count >= BATCH_FILES:
                yield batch
                batch, count = [], 0
        if batch:
            yield batch

    async def _stage(self, index: IndexDump) -> None:
        """The stage's batches, pipelined: a batch's bodies are stored while the batch
        before it commits; commits stay in order."""
        committing: Deferred[None] | None = None
        try:
            for projects in self._batches(index):
                work = [(project, version, metadata) for project in projects
                        for version, metadata in sorted(index.projects[project].items())]
                chunks = [work[n::PARALLEL] for n in range(PARALLEL) if work[n::PARALLEL]]
                done = await bounded(chunks, lambda chunk: self._store_versions(index, chunk), PARALLEL)
                items = [item for chunk in done for item in chunk]
                if self._unsynced:
                    await self._offload(os.sync)  # the batch's bodies durable before its commit
                if committing is not None:
                    await committing
                committing = Deferred.fromCoroutine(self._commit(index, work, items))
            if committing is not None:
                await committing
        except BaseException:
            if committing is not None and not committing.called:
                committing.addErrback(lambda _: None)  # (the first error is the one raised)
            raise

    async def _commit(self, index: IndexDump, work: list[tuple[str, str, Any]],
                      items: list[Any]) -> None:
        await self._storage.write_releases(index.user, index.index, items)  # one transaction
        self._versions += len(items)
        for project, version, _ in work:
            await self._doc_text(index, project, version)

    async def _doc_text(self, index: IndexDump, project: str, version: str) -> None:
        """The search text of the version's documentation, if it has any."""
        for desc in self._files.get((index.name, project, version), []):
            if desc.type == DOCZIP:
                pages = await self._offload(doc_pages, desc.path)
                if pages:
                    name = str(index.projects[project][version].get("name") or project)
                    await self._storage.write_doc_pages(index.user, index.index, project, version,
                                                        name, pages)

    async def _put(self, key: str, path: Path, sha256: str) -> None:
        if self._links is not None:
            await self._links.link_file(key, path, sha256)
        else:
            await self._blobs.put_file(key, path, sha256)

    async def _put_all(self, items: list[tuple[str, Path, str]]) -> None:
        """Bodies into the store in bulk (a filesystem store: one trip to the thread pool;
        PostgreSQL: a few transactions)."""
        if self._links is not None:
            await self._links.put_files(items, link=True)
        else:
            await self._blobs.put_files(items)

    async def _store_versions(self, index: IndexDump, work: list[tuple[str, str, Mapping[str, Any]]]
                        ) -> list[tuple[str, str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]]:
        """Stores the files of the versions in ``work`` (the bodies and the release files'
        core metadata, PEP 658, as an upload stores them) with three trips to the thread
        pool in all; returns what ``write_releases`` commits of them."""
        now = self._clock()
        puts: list[tuple[str, Path, str]] = []
        wanted: list[tuple[FileDesc, str, dict[str, Any], dict[str, Mapping[str, Any]]]] = []
        planned = []
        for project, version, metadata in work:
            links, files = self._version(index, project, version, now, puts, wanted)
            planned.append((project, version, metadata, links, files))
        spooled = await self._offload(_spool_all, [(d.path, d.filename) for d, *_ in wanted],
                                      self._staging)
        for (desc, relpath, link, files), found in zip(wanted, spooled):
            if found is not None:
                puts.append((relpath + METADATA_SUFFIX, found.path, found.sha256))
                link["core_metadata"] = {"sha256": found.sha256}
                files[relpath + METADATA_SUFFIX] = _entry(
                    {"sha256": found.sha256}, found.sha256, found.size, desc.last_modified,
                    str(files[relpath]["project"]), str(files[relpath]["version"]), now)
        try:
            await self._put_all(puts)
        finally:
            await self._offload(_unlink_all, [f.path for f in spooled if f is not None])
        self._progress.step(sum(len(links) for *_, links, _ in planned))
        return [(project, version, VersionData.of(metadata, links).to_json(), files)
                for project, version, metadata, links, files in planned]

    def _version(self, index: IndexDump, project: str, version: str, now: float,
                 puts: list[tuple[str, Path, str]],
                 wanted: list[tuple[FileDesc, str, dict[str, Any], dict[str, Mapping[str, Any]]]]
                 ) -> tuple[list[dict[str, Any]], dict[str, Mapping[str, Any]]]:
        """The version's links and file entries; its bodies added to ``puts`` and its
        release files to ``wanted`` (their core metadata)."""
        descs = self._files.get((index.name, project, version), [])
        links: list[dict[str, Any]] = []
        files: dict[str, Mapping[str, Any]] = {}
        released: dict[str, str] = {}  # release filename -> its entrypath
        ordered = [d for kind in (RELEASEFILE, DOCZIP, TOXRESULT) for d in descs if d.type == kind]
        for desc in ordered:
            info = self._verified[desc.path]
            if desc.type == RELEASEFILE:
                relpath = releases.relpath(index.user, index.index, info.sha256, desc.filename)
                released[desc.filename] = relpath
            elif desc.type == DOCZIP:
                filename = releases.doczip_filename(project, version)
                relpath = releases.relpath(index.user, index.index, info.sha256, filename)
            else:
                target = released[posixpath.basename(desc.for_entrypath or "")]
                relpath = f"{posixpath.dirname(target)}/{desc.filename}"
            puts.append((relpath, desc.path, info.sha256))
            files[relpath] = _entry(info.hashes, info.sha256, info.size, desc.last_modified,
                                    project, version, now)
            link: dict[str, Any] = {
                "rel": desc.type, "entrypath": relpath, "hash_spec": f"sha256={info.sha256}",
                "hashes": dict(info.hashes), "_log": [dict(e) for e in desc.log]}
            if desc.type == TOXRESULT:
                link["for_entrypath"] = released[posixpath.basename(desc.for_entrypath or "")]
            else:
                link["size"] = info.size
                link["upload_time"] = desc.extra.get("upload_time") or \
                    _upload_time(desc.last_modified, now)
            if "yanked" in desc.extra:
                link["yanked"] = desc.extra["yanked"]
            if desc.type == RELEASEFILE:
                wanted.append((desc, relpath, link, files))
            links.append(link)
        return links, files

    async def _mirror_project(self, item: tuple[IndexDump, str]) -> None:
        """Files a mirror had downloaded (``--include-mirrored-files``): stored, and the
        project's cached page made of their links, which the mirror's next fetch of the
        page replaces with upstream's full list (the files stay)."""
        index, project = item
        now = self._clock()
        links: list[dict[str, Any]] = []
        files: dict[str, Mapping[str, Any]] = {}
        for version, metadata in sorted(index.projects[project].items()):
            for desc in self._files.get((index.name, project, version), []):
                info = self._verified[desc.path]
                relpath = releases.relpath(index.user, index.index, info.sha256, desc.filename)
                await self._put(relpath, desc.path, info.sha256)
                entry = _entry(info.hashes, info.sha256, info.size, desc.last_modified, project,
                               version, now)
                files[relpath] = {**entry, "url": desc.url}
                links.append({
                    "filename": desc.filename, "entrypath": relpath, "url": desc.url,
                    "hash_spec": f"sha256={info.sha256}", "sha256": info.sha256,
                    "requires_python": metadata.get("requires_python") or None,
                    "yanked": metadata.get("yanked", False), "core_metadata": None,
                    "size": info.size, "upload_time": None})
                self._progress.step()
        value = {"links": links, "serial": -1, "etag": None, "extracted": {}}
        await self._storage.write_mirror_project(index.user, index.index, project, value, files)
