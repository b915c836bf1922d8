"""Storing an uploaded release file, doc zip or tox result and linking it to its version
(``FileUploads``, for release_ops.ReleaseOps).

What an upload writes is decided from its version as stored (``_decide``): a new
version's data, or the stored data updated from the form. A file of the same name is
refused on a non-volatile index (Conflict; the very same file: Identical) and replaced
on a volatile one, its tox results with it.

The bodies are stored before the records that refer to them, so a crash never leaves
a record pointing at a missing body. Two ways, by what the storage offers:

- Where the database writes on a thread of its own (sqlite), the version is read and
  decided on, the bodies moved into the file store and the records committed in one
  trip to that thread (``Storage.update_release`` with ``before_commit``): no read
  before, no retry, and a refused upload stores nothing, not even a body.
- Elsewhere (PostgreSQL), the version is read, decided on, the bodies stored, and the
  write checks the serial the version was read at; a concurrent change makes the
  upload decided again on fresh data (``retry.retrying``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from devpi_twisted.model import audit, hooks, releases
from devpi_twisted.model.acl import Identity
from devpi_twisted.model.errors import Conflict, NotFound
from devpi_twisted.model.names import can_be_stored, normalize_project
from devpi_twisted.model.ops import Written
from devpi_twisted.model.release_files import (
    METADATA_SUFFIX, RELEASEFILE, TOXRESULT, Identical, IncomingFile, StageMissing, file_entry,
    gmtime, gone_paths, iso_time, overwritten,
)
from devpi_twisted.model.retry import retrying
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import (
    DocPage, RecordMissing, ReleaseWrite, Storage, VersionRecord,
)
from devpi_twisted.storage.values import ELINKS, FileLink


async def write_version(storage: Storage, user: str, index: str, project: str, version: str,
                        data: Mapping[str, Any] | None, files: Mapping[str, Mapping[str, Any]],
                        current: VersionRecord | None, write: ReleaseWrite | None = None,
                        docs: Sequence[DocPage] | None = None) -> int:
    """Write a version read as ``current`` (StaleRecord if it changed since); ``write``:
    its hook events and audit rows; ``docs``: the text of documentation uploaded with it."""
    try:
        return await storage.write_release(
            user, index, project, version, data, files, current.serial if current else -1,
            docs, write.events if write else (), write.audit if write else ())
    except RecordMissing:
        raise StageMissing(f"The stage {user}/{index} could not be found.") from None


class FileUploads:
    """Release files and doc zips stored and linked to their versions."""

    def __init__(self, storage: Storage, blobs: BlobStore, clock: Callable[[], float]) -> None:
        self._storage = storage
        self._blobs = blobs
        self._clock = clock

    async def add(self, auditor: audit.Auditor, identity: Identity, user: str, index: str,
                  name: str, version: str, metadata: Mapping[str, Any], content: IncomingFile,
                  volatile: bool, rel: str = RELEASEFILE, filename: str | None = None,
                  docs: Sequence[DocPage] | None = None) -> Written:
        """Store a release file (or doc zip) and link it to its version; the version data
        is created (full for release files, minimal for docs) or updated from the form."""
        project = normalize_project(name)
        filename = filename or content.filename
        relpath = releases.relpath(user, index, content.sha256, filename)
        bodies: list[tuple[str, Path | bytes, str]] = [(relpath, content.path, content.sha256)]
        if content.metadata is not None:
            bodies.append((relpath + METADATA_SUFFIX, content.metadata.body,
                           content.metadata.sha256))
        # the audit event either way (the Auditor is asked here, not on the writer's thread)
        events = {replaced: audit.release(identity, audit.UPLOAD, f"{user}/{index}", project,
                                          version, filename=filename, rel=rel, replaced=replaced)
                  for replaced in (False, True)}
        rows = {replaced: auditor.entry(event) for replaced, event in events.items()}
        decided: list[bool] = []

        def decide(current: VersionRecord | None) -> ReleaseWrite:
            data, files, replaced = self._decide(identity, user, index, project, name, version,
                                                 metadata, content, volatile, rel, filename,
                                                 relpath, current)
            decided[:] = [replaced]
            row = rows[replaced]
            hook = hooks.event(hooks.UPLOAD, identity, f"{user}/{index}", project, version,
                               filename, rel=rel, replaced=replaced)
            return ReleaseWrite(data, files, [hook], () if row is None else (row,))

        if self._storage.blocking_writes and (
                moves := self._blobs.move_in_blocking(bodies)) is not None:
            try:
                serial = await self._storage.update_release(user, index, project, version, decide,
                                                            docs, moves)
            except RecordMissing:
                raise StageMissing(f"The stage {user}/{index} could not be found.") from None
        else:
            serial = await self._read_store_write(user, index, project, version, decide, bodies,
                                                  docs, content.filename)
        auditor.written(events[decided[0]])
        return Written(serial)

    async def add_toxresult(self, auditor: audit.Auditor, identity: Identity, user: str,
                            index: str, relpath: str, content: IncomingFile) -> str:
        """Attach a tox report to the release file ``relpath`` of this index (the caller
        checked the permission); returns ``relpath#sha256=...`` of the stored report."""

        async def attempt() -> str:
            record = await self._storage.get_file(relpath)
            current = None
            if record is not None and not record.deleted:
                version = str(record.entry.get("version", ""))
                current = await self._storage.get_version(user, index, record.project, version) \
                    if can_be_stored(version) else None
            links: list[FileLink | dict[str, Any]] = list(current.data.links) if current else []
            if record is None or current is None or not any(
                    l.rel == RELEASEFILE and l.entrypath == relpath for l in current.data.links):
                raise NotFound(f"no release file found at {relpath}")
            now = self._clock()
            count = sum(1 for link in current.data.links if link.for_entrypath == relpath)
            target = releases.toxresult_filename(relpath, list(gmtime(now)), count)
            log = [releases.log_entry("upload", identity.username, now, dst=f"{user}/{index}")]
            links.append({"rel": TOXRESULT, "entrypath": target, "for_entrypath": relpath,
                          "hash_spec": f"sha256={content.sha256}", "hashes": {"sha256": content.sha256},
                          "_log": log})
            data = current.data.with_links(links)
            files = {target: file_entry(content.sha256, content.size, record.project,
                                        current.version, now)}
            await self._blobs.put_file(target, content.path, content.sha256)
            event = hooks.event(hooks.UPLOAD, identity, f"{user}/{index}", record.project,
                                current.version, target.rsplit("/", 1)[-1], rel=TOXRESULT)
            await self._storage.write_release(user, index, record.project, current.version,
                                              data, files, current.serial, None, [event])
            auditor.record(audit.release(identity, audit.UPLOAD, f"{user}/{index}", record.project,
                                         current.version, path=target, rel=TOXRESULT))
            return f"{target}#sha256={content.sha256}"
        return await retrying(attempt, f"{relpath} is being changed by many requests at once")

    async def _read_store_write(self, user: str, index: str, project: str, version: str,
                                decide: Callable[[VersionRecord | None], ReleaseWrite],
                                bodies: Sequence[tuple[str, Path | bytes, str]],
                                docs: Sequence[DocPage] | None, shown: str) -> int:
        stored = False

        async def attempt() -> int:
            nonlocal stored
            current = await self._storage.get_version(user, index, project, version)
            write = decide(current)
            if not stored:  # the bodies first: a committed record never points at a missing file
                await self._blobs.move_in(bodies)
                stored = True
            return await write_version(self._storage, user, index, project, version, write.data,
                                       write.files, current, write, docs)
        return await retrying(attempt, f"{shown} is being changed by many requests at once")

    def _decide(self, identity: Identity, user: str, index: str, project: str, name: str,
                version: str, metadata: Mapping[str, Any], content: IncomingFile, volatile: bool,
                rel: str, filename: str, relpath: str, current: VersionRecord | None
                ) -> tuple[dict[str, Any], dict[str, Mapping[str, Any]], bool]:
        """The version's new data and file entries, and whether a file was replaced."""
        if current is None:
            data = releases.new_version_data(name, version, metadata, full=rel == RELEASEFILE)
        else:
            data = releases.update_version_data(current.data.to_json(), metadata)
        links = [FileLink(link) for link in data.get(ELINKS, [])]
        same = [link for link in links if link.rel == rel and link.filename == filename]
        files: dict[str, Mapping[str, Any]] = {}
        log = []
        if same:
            old = same[0]
            if not volatile:
                if old.sha256 == content.sha256:
                    raise Identical("Upload of identical file to non volatile index.")
                raise Conflict(f"{content.filename} already exists in non-volatile index")
            results = [link for link in links if link.for_entrypath == old.entrypath]
            for result in results:  # tox results of the replaced file go with it
                files.update(gone_paths(result))
            links = [link for link in links if link not in results]
            log.append(overwritten(old, self._clock()))
            links = [link for link in links if link is not old]
            if old.entrypath != relpath:
                files.update(gone_paths(old))
        now = self._clock()
        log.append(releases.log_entry("upload", identity.username, now, dst=f"{user}/{index}"))
        link: dict[str, Any] = {
            "rel": rel, "entrypath": relpath, "hash_spec": f"sha256={content.sha256}",
            "hashes": {"sha256": content.sha256}, "size": content.size,
            "upload_time": iso_time(now), "_log": log}
        files[relpath] = file_entry(content.sha256, content.size, project, version, now)
        meta = content.metadata
        if meta is not None:
            link["core_metadata"] = {"sha256": meta.sha256}
            files[relpath + METADATA_SUFFIX] = file_entry(meta.sha256, meta.size, project,
                                                          version, now)
        data[ELINKS] = [l.to_json() for l in links] + [link]
        return data, files, bool(same)
