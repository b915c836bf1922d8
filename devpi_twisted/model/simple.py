"""What simple pages show: projects and release links along an index's bases.

Links are collected along the resolution order (model.md 6): each stage that
has the project adds its release files unless a file of that name was taken
from an earlier stage. Mirror indexes contribute nothing until the mirror
exists (issue 6). Pages are kept per (index, project) with the serial they
were built at, and reused while storage reports no change to that project or
to any index configuration since.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from devpi_twisted.model.errors import NotFound
from devpi_twisted.model.indexes import MIRROR, resolution_order
from devpi_twisted.model.names import normalize_project
from devpi_twisted.storage.interface import Storage

PAGE_CACHE_SIZE = 4096


@attrs.frozen
class Link:
    stage: str
    filename: str
    relpath: str
    sha256: str | None
    requires_python: str | None = None
    yanked: bool | str = False
    size: int | None = None
    upload_time: str | None = None
    core_metadata: str | None = None  # sha256 of the PEP 658 metadata file


@attrs.frozen
class ProjectPage:
    index: str
    project: str
    links: tuple[Link, ...]
    versions: tuple[str, ...]
    serial: int


def _links_of_version(stage: str, data: Mapping[str, Any]) -> list[Link]:
    found = []
    for link in data.get("+elinks", []):
        if link.get("rel") != "releasefile":
            continue
        relpath = str(link["entrypath"])
        found.append(Link(
            stage=stage, filename=relpath.rsplit("/", 1)[-1], relpath=relpath,
            sha256=link.get("hashes", {}).get("sha256"),
            requires_python=data.get("requires_python") or None,
            yanked=link.get("yanked", False), size=link.get("size"),
            upload_time=link.get("upload_time"),
            core_metadata=(link.get("core_metadata") or {}).get("sha256")))
    return found


class SimpleOps:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._pages: dict[tuple[str, str], ProjectPage] = {}

    async def _order(self, user: str, index: str) -> list[str]:
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        if f"{user}/{index}" not in configs:
            raise NotFound(f"The stage {user}/{index} could not be found.")
        return resolution_order(f"{user}/{index}", configs.get)

    async def project_names(self, user: str, index: str) -> list[str]:
        """Normalised names along the bases, each once, stage by stage."""
        names: dict[str, None] = {}
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        for stage in await self._order(user, index):
            if configs[stage].get("type") == MIRROR:
                continue
            owner, name = stage.split("/", 1)
            for project in await self._storage.list_projects(owner, name):
                names.setdefault(project, None)
        return list(names)

    async def project_page(self, user: str, index: str, name: str) -> ProjectPage:
        """The links of ``name`` as seen from ``user/index``; NotFound if no stage has it."""
        project = normalize_project(name)
        key = (f"{user}/{index}", project)
        cached = self._pages.get(key)
        if cached is not None and not self._storage.changed_since(project, cached.serial):
            return cached
        serial = self._storage.serial
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        links: list[Link] = []
        taken: set[str] = set()
        versions: set[str] = set()
        found = False
        for stage in await self._order(user, index):
            if configs[stage].get("type") == MIRROR:
                continue
            owner, stage_index = stage.split("/", 1)
            records = await self._storage.get_versions(owner, stage_index, project)
            found = found or bool(records)
            for record in records:
                versions.add(record.version)
                for link in _links_of_version(stage, record.data):
                    if link.filename not in taken:
                        taken.add(link.filename)
                        links.append(link)
        if not found:
            raise NotFound(f"The project {project} does not exist.")
        page = ProjectPage(f"{user}/{index}", project, tuple(links), tuple(sorted(versions)), serial)
        if len(self._pages) >= PAGE_CACHE_SIZE:
            self._pages.pop(next(iter(self._pages)))
        self._pages[key] = page
        return page
