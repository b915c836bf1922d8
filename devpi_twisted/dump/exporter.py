"""Exporting a storage and its blobs as a devpi-server 6 dump (format.py), or 7's
(``dump_format=7``: dumpversion 3, translated by v3.py).

File bodies are copied (or hard-linked from the filesystem store with
``hard_links``) first; ``dataindex.json`` is written last, through a temporary name,
so a dump directory that holds it is complete.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import attrs
from twisted.internet.interfaces import IConsumer, IProducer
from zope.interface import implementer

from devpi_twisted.dump import format as fmt
from devpi_twisted.dump.format import DOCZIP, RELEASEFILE, TOXRESULT, DumpError
from devpi_twisted.dump.hooks import HOOKS_KEY, export_hooks
from devpi_twisted.dump.importer import PARALLEL, bounded
from devpi_twisted.dump.progress import Progress
from devpi_twisted.dump.v3 import V3, config_to_v3, last_modified_to_v3, projects_to_v3, when_to_v3
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.releases import split_filename
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import Storage
from devpi_twisted.storage.values import FileLink


@implementer(IConsumer)
class _FileConsumer:
    """Writes what a blob store's ``read`` produces into an open file."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self.producer: IProducer | None = None

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self._target.write(data)


def _copy_or_link(source: Path, target: Path, hard_link: bool) -> bool:
    """False if ``source`` is missing."""
    if not os.path.isfile(source):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if hard_link:
        try:
            os.link(source, target)
            return True
        except OSError:
            pass  # another file system: copy
    shutil.copyfile(source, target)
    return True


@attrs.frozen
class ExportSummary:
    users: int
    indexes: int
    files: int
    seconds: float
    serial: int


