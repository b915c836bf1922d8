"""What simple pages show: projects and release links along an index's bases.

Links are collected along the resolution order (model.md 6): each stage that
has the project adds its release files unless a file of that name was taken
from an earlier stage; mirrors come last, with the links of their stored
upstream page, unless a private stage has the project and no mirror_whitelist
lets the mirror in (model.md 6.2), also when the reader may not read that stage.
Before a mirror's page is read, the caller's
``refresh`` makes it current (the mirror layer decides when to ask upstream).
Pages are kept per (index, project, stages hidden from the reader) with the serial
they were built at, and reused while storage reports no change to that project or
to any index configuration since.

The index's supply-chain policy (model/policy.py: minimum release age, constraints,
blocks) leaves files out of a built page and records them (``held``); a page holding a
file back for its age is kept only until the first such file is due.

Read permission (model/acl.py): the requested index must be readable by the
``reader`` (else its refusal), and bases the reader may not read are left out of
the order, so an index inheriting from a private base never shows it. ``reader``
None is an internal caller, who sees everything. The stages and their acl_read are
kept per requested index (``_Chain``), so a warm page costs one pass over them, and
none when all are public.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, Identity, Readers, check_read, \
    hidden_stages, listed_projects, public, readable_order, readers_of
from devpi_twisted.model.errors import DomainError, InvalidInput, NotFound
from devpi_twisted.model.indexes import resolution_order
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.pagelinks import Link, ProjectPage, allowed_mirrors, held_text, \
    links_of_mirror, links_of_version, version_of, versions_of
from devpi_twisted.model.policy import Policy, filter_links, policy_of
from devpi_twisted.model.releases import split_filename
from devpi_twisted.storage.interface import UNSTORED, MirrorRecord, Storage
from devpi_twisted.storage.values import IndexConfig, MirrorConfig

# refresh(mirror name, its config, project) -> "fresh" | "cached" | "missing", at once
# when no upstream request is needed, else awaitable
Refresh = Callable[[str, MirrorConfig, str], str | Awaitable[str]]
MirrorPage = Callable[[str, str], Awaitable[MirrorRecord | None]]  # (mirror, project)
Identify = Callable[[], Awaitable[Identity]]  # who asks, authenticated when needed
FRESH = "fresh"
OFFLINE = "offline"  # served from the cache, upstream never asked: only stored files count

PAGE_CACHE_SIZE = 4096


@attrs.frozen
class _Chain:
    """An index's resolution order with each stage's acl_read, as of ``serial``."""

    serial: int
    readers: Readers
    all_public: bool


class SimpleOps:
    def __init__(self, storage: Storage, mirror_page: MirrorPage | None = None) -> None:
        """``mirror_page``: where mirrors' cached pages are read (the mirror's, which
        also knows pages still being written); storage by default."""
        self._storage = storage
        self._mirror_page = mirror_page or self._stored_page
        self._pages: dict[tuple[str, str, tuple[str, ...]], ProjectPage] = {}
        self._chains: dict[str, _Chain] = {}

    async def _stored_page(self, name: str, project: str) -> MirrorRecord | None:
        user, index = name.split("/", 1)
        return await self._storage.get_mirror_project(user, index, project)

    async def _order(self, user: str, index: str, reader: Identity | None = None) -> list[str]:
        """The resolution order, without the stages ``reader`` may not read (refused if
        the first)."""
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        if f"{user}/{index}" not in configs:
            raise NotFound(f"The stage {user}/{index} could not be found.")
        order = resolution_order(f"{user}/{index}", configs.get)
        return readable_order(reader, order, lambda stage: configs[stage].acl_read)

    async def _chain(self, requested: str, project: str) -> _Chain:
        """The order and acl_read of ``requested``, reused while no config changed."""
        chain = self._chains.get(requested)
        if chain is not None and not self._storage.changed_since(project, chain.serial):
            return chain
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        serial = self._storage.serial
        if requested not in configs:
            raise NotFound(f"The stage {requested} could not be found.")
        readers = readers_of((stage, configs[stage].acl_read)
                             for stage in resolution_order(requested, configs.get))
        chain = _Chain(serial, readers, all(public(acl) for _, _, acl in readers))
        if len(self._chains) >= PAGE_CACHE_SIZE:
            self._chains.pop(next(iter(self._chains)))
        self._chains[requested] = chain
        return chain

    @staticmethod
    def policy(configs: Mapping[str, IndexConfig], order: list[str]) -> Policy:
        """The policy in force for ``order[0]`` (model/policy.py)."""
        return policy_of((stage, configs[stage].to_json()) for stage in order)

    async def project_names(self, user: str, index: str,
                            remote: Callable[[str, MirrorConfig], Any] | None = None,
                            reader: Identity | None = None) -> list[str]:
        """Normalised names along the bases, each once, stage by stage (of a mirror:
        ``remote(name, config)``, upstream's list if known, else the projects it holds
        a page of)."""
        names: dict[str, None] = {}
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        order = await self._order(user, index, reader)
        policy = self.policy(configs, order)
        for stage in order:
            owner, name = stage.split("/", 1)
            config = configs[stage]
            if isinstance(config, MirrorConfig):
                listed = remote(stage, config) if remote is not None else None
                found = list(listed) if listed is not None else \
                    await self._storage.list_mirror_projects(owner, name)
            else:
                found = await self._storage.list_projects(owner, name)
            own = stage == order[0] and not config.is_mirror
            for project in found:
                if own or policy.listed(project):
                    names.setdefault(project, None)
        return list(names) if reader is None else listed_projects(reader, names)

    async def listing(self, user: str, index: str,
                      stamp: Callable[[str, MirrorConfig], str | None],
                      reader: Identity | None = None) -> tuple[tuple[str, ...], str]:
        """What the project list of ``user/index`` seen by ``reader`` is built from: the
        stages of its order ``reader`` may read, and a text that changes whenever the list
        may: each mirror's ``stamp`` (which upstream list it has; None: none, its stored
        pages list it), and the last serial that changed any config or a stage listed
        from storage."""
        synced = self._storage.sync()  # commits of the other worker processes first
        if not synced.called:
            await synced
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        order = await self._order(user, index, reader)
        parts, stored = [], []
        for stage in order:
            config = configs[stage]
            listed = stamp(stage, config) if isinstance(config, MirrorConfig) else None
            if listed is None:
                stored.append(stage)
            else:
                parts.append(listed)
        return tuple(order), "|".join([str(self._storage.listing_serial(stored)), *parts])

    async def _stored(self, link: Link) -> bool:
        record = await self._storage.get_file(link.relpath)
        return record is not None and not record.deleted

    async def mirror_versions(self, user: str, index: str, name: str, refresh: Refresh | None,
                              ignore_bases: bool = False, reader: Identity | None = None
                              ) -> list[dict[str, dict[str, Any]]]:
        """Version data of ``name`` synthesised from the links of the mirrors ``user/index``
        consults (api.md 7.3: name, version, requires_python, yanked, ``+elinks``), one
        map per mirror in resolution order; [] when none has it. NotFound for an unknown
        index; a failing mirror as in ``project_view``."""
        mirrors = await self.mirrors_of(user, index, reader)
        if not mirrors or (ignore_bases and f"{user}/{index}" not in mirrors):
            return []
        try:
            page, _ = await self.project_view(user, index, name, refresh, reader)
        except NotFound:
            return []
        found: dict[str, dict[str, dict[str, Any]]] = {m: {} for m, _ in page.mirrors}
        for link in page.links:
            if link.stage not in found:
                continue
            try:
                version = split_filename(link.filename)[1]
            except InvalidInput:
                continue
            data = found[link.stage].setdefault(
                version, {"name": page.project, "version": version, "+elinks": []})
            if link.requires_python:
                data["requires_python"] = link.requires_python
            if link.yanked is not False and link.yanked is not None:
                data["yanked"] = link.yanked if link.yanked != "" else True
            data["+elinks"].append({
                "rel": "releasefile", "entrypath": link.relpath,
                "hash_spec": f"sha256={link.sha256}" if link.sha256 else "",
                "hashes": {"sha256": link.sha256} if link.sha256 else {}})
        return [versions for versions in found.values() if versions]

    async def mirrors_of(self, user: str, index: str, reader: Identity | None = None) -> list[str]:
        """The mirror indexes in ``user/index``'s resolution order (that ``reader`` may read)."""
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        return [s for s in await self._order(user, index, reader) if configs[s].is_mirror]

    async def project_page(self, user: str, index: str, name: str,
                           refresh: Refresh | None = None) -> ProjectPage:
        return (await self.project_view(user, index, name, refresh))[0]

    async def project_view(self, user: str, index: str, name: str,
                           refresh: Refresh | None = None,
                           reader: Identity | Identify | None = None
                           ) -> tuple[ProjectPage, bool]:
        """The links of ``name`` as seen from ``user/index`` by ``reader`` (an Identify:
        asked only if some stage is not public), and whether a mirror's part was served
        from its cache rather than confirmed by upstream just now (stale); NotFound if
        no index has it."""
        project = normalize_project(name)
        requested = f"{user}/{index}"
        synced = self._storage.sync()  # commits of the other worker processes first
        if not synced.called:
            await synced
        hidden: tuple[str, ...] = ()
        if reader is not None:
            chain = await self._chain(requested, project)
            if not isinstance(reader, Identity):  # pages of public chains are anyone's
                reader = ANONYMOUS_IDENTITY if chain.all_public else await reader()
            hidden = hidden_stages(reader, chain.readers, chain.all_public)
            if hidden[:1] == (requested,) or reader.scope is not None:
                check_read(reader, user, index, chain.readers[0][2], project)
        cached = self._pages.get((requested, project, hidden))
        if cached is not None and not self._storage.changed_since(project, cached.serial) \
                and (cached.due is None or time.time() < cached.due):
            fresh, _ = await self._refresh_mirrors(cached.mirrors, f"{user}/{index}", project,
                                                   refresh)
            if not self._storage.changed_since(project, cached.serial):
                return cached, not fresh
        return await self._build(user, index, project, refresh, hidden)

    async def _refresh_mirrors(self, mirrors: tuple[tuple[str, MirrorConfig], ...],
                               requested: str, project: str, refresh: Refresh | None
                               ) -> tuple[bool, set[str]]:
        """Bring the consulted mirrors' pages up to date; whether all were fresh, and
        the mirrors that are offline. A mirror other than the requested index that
        fails is left out (model.md 6.2)."""
        fresh, offline = True, set()
        for mirror, config in mirrors:
            if refresh is None:
                fresh = False
                continue
            try:
                state = refresh(mirror, config, project)
                if not isinstance(state, str):
                    state = await state
                fresh = state == FRESH and fresh
                if state == OFFLINE:
                    offline.add(mirror)
            except DomainError:
                if mirror == requested:
                    raise
                fresh = False
        return fresh, offline

    async def _build(self, user: str, index: str, project: str, refresh: Refresh | None,
                     hidden: tuple[str, ...] = ()) -> tuple[ProjectPage, bool]:
        serial = self._storage.serial
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        requested = f"{user}/{index}"
        full = await self._order(user, index)
        order = [stage for stage in full if stage not in hidden]
        records = {}
        for stage in full:
            if not configs[stage].is_mirror:
                owner, stage_index = stage.split("/", 1)
                records[stage] = await self._storage.get_versions(owner, stage_index, project)
        # stages hidden from the reader still keep the mirror out (dependency confusion:
        # a private base's project is never replaced by PyPI's of that name); their
        # links are not shown
        allowed = allowed_mirrors(configs, full, requested, project,
                             {stage: bool(found) for stage, found in records.items()})
        mirrors = tuple((m, c) for m in order
                        if m in allowed and isinstance(c := configs[m], MirrorConfig))
        fresh, offline = await self._refresh_mirrors(mirrors, requested, project, refresh)
        links: list[Link] = []
        taken: set[str] = set()
        versions: set[str] = set()
        found = provisional = False
        for stage in order:
            if stage in records:
                stage_links = []
                for record in records[stage]:
                    versions.add(record.version)
                    stage_links += links_of_version(stage, record.data)
                found = found or bool(records[stage])
            elif stage in allowed:
                mirrored = await self._mirror_page(stage, project)
                if mirrored is None:
                    continue
                provisional = provisional or mirrored.serial == UNSTORED
                stage_links = links_of_mirror(stage, mirrored.value)
                if stage in offline:  # only what can be served without upstream (mirror.md 8)
                    stage_links = [link for link in stage_links if await self._stored(link)]
                versions |= versions_of(stage_links)
                found = True
            else:
                continue
            for link in stage_links:
                if link.filename not in taken:
                    taken.add(link.filename)
                    links.append(link)
        if not found:
            raise NotFound(f"The project {project} does not exist.")
        policy = self.policy(configs, full)
        filtered = filter_links(policy, project, links, requested,
                                frozenset(s for s in full if configs[s].is_mirror), version_of,
                                time.time())
        if filtered.held:
            own = {r.version for r in records.get(requested, ())}
            versions = own | versions_of(filtered.kept)
        page = ProjectPage(requested, project, tuple(filtered.kept), tuple(sorted(versions)),
                           serial, mirrors, provisional, hidden, filtered.held, filtered.due,
                           held_text(filtered.held))
        if len(self._pages) >= PAGE_CACHE_SIZE:
            self._pages.pop(next(iter(self._pages)))
        self._pages[(requested, project, hidden)] = page
        return page, not fresh
