"""The routes only the web interface has (WebApp, app ``web`` of web/routes.py): the
stylesheet, the ``+d/`` frame around uploaded documentation, and the three actions
offered to those allowed (POST forms with the session's CSRF token, checked when the
identity is found: web/helpers.py): edit an index's title and description, yank or
un-yank a version, delete a version of a volatile index. Each calls the domain
operation the JSON API calls and answers 303 back to the page. Also the renderers
of pages whose data other apps own: status, metrics and search results."""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping, Sequence
from typing import Any

from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, Identity
from devpi_twisted.model.errors import InvalidInput, NotFound
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.release_ops import ReleaseOps
from devpi_twisted.model.search import SearchResults
from devpi_twisted.web import sessions
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers, written
from devpi_twisted.web.metrics import RequestMetrics, Series
from devpi_twisted.web.ui import shaping
from devpi_twisted.web.ui.browse import WebPages
from devpi_twisted.web.ui.templating import layout, page, segment

STATIC = {"style.css": b"text/css; charset=utf-8"}
MAX_TITLE, MAX_DESCRIPTION, MAX_REASON = 200, 5000, 500


def _static(name: str) -> bytes:
    return importlib.resources.files("devpi_twisted.web.ui").joinpath("static", name).read_bytes()


class WebApp:
    """Routes of the web interface. Needs the server's and the release operations,
    the browsing pages and the request helpers."""

    def __init__(self, ops: ServerOps, releases: ReleaseOps, pages: WebPages,
                 helpers: RequestHelpers) -> None:
        self._ops = ops
        self._releases = releases
        self._pages = pages
        self._helpers = helpers
        self._static = {name: _static(name) for name in STATIC}

    async def static(self, request: HttpRequest, member: str) -> bytes:
        """Files of ui/static (the stylesheet), cached by browsers for a day."""
        if member not in self._static:
            raise NotFound(f"no static file {member[:100]}")
        body = self._static[member]
        request.setHeader(b"Content-Type", STATIC[member])
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.setHeader(b"Cache-Control", b"public, max-age=86400")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return body

    # -- documentation -----------------------------------------------------------

    async def docs_frame(self, request: HttpRequest, user: str, index: str, project: str,
                         version: str, member: str) -> bytes:
        """The docs page ``member`` in a sandboxed frame (its content: ``+doc/``);
        ``latest`` and ``stable``: of the newest (stable) version with docs here."""
        await self._helpers.readable(request, user, index, normalize_project(project))
        version = await self._docs_version(request, user, index, project, version)
        _, context = await self._pages.context(request)
        parts = "/".join(segment(p) for p in member.split("/") if p not in ("", ".", ".."))
        src = (f"{context['base']}/{segment(user)}/{segment(index)}/{segment(project)}/"
               f"{segment(version)}/+doc/{parts}")
        return page(request, "docs.html", {**context, "user": user, "index": index,
                                           "project": project, "version": version,
                                           "src": src})

    async def _docs_version(self, request: HttpRequest, user: str, index: str, project: str,
                            version: str) -> str:
        """``version`` if it has docs on this index, else the version ``latest`` or
        ``stable`` names among those that have; NotFound otherwise."""
        try:
            await self._releases.doc_zip(user, index, project, version)
            return version
        except NotFound:
            if version not in (shaping.LATEST, shaping.STABLE):
                raise
        releases = await self._pages.releases(request, user, index, project)
        documented = [r for r in releases if r.has_docs and r.stage == f"{user}/{index}"]
        found = shaping.resolve(documented, version)
        if found is None:
            raise NotFound(f"no documentation for {project} {version}")
        return found.version

    async def docs_frame_index(self, request: HttpRequest, user: str, index: str,
                               project: str, version: str) -> bytes:
        return await self.docs_frame(request, user, index, project, version, "index.html")

    # -- actions -----------------------------------------------------------------

    def _back(self, request: HttpRequest, path: str) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"Location", (self._helpers.base(request) + path).encode("utf-8"))
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    async def _identity(self, request: HttpRequest) -> tuple[Identity, dict[str, str]]:
        """Who posts the form (its CSRF token checked on the way) and its fields."""
        identity = await self._helpers.identity(request)
        if not sessions.is_form(request):
            raise InvalidInput("expected an HTML form (application/x-www-form-urlencoded)")
        return identity, sessions.read_form(request)

    async def edit_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        identity, form = await self._identity(request)
        title, description = form.get("title", ""), form.get("description", "")
        if len(title) > MAX_TITLE or len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"title at most {MAX_TITLE}, description at most "
                               f"{MAX_DESCRIPTION} characters")
        body = {"title": title.strip(), "description": description.strip()}
        written(request, await self._ops.modify_index(identity, user, index, body))
        return self._back(request, f"/{segment(user)}/{segment(index)}")

    async def yank(self, request: HttpRequest, user: str, index: str, project: str,
                   version: str) -> bytes:
        identity, form = await self._identity(request)
        reason = form.get("reason", "").strip()
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"a reason of at most {MAX_REASON} characters")
        yanked: bool | str = (reason or True) if form.get("yanked", "1") != "0" else False
        written(request, await self._releases.set_yanked(identity, user, index, project,
                                                         version, yanked))
        return self._back(request, f"/{segment(user)}/{segment(index)}/{segment(project)}/"
                                   f"{segment(version)}")

    async def delete(self, request: HttpRequest, user: str, index: str, project: str,
                     version: str) -> bytes:
        identity, _ = await self._identity(request)
        written(request, await self._releases.delete_version(identity, user, index, project,
                                                             version))
        try:
            await self._releases.project_versions(user, index, project, True)
        except NotFound:  # the last version: back to the index
            return self._back(request, f"/{segment(user)}/{segment(index)}")
        return self._back(request, f"/{segment(user)}/{segment(index)}/{segment(project)}")

    # -- pages of others' data ---------------------------------------------------

    async def status(self, request: HttpRequest, status: Mapping[str, Any]) -> bytes:
        _, context = await self._pages.context(request)
        return page(request, "status.html", {**context, "status": status})

    async def metrics(self, request: HttpRequest, series: Sequence[Series],
                      requests: RequestMetrics) -> bytes:
        _, context = await self._pages.context(request)
        rows = sorted((route, f"{method} {status}", count)
                      for (route, method, status), count in requests.requests.items())
        return page(request, "metrics.html", {**context, "series": series, "requests": rows})

    def search(self, request: HttpRequest, results: SearchResults) -> bytes:
        """The search page of ``results`` (the caller found the identity: its
        permissions already chose the hits)."""
        identity = getattr(request, "devpi_identity", ANONYMOUS_IDENTITY)
        context = layout(request, self._helpers.base(request),
                         identity if isinstance(identity, Identity) else ANONYMOUS_IDENTITY,
                         self._ops.now())
        pages = max(1, -(-results.total // max(1, results.per_page)))
        args = request.args or {}
        filters = [(name, args[key][0].decode("utf-8", "replace")[:200])
                   for name, key in (("user", b"user"), ("index", b"index")) if args.get(key)]
        return page(request, "search.html", {**context, "results": results, "pages": pages,
                                             "query": results.query, "filters": filters})