class Exporter:
    def __init__(self, storage: Storage, blobs: BlobStore, directory: Path,
                 offload: Callable[..., Awaitable[Any]], out: IO[str], server_version: str,
                 hard_links: bool = False, include_mirrored_files: bool = False,
                 dump_format: int = 6) -> None:
        self._storage = storage
        self._blobs = blobs
        self._dir = directory
        self._offload = offload
        self._out = out
        self._version = server_version
        self._hard_links = hard_links
        self._mirrored = include_mirrored_files
        self._v3 = dump_format == 7
        self._progress = Progress("exported", 0, out)
        self._missing: list[str] = []
        self._copies: list[tuple[str, str]] = []  # (blob key, path in the dump)

    async def run(self) -> ExportSummary:
        serial = self._storage.serial
        data = fmt.header(self._version, V3 if self._v3 else fmt.DUMPVERSION)
        users = await self._storage.list_users()
        data["users"] = {u.name: fmt.user_for_dump(u.name, u.profile, u.pwhash) for u in users}
        data["indexes"] = {}
        for record in await self._storage.list_indexes():
            dumped: dict[str, Any] = {"indexconfig": record.config.to_json()}
            if not record.config.is_mirror:
                dumped["projects"], dumped["files"] = await self._stage(record.user, record.index)
            elif self._mirrored:
                projects, files = await self._mirror(record.user, record.index)
                if files:
                    dumped["projects"], dumped["files"] = projects, files
            if self._v3:
                dumped["indexconfig"], whitelist = config_to_v3(dumped["indexconfig"])
                if "projects" in dumped:
                    dumped["projects"] = projects_to_v3(dumped["projects"], whitelist)
                for desc in dumped.get("files", ()):
                    desc["log"] = when_to_v3(desc["log"])
            data["indexes"][record.name] = dumped
        hooks = await export_hooks(self._storage)
        if hooks:
            data[HOOKS_KEY] = hooks
        await bounded(self._copies, self._copy, PARALLEL)
        await self._storage.poll()
        if self._storage.serial != serial:
            self._out.write(f"devpi-twisted: warning: the state changed while it was exported "
                            f"(serial {serial} -> {self._storage.serial}); the dump may mix both\n")
        if self._missing:
            raise DumpError([f"the body of {p} is missing from the store" for p in self._missing])
        target = self._dir / fmt.DATAINDEX
        temporary = self._dir / (fmt.DATAINDEX + ".tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(temporary, target)
        seconds = self._progress.done()
        return ExportSummary(len(users), len(data["indexes"]), self._progress.count, seconds, serial)

    async def _copy(self, job: tuple[str, str]) -> None:
        key, dump_path = job
        target = self._dir.joinpath(*dump_path.split("/"))
        local = self._blobs.local_path(key)
        if local is not None:
            if not await self._offload(_copy_or_link, local, target, self._hard_links):
                self._missing.append(key)
                return
        else:
            if not await self._blobs.exists(key):
                self._missing.append(key)
                return
            await self._offload(lambda: target.parent.mkdir(parents=True, exist_ok=True))
            with open(target, "wb") as f:
                await self._blobs.read(key, _FileConsumer(f))
        self._progress.step()

    async def _entry(self, link: FileLink, project: str, version: str) -> dict[str, Any]:
        record = await self._storage.get_file(link.entrypath)
        entry = dict(record.entry) if record is not None and not record.deleted else {}
        entry.setdefault("hash_spec", link.hash_spec)
        entry.setdefault("hashes", dict(link.hashes))
        entry.setdefault("project", project)
        entry.setdefault("version", version)
        dumped = fmt.entry_for_dump(entry)
        size = entry.get("size", link.size)
        if self._v3:
            if isinstance(size, int):
                dumped["size"] = size  # (devpi 7 checks it)
            if "last_modified" in dumped:
                dumped["last_modified"] = last_modified_to_v3(dumped["last_modified"])
        return dumped

    async def _stage(self, user: str, index: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        name = f"{user}/{index}"
        projects: dict[str, Any] = {}
        files: list[dict[str, Any]] = []
        for project in await self._storage.list_projects(user, index):
            versions = {}
            for record in sorted(await self._storage.get_versions(user, index, project),
                                 key=lambda r: r.version):
                versions[record.version] = dict(record.data.metadata)
                links = record.data.links
                by_path = {link.entrypath: link for link in links}
                for link in links:
                    rel = link.rel
                    filename = link.filename
                    desc: dict[str, Any] = {"type": rel, "projectname": project,
                                            "version": record.version, "log": list(link.log)}
                    if rel == RELEASEFILE:
                        path = fmt.release_dump_path(name, project, record.version, filename)
                    elif rel == DOCZIP:
                        path = fmt.doczip_dump_path(name, project, record.version)
                    elif rel == TOXRESULT:
                        release = by_path.get(link.for_entrypath or "")
                        spec = release.hash_spec if release else ""
                        path = fmt.toxresult_dump_path(name, project, spec or "unknown", filename)
                        desc["for_entrypath"] = link.for_entrypath
                    else:
                        continue
                    self._copies.append((link.entrypath, path))
                    stored = link.to_json()  # (the extra keys as stored, when they are)
                    extra = {k: stored[k] for k in fmt.EXTRA_KEYS if k in stored}
                    if extra:
                        desc[fmt.EXTRA] = extra
                    desc["relpath"] = path
                    desc["entrymapping"] = await self._entry(link, project, record.version)
                    files.append(desc)
            projects[project] = versions
        return projects, files

    async def _mirror(self, user: str, index: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Downloaded files of a mirror (``--include-mirrored-files``), with their versions."""
        name = f"{user}/{index}"
        projects: dict[str, dict[str, Any]] = {}
        files: list[dict[str, Any]] = []
        for project in await self._storage.list_mirror_projects(user, index):
            page = await self._storage.get_mirror_project(user, index, project)
            for link in (page.value.get("links", []) if page is not None else []):
                record = await self._storage.get_file(str(link.get("entrypath")))
                if record is None or record.deleted or not record.entry.get("last_modified"):
                    continue  # never downloaded
                filename = str(link.get("filename") or posixpath.basename(str(link["entrypath"])))
                try:
                    version = str(record.entry.get("version") or split_filename(filename)[1])
                except InvalidInput:
                    continue
                projects.setdefault(project, {})[version] = {
                    "name": project, "version": version,
                    "requires_python": link.get("requires_python"),
                    "yanked": link.get("yanked", False)}
                path = fmt.release_dump_path(name, project, version, filename)
                self._copies.append((str(link["entrypath"]), path))
                entry = fmt.entry_for_dump(record.entry)
                entry.setdefault("url", link.get("url"))
                files.append({"type": RELEASEFILE, "projectname": project, "version": version,
                              "relpath": path, "entrymapping": entry, "log": []})
        return projects, files
