"""The browsing pages (WebPages): ``/`` (users and their indexes), ``/USER``,
``/USER/INDEX`` (configuration and projects, paged), ``/USER/INDEX/PROJECT`` (its
versions and where each comes from) and ``/USER/INDEX/PROJECT/VERSION`` (description,
metadata, files, tox results, docs, install snippets, actions), plus the login page
in the layout. The apps owning these URLs call them for browsers (content
negotiation stays with them); reading is refused as the JSON views refuse it.

Only what the visitor may read appears: users' indexes through ``list_users``
(model/ops.py), bases the visitor may not read are left out of an index's bases
(acl.shown_config: not even their names), versions come from readable stages only
(release_ops.stage_versions, simple.mirror_versions with the reader), projects
through acl.listed_projects (a token's project scope).

Speed: an index's project names are kept per serial, their latest versions until the
project changes; a
version page's rendered description is kept by content hash and its tox reports by
their sha256, so a warm page costs the reads the JSON view makes plus one template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devpi_twisted.mirror.urls import masked_url
from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, Identity, listed_projects
from devpi_twisted.model.errors import NotFound
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.policy import held_versions
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.push import may_upload
from devpi_twisted.model.release_ops import ReleaseOps
from devpi_twisted.model.releases import latest_version
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.storage.values import IndexConfig, MirrorConfig, StageConfig, version_data
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers
from devpi_twisted.web.pages import SimplePages
from devpi_twisted.web.ui import shaping, templating
from devpi_twisted.web.ui.details import VersionDetails
from devpi_twisted.web.ui.templating import layout, page, page_number, pages_of

PER_PAGE = 100  # projects on a page of an index
KEPT = 4096  # entries of each per-serial cache


def _bounded(cache: dict[Any, Any]) -> None:
    if len(cache) > KEPT:
        cache.clear()


class WebPages:
    """The browsing pages. Needs the server's, release and simple-page operations, the
    simple pages (a mirror's pages brought up to date as theirs are), the request
    helpers and the version details (descriptions, tox reports)."""

    def __init__(self, ops: ServerOps, releases: ReleaseOps, simple: SimpleOps,
                 pages: SimplePages, helpers: RequestHelpers, details: VersionDetails) -> None:
        self._ops = ops
        self._releases = releases
        self._simple = simple
        self._pages = pages
        self._helpers = helpers
        self._details = details
        self._names: dict[str, tuple[int, list[str]]] = {}
        self._latest: dict[tuple[str, str], tuple[int, str]] = {}

    async def context(self, request: HttpRequest) -> tuple[Identity, dict[str, Any]]:
        """Who asks, and the layout's context for them."""
        identity = await self._helpers.identity(request)
        return identity, layout(request, self._helpers.base(request), identity, self._ops.now())

    # -- users and indexes -----------------------------------------------------

    async def root(self, request: HttpRequest) -> bytes:
        identity, context = await self.context(request)
        users = await self._ops.list_users(identity)
        rows = [(name, view.get("title") or "", view.get("description") or "",
                 sorted(view["indexes"].items())) for name, view in sorted(users.items())]
        return page(request, "root.html", {**context, "users": rows})

    async def user(self, request: HttpRequest, user: str) -> bytes:
        identity, context = await self.context(request)
        view = await self._ops.get_user(user, identity)
        return page(request, "user.html", {**context, "user": user, "view": view,
                                           "indexes": sorted(view["indexes"].items())})

    async def _project_names(self, user: str, index: str) -> list[str]:
        """The index's own projects (a mirror's: those cached), sorted, per serial."""
        name, serial = f"{user}/{index}", self._ops.serial
        kept = self._names.get(name)
        if kept is None or kept[0] != serial:
            names = sorted(await self._releases.project_names(user, index), key=str.lower)
            _bounded(self._names)
            kept = self._names[name] = (serial, names)
        return kept[1]

    async def _latest_of(self, user: str, index: str, config: IndexConfig, project: str) -> str:
        """The newest version of an index's own project, kept until storage reports a
        change to the project (storage.changed_since, as the simple pages' cache)."""
        key, serial = (f"{user}/{index}", project), self._ops.serial
        kept = self._latest.get(key)
        if kept is not None and not self._releases.storage.changed_since(project, kept[0]):
            return kept[1]
        versions: list[str] = []
        if isinstance(config, MirrorConfig):
            record = await self._releases.storage.get_mirror_project(user, index, project)
            if record is not None:
                versions = list(shaping.mirror_versions(record.value))
        else:
            versions = [r.version for r in
                        await self._releases.storage.get_versions(user, index, project)]
        found = latest_version(versions) or ""
        _bounded(self._latest)
        self._latest[key] = (serial, found)
        return found

    async def index(self, request: HttpRequest, user: str, index: str, config: IndexConfig,
                    shown: Mapping[str, Any]) -> bytes:
        """An index the caller may read (checked by the caller), ``shown``: its config
        as the caller may see it (acl.shown_config)."""
        identity, context = await self.context(request)
        number = page_number(request)
        await self._ops.sync()
        names = listed_projects(identity, await self._project_names(user, index))
        start, end, count = pages_of(len(names), number, PER_PAGE)
        if number > count:
            raise NotFound(f"no page {number}: {user}/{index} has {count}")
        rows = [(name, await self._latest_of(user, index, config, name))
                for name in names[start:end]]
        settings = _settings(shown)
        manage = identity.username in ("root", user)
        return page(request, "index.html", {
            **context, "user": user, "index": index, "config": shown, "settings": settings,
            "bases": list(shown.get("bases") or ()), "mirror": config.is_mirror,
            "projects": rows, "total": len(names), "page": number, "pages": count,
            "manage": manage and context["session"]})

    # -- projects and versions ---------------------------------------------------

    async def releases(self, request: HttpRequest, user: str, index: str,
                       project: str) -> list[shaping.Release]:
        """The project's versions seen from the index by the caller, newest first;
        NotFound if none."""
        reader = await self._helpers.identity(request)
        found: list[tuple[str, list[tuple[str, Any]]]] = []
        try:
            for stage, records in await self._releases.stage_versions(user, index, project,
                                                                      reader):
                found.append((stage, [(r.version, r.data) for r in records]))
        except NotFound:
            pass
        mirrored = await self._simple.mirror_versions(user, index, project, self._pages.refresh,
                                                      False, reader)
        for versions in mirrored:
            for version, data in versions.items():
                parsed = version_data(data)
                found.append((shaping.stage_of(parsed, f"{user}/{index}"), [(version, parsed)]))
        releases = shaping.first_wins(found)
        if not releases:
            raise NotFound(f"no project {normalize_project(project)!r} on {user}/{index}")
        return releases

    async def project(self, request: HttpRequest, user: str, index: str, project: str) -> bytes:
        _, context = await self.context(request)
        releases = await self.releases(request, user, index, project)
        try:  # what the index's policy leaves out (model/policy.py), as ?policy lists it
            view, _ = await self._simple.project_view(user, index, project, self._pages.refresh,
                                                      await self._helpers.identity(request))
            held = held_versions(view.held, view.versions)
        except NotFound:
            held = []
        return page(request, "project.html", {
            **context, "user": user, "index": index, "project": project,
            "releases": releases, "here_index": f"{user}/{index}", "held": held})

    async def version(self, request: HttpRequest, user: str, index: str, project: str,
                      version: str, config: IndexConfig) -> bytes:
        identity, context = await self.context(request)
        release = shaping.resolve(await self.releases(request, user, index, project), version)
        if release is None:
            raise NotFound(f"The version {version} of project {project} does not exist.")
        own = release.stage == f"{user}/{index}" and isinstance(config, StageConfig)
        allowed = own and context["session"] and (
            identity.username in ("root", user) or may_upload(identity, config))
        details = await self._details.of(release)
        base = context["base"]
        simple = f"{base}/{templating.segment(user)}/{templating.segment(index)}/+simple/"
        requirement = f"{release.data.metadata.get('name') or project}=={release.version}"
        return page(request, "version.html", {
            **context, "user": user, "index": index, "project": project,
            "release": release, "meta": shaping.metadata_view(release.data.metadata),
            "description": details.description, "files": details.files,
            "pip": f"pip install --index-url {simple} {requirement}",
            "uv": f"uv pip install --index-url {simple} {requirement}",
            "yank": allowed, "delete": allowed and config.volatile})

    def login(self, request: HttpRequest, next_path: str, message: str = "",
              status: int = 200) -> bytes:
        """The login form in the layout (nobody is logged in on it)."""
        context = layout(request, self._helpers.base(request), ANONYMOUS_IDENTITY,
                         self._ops.now())
        body = page(request, "login.html", {**context, "next": next_path, "message": message},
                    status)
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Frame-Options", b"DENY")  # no login form in others' frames
        request.setHeader(b"Content-Security-Policy",
                          templating.PAGE_POLICY.replace(b"frame-ancestors 'self'",
                                                         b"frame-ancestors 'none'"))
        return body


def _settings(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The configuration rows of an index page (lists joined, a mirror URL masked)."""
    rows = [("type", str(config.get("type", "")))]
    for key in ("volatile", "acl_upload", "acl_toxresult_upload", "acl_read",
                "mirror_whitelist", "mirror_url", "mirror_cache_expiry",
                "mirror_no_project_list", "mirror_use_external_urls", "mirror_web_url_fmt"):
        if key not in config and key != "acl_read":
            continue
        # who may read: the JSON leaves out the default (everybody), the page says it
        value = config.get(key, [":ANONYMOUS:"])
        if key == "mirror_url":
            value = masked_url(str(value))
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "(nobody)"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        rows.append((key, str(value)))
    return rows
