"""Project and version views of an index and the changes to them (ProjectApp): the
JSON views, project configuration, yanking, deletion of projects, versions and
files, tox results, and the uploaded documentation served from its zip."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger

from devpi_twisted.archives import BadDocZip, open_doc_member
from devpi_twisted.model.errors import InvalidInput, NotFound, UnsupportedMedia
from devpi_twisted.model.acl import Identity
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.policy import held_versions
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.release_ops import IncomingFile, ReleaseOps
from devpi_twisted.model.devpi_api import project_config_view, version_view
from devpi_twisted.model.releases import api_view, with_mirrored
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.storage.adapter import shielded
from devpi_twisted.storage.blobs import BlobMissing, BlobReadStopped, BlobStore, ChunkPump
from devpi_twisted.web import render
from devpi_twisted.web.blobcopy import BlobCopies
from devpi_twisted.web.deps import HttpRequest, Offload
from devpi_twisted.web.files import content_type
from devpi_twisted.web.forms import spool_body
from devpi_twisted.web.helpers import RequestHelpers, flag, json_view, written
from devpi_twisted.web.pages import SimplePages
from devpi_twisted.web.policy import PolicyApp
from devpi_twisted.web.simple import is_installer
from devpi_twisted.web.ui.browse import WebPages

# Uploaded documentation runs in a sandbox: an opaque origin, so its scripts (search
# works) reach neither our cookies nor our API as the reader.
DOCS_POLICY = b"sandbox allow-scripts"
_log = Logger()


class ProjectApp:
    """``/USER/INDEX/PROJECT[/VERSION]`` views and changes, ``+doc`` pages, deletion of
    and tox results for ``+f`` files. Needs the server's and the release operations, the
    simple-page operations and the simple pages (installers asking for a project get
    its page; mirrors' pages are brought up to date), the request helpers, the blob
    store and local copies of its bodies, a thread to offload to, a staging directory,
    and the web pages browsers get (``web``; None: JSON only)."""

    def __init__(self, ops: ServerOps, releases: ReleaseOps, simple: SimpleOps,
                 pages: SimplePages, helpers: RequestHelpers, blobs: BlobStore,
                 copies: BlobCopies, offload: Offload, staging: Path,
                 web: WebPages | None = None, policy: PolicyApp | None = None) -> None:
        self._ops = ops
        self._policy = policy
        self._releases = releases
        self._simple = simple
        self._pages = pages
        self._helpers = helpers
        self._blobs = blobs
        self._copies = copies
        self._offload = offload
        self._staging = staging
        self._web = web

    def _api_links(self, request: HttpRequest, data: Mapping[str, Any]) -> dict[str, Any]:
        """Version data as the API shows it (model.releases.api_view), in the answer
        mode's shape (model/devpi_api.py)."""
        return version_view(api_view(data, self._helpers.base(request)), self._helpers.devpi_api)

    async def project_view(self, request: HttpRequest, user: str, index: str, project: str) -> bytes:
        if is_installer(request) and "application/json" not in render.accept(request):
            return await self._pages.simple_project(request, user, index, project)
        normalized = normalize_project(project)
        await self._helpers.readable(request, user, index, normalized)  # refused before anything
        if normalized != project:
            return self._helpers.redirect(request, f"/{user}/{index}/{normalized}/".encode())
        if self._policy is not None and flag(request, b"policy"):
            return await self._policy.project_policy(request, user, index, normalized)
        accept = render.accept(request)
        if "application/json" not in accept:
            if "text/html" in accept:
                if self._web is not None:
                    return await self._web.project(request, user, index, project)
                raise NotFound("no HTML view here; ask for application/json")
            raise UnsupportedMedia("ask for application/json")
        shape = (request.args.get(b"v") or [b"1"])[0].decode("utf-8", "replace") or "1"
        if shape not in ("1", "2"):
            raise InvalidInput(f"The requested result version must be 1 to 2, got {shape!r}")
        versions = await self._project_versions(request, user, index, project,
                                                flag(request, b"ignore_bases"))
        result = {v: self._api_links(request, d) for v, d in versions.items()}
        if shape == "1":
            return render.result(request, "projectconfig", result)
        config = await self._ops.project_config(user, index, project)
        inherited = await self._ops.inheritance_info(user, index, project)
        own = inherited["traversal_infos"][0]["has_project"] == "true"
        config = project_config_view(config, normalized, own, self._helpers.devpi_api)
        return render.result(request, "projectconfig_v2",
                             {"config": config, "inheritance_info": inherited, "versions": result})

    async def _project_versions(self, request: HttpRequest, user: str, index: str, project: str,
                                ignore_bases: bool = False) -> dict[str, dict[str, Any]]:
        """The versions of the stages (first wins), then those of the mirrors consulted
        (their links brought up to date first): later ones of a version go under
        ``+shadowing``; only of the stages the caller may read (refused if not the
        index). NotFound if none has the project."""
        reader = await self._helpers.identity(request)
        mirrored = await self._simple.mirror_versions(user, index, project, self._pages.refresh,
                                                      ignore_bases, reader)
        if not mirrored:
            versions = await self._releases.project_versions(user, index, project, ignore_bases,
                                                             reader)
        else:
            try:
                versions = await self._releases.project_versions(user, index, project,
                                                                 ignore_bases, reader)
            except NotFound:  # (the index exists: mirror_versions said so)
                versions = {}
            versions = with_mirrored(versions, mirrored)
        return await self._offered(user, index, project, reader, versions)

    async def _offered(self, user: str, index: str, project: str, reader: Identity,
                       versions: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``versions`` without those the index's policy holds back entirely (inherited
        from a stage: a mirror's are left out of its links already)."""
        try:
            page, _ = await self._simple.project_view(user, index, project,
                                                      self._pages.refresh, reader)
        except NotFound:
            return versions
        if not page.held:
            return versions
        gone = {h["version"] for h in held_versions(page.held, page.versions)
                if not h["offered"]}
        return {v: data for v, data in versions.items() if v not in gone}

    async def modify_project(self, request: HttpRequest, user: str, index: str, project: str) -> bytes:
        """devpi 7's project configuration: ``["inheritance_rules=allow all"]`` lets the
        mirrors in the bases supply this project although a stage has it (model.md 6.2)."""
        changed = await self._ops.modify_project_config(
            await self._helpers.identity(request), user, index, project, render.read_json(request))
        written(request, changed)
        return render.result(request, "projectconfig", project_config_view(
            changed.result, normalize_project(project), True, self._helpers.devpi_api))

    async def version_view(self, request: HttpRequest, user: str, index: str, project: str,
                           version: str) -> bytes:
        normalized = normalize_project(project)
        config = await self._helpers.readable(request, user, index, normalized)  # refused first
        if normalized != project:
            return self._helpers.redirect(request,
                                          f"/{user}/{index}/{normalized}/{version}".encode())
        if self._web is not None and render.browser(request):
            return await self._web.version(request, user, index, project, version, config)
        json_view(request)
        versions = await self._project_versions(request, user, index, project)
        if version not in versions:
            raise NotFound(f"The version {version} of project {normalized} does not exist.")
        return render.result(request, "versiondata", self._api_links(request, versions[version]))

    async def yank_version(self, request: HttpRequest, user: str, index: str, project: str,
                           version: str) -> bytes:
        """``{"yanked": true | "reason" | false}``, optionally ``"filename"`` for one file."""
        body = render.read_json(request)
        if not isinstance(body, Mapping) or "yanked" not in body:
            raise InvalidInput('expected {"yanked": true, false or a reason}')
        changed = await self._releases.set_yanked(
            await self._helpers.identity(request), user, index, project, version, body["yanked"],
            body.get("filename"))
        written(request, changed)
        return render.message(request, changed.message or "")

    async def delete_project(self, request: HttpRequest, user: str, index: str, project: str) -> bytes:
        changed = await self._releases.delete_project(
            await self._helpers.identity(request), user, index, project, flag(request, b"force"))
        # a mirror's page: ask upstream on the next request
        self._pages.forget(f"{user}/{index}", normalize_project(project))
        written(request, changed)
        return render.message(request, changed.message or "")

    async def delete_version(self, request: HttpRequest, user: str, index: str, project: str,
                             version: str) -> bytes:
        changed = await self._releases.delete_version(
            await self._helpers.identity(request), user, index, project, version,
            flag(request, b"force"))
        written(request, changed)
        return render.message(request, changed.message or "")

    async def delete_file(self, request: HttpRequest, user: str, index: str, rest: str) -> bytes:
        changed = await self._releases.delete_file(
            await self._helpers.identity(request), user, index, f"{user}/{index}/+f/{rest}",
            flag(request, b"force"))
        written(request, changed)
        return render.message(request, changed.message or "")

    async def docs_index(self, request: HttpRequest, user: str, index: str, project: str,
                         version: str) -> bytes:
        """``+doc/`` (and ``+doc``): the documentation's ``index.html``."""
        return await self.docs(request, user, index, project, version, "")

    async def docs(self, request: HttpRequest, user: str, index: str, project: str, version: str,
                   member: str) -> bytes:
        """A page of the uploaded documentation, streamed from the doc zip: memory stays
        at a chunk or two however far the page inflates. Served in a sandbox (no script
        of the docs acts in our origin) and never sniffed into another type."""
        await self._helpers.readable(request, user, index, normalize_project(project))
        relpath, sha256 = await self._releases.doc_zip(user, index, project, version)
        local = self._blobs.local_path(relpath)
        if local is None:  # a database store: keep one copy per doc zip on disk to read from
            local = self._staging / f"docs-{sha256}.zip"
            if not local.exists():
                await self._copies.copy_out(relpath, local)
        try:
            opened = await self._offload(open_doc_member, local, member)
        except BadDocZip as e:
            raise NotFound(f"documentation unreadable: {e}") from None
        if opened is None:
            raise NotFound(f"no page {member} in the documentation")
        try:
            request.setHeader(b"Content-Type", content_type(member or "index.html"))
            request.setHeader(b"Content-Length", b"%d" % opened.size)
            request.setHeader(b"X-Content-Type-Options", b"nosniff")
            request.setHeader(b"Content-Security-Policy", DOCS_POLICY)
            if opened.size and request.method != b"HEAD":
                pump = ChunkPump(IConsumer(request), lambda _, count: self._offload(opened.read, count),
                                 0, opened.size)
                await shielded(Deferred.fromCoroutine(pump.run()))
        except (BlobReadStopped, BlobMissing, BadDocZip) as e:  # gone, or a damaged member
            if not isinstance(e, BlobReadStopped):
                _log.warn("documentation {relpath} {member}: {error}", relpath=relpath,
                          member=member, error=e)
            if request.producer is not None and request.channel is not None:
                request.unregisterProducer()
            request.loseConnection()
        finally:
            await self._offload(opened.close)
        return b""

    async def toxresult(self, request: HttpRequest, user: str, index: str, rest: str) -> bytes:
        """A tox report: a JSON object (no bigger than the JSON limit, DevpiRequest);
        the original bytes are what is stored."""
        if not isinstance(render.read_json(request), Mapping):
            raise InvalidInput("a tox result must be a JSON object")
        spooled = await self._offload(spool_body, request.content, self._staging)
        try:
            identity = await self._helpers.identity(request)
            stored = await self._releases.add_toxresult(
                identity, user, index, f"{user}/{index}/+f/{rest}",
                IncomingFile(spooled.filename, spooled.path, spooled.size, spooled.sha256))
        finally:
            spooled.path.unlink(missing_ok=True)
        return render.result(request, "toxresultpath", stored)
