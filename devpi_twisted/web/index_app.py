"""Routes of an index's content: the upload form, simple pages, project views (release
files are served by web/files.py).

Upload errors carry their message in the HTTP reason phrase where devpi's do:
twine and devpi-client show the reason phrase to the user (spec/api.md 8).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.protocols.ftp import FileConsumer
from twisted.web.iweb import IRequest

from devpi_twisted.mirror.cache import CACHED, Mirror, MirrorFailed
from devpi_twisted.model.errors import (
    DomainError, InvalidInput, NotFound, TooLarge, Unauthenticated, UnsupportedMedia,
    UpstreamFailed,
)
from devpi_twisted.model.releases import api_view, with_mirrored
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.release_ops import (
    DOCZIP, BadForm, Identical, IncomingFile, IncomingMetadata, ReleaseOps, StageMissing,
)
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.replication.protocol import REPLICA_UUID
from devpi_twisted.archives import BadDocZip, open_doc_member
from devpi_twisted.storage.adapter import shielded
from devpi_twisted.storage.blobs import BlobMissing, BlobReadStopped, BlobStore, ChunkPump
from devpi_twisted.web import render
from devpi_twisted.web.app import ManagementApp, _flag, _route
from devpi_twisted.web.fast import FastRoutes
from devpi_twisted.web.files import FileRoutes, content_type
from devpi_twisted.web.metrics import RequestMetrics
from devpi_twisted.web.ops_routes import OpsRoutes
from devpi_twisted.web.replication import ReplicationRoutes
from devpi_twisted.web.forms import check_archive, read_upload, spool_body
from devpi_twisted.web.simple import is_installer, render_project, render_project_list, wants_json
from devpi_twisted.web.site import ServerInfo

RENDERED_PAGES = 4096
# upload refusals whose status line is the standard one in devpi (its reason phrase then
# names no cause): the message stays in the body
PLAIN_REASON = (Unauthenticated, StageMissing, BadForm, TooLarge)
# Uploaded documentation runs in a sandbox: an opaque origin, so its scripts (search
# works) reach neither our cookies nor our API as the reader.
DOCS_POLICY = b"sandbox allow-scripts"
_log = Logger()
Offload = Callable[..., Deferred[Any]]


def _reason(text: str) -> bytes:
    return " ".join(text.split()).encode("latin-1", "replace")[:400]


class IndexApp(FileRoutes, OpsRoutes, ReplicationRoutes):
    app = ManagementApp.app

    def __init__(self, ops: ServerOps, info: ServerInfo, releases: ReleaseOps, simple: SimpleOps,
                 blobs: BlobStore, offload: Offload, staging: Path, http: Any = None,
                 mirror: Mirror | None = None, metrics: RequestMetrics | None = None,
                 feed: Any = None, replica: Any = None) -> None:
        super().__init__(ops, info)
        self._metrics = metrics if metrics is not None else RequestMetrics()
        self._feed = feed  # a primary's changelog feed (web/replication.py)
        self._replica = replica  # a replica's loop: files and mirror pages via the primary
        self._http = http
        self._mirror = mirror
        self._rendered: dict[tuple[int, bool, int], tuple[Any, bytes, bytes]] = {}
        self._releases = releases
        self._simple = simple
        self._blobs = blobs
        self._offload = offload
        self._staging = staging
        self.file_stats = {"mirror_file_hits": 0, "accel_redirects": 0}

    def resource(self) -> Any:
        return FastRoutes(self, super().resource())

    # -- upload ------------------------------------------------------------------------

    @_route(app, "/<user>/<index>", ["POST", "PUSH"])
    async def upload(self, request: IRequest, user: str, index: str) -> bytes:
        self._check_segment(user, index)
        ctype = (request.getHeader(b"Content-Type") or b"").decode("latin-1")
        identity = await self._identity(request)
        media = ctype.split(";", 1)[0].strip().lower()
        if request.method == b"PUSH" or media not in (
                "multipart/form-data", "application/x-www-form-urlencoded"):
            body = render.read_json(request)
            if isinstance(body, Mapping) and not body.get("targetindex") and "posturl" in body:
                ok, log = await self._releases.push_external(
                    identity, user, index, body, self._local_copy, self._post_form,
                    offline=self._mirror is not None and self._mirror.offline)
                return render.result(request, "actionlog", log, status=200 if ok else 502)
            log = await self._releases.push(identity, user, index, body, self._copy_blob)
            return render.result(request, "actionlog", log)
        try:
            await self._releases.check_upload(identity, user, index)
            form, metadata = await self._offload(read_upload, request.content, ctype, self._staging)
        except DomainError as e:
            return self._upload_error(request, e)
        try:
            content = form.files.get("content")
            incoming = None
            if content is not None:
                incoming = IncomingFile(
                    content.filename, content.path, content.size, content.sha256,
                    None if metadata is None else IncomingMetadata(
                        metadata.path, metadata.size, metadata.sha256))
            written = await self._releases.submit_form(identity, user, index, form.fields, incoming,
                                                       self._check_archive)
        except Identical as e:
            request.setResponseCode(200, _reason(e.message))
            return b""
        except DomainError as e:
            return self._upload_error(request, e)
        finally:
            form.discard()
            if metadata is not None:
                metadata.path.unlink(missing_ok=True)
        self._written(request, written)
        request.setResponseCode(200)
        return b""

    @staticmethod
    def _upload_error(request: IRequest, e: DomainError) -> bytes:
        """A refused upload: the message in the body, and in the reason phrase where devpi
        puts its own there (twine and devpi-client print it); a missing login, a missing
        index and a body that is no form get the plain phrase ("401 Unauthorized"), as
        devpi answers them before its form handling speaks."""
        body = render.domain_error(request, e)
        if not isinstance(e, PLAIN_REASON):
            request.setResponseCode(request.code, _reason(e.message))
        return body

    async def _check_archive(self, content: IncomingFile, rel: str) -> None:
        await self._offload(check_archive, content.path, content.filename, rel == DOCZIP)

    async def _copy_blob(self, source: str, target: str, sha256: str) -> None:
        """A file body copied within the store (through a staging file for the database store)."""
        local = self._blobs.local_path(source)
        if local is not None:
            await self._blobs.put_file(target, local, sha256)
            return
        spooled = self._staging / f"push-{os.getpid()}-{id(target)}"
        await self._copy_out(source, spooled)
        try:
            await self._blobs.put_file(target, spooled, sha256)
        finally:
            spooled.unlink(missing_ok=True)

    @asynccontextmanager
    async def _local_copy(self, relpath: str) -> AsyncIterator[Path]:
        """A local path holding a file body for as long as the context lasts."""
        local = self._blobs.local_path(relpath)
        if local is not None:
            yield local
            return
        spooled = self._staging / f"out-{os.getpid()}-{id(relpath)}"
        await self._copy_out(relpath, spooled)
        try:
            yield spooled
        finally:
            spooled.unlink(missing_ok=True)

    async def _post_form(self, url: str, auth: tuple[str, str], fields: list[tuple[str, str]],
                         file: tuple[str, Path] | None) -> tuple[int, str]:
        """POST a legacy upload form to another index server; (status, text), -1 if unreachable."""
        try:
            if file is None:
                response = await self._http.post(url, data=fields, auth=auth, timeout=60)
            else:
                with open(file[1], "rb") as body:
                    response = await self._http.post(
                        url, data=fields, files={"content": (file[0], body)}, auth=auth, timeout=300)
            text = (await response.text())[:500]
            return response.code, text
        except Exception as e:  # connection refused, timeouts, TLS: reported in the action log
            return -1, f"exception on posting to {url}: {e}"

    async def _copy_out(self, relpath: str, path: Path) -> None:
        """A file body written to a local file (renamed into place when complete)."""
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".part-")
        partial = Path(name)  # unique: two requests may copy the same body at once
        try:
            with os.fdopen(fd, "wb") as out:
                await self._blobs.read(relpath, FileConsumer(out))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)

    # -- simple pages ------------------------------------------------------------------

    def _installer_or_json(self, request: IRequest) -> bool:
        return is_installer(request) or wants_json(request)

    @_route(app, "/<user>/<index>/+simple/", ["GET"])
    async def simple_list(self, request: IRequest, user: str, index: str) -> bytes:
        self._check_segment(user, index)
        if not request.path.endswith(b"/") and not self._installer_or_json(request):
            return self._redirect(request, request.path + b"/")
        names = await self._simple.project_names(
            user, index, self._mirror.names if self._mirror is not None else None)
        body, ctype = render_project_list(request, f"{user}/{index}", names)
        return self._page(request, body, ctype)

    @_route(app, "/<user>/<index>/+simple/<project>/", ["GET"])
    async def simple_project(self, request: IRequest, user: str, index: str, project: str) -> bytes:
        self._check_segment(user, index, project)
        if not project.isascii():
            raise InvalidInput("unicode project names not allowed")
        normalized = normalize_project(project)
        if normalized != project:
            return self._redirect(request, f"/{user}/{index}/+simple/{normalized}/".encode())
        if not request.path.endswith(b"/") and not self._installer_or_json(request):
            return self._redirect(request, request.path + b"/")
        page, stale = await self._simple.project_view(user, index, project, self._refresh)
        if page.provisional and request.getHeader(REPLICA_UUID) and self._mirror is not None:
            for mirror, _ in page.mirrors:  # a replica waits for the serial in our answer
                await self._mirror.page_stored(mirror, page.project)
        if stale:  # a front proxy must not keep a page built from a cache (mirror.md 6)
            now = _http_now()
            request.setHeader(b"Cache-Control", b"max-age=0, must-revalidate, no-cache, no-store")
            request.setHeader(b"Expires", now)
            request.setHeader(b"Last-Modified", now)
            request.setHeader(b"Pragma", b"no-cache")
        as_json = wants_json(request)
        if not page.provisional:
            etag = b'"%d-%s"' % (page.serial, b"json" if as_json else b"html")
            request.setHeader(b"ETag", etag)
            if request.getHeader(b"If-None-Match") == etag:
                request.setResponseCode(304)
                return b""
        # the same page object renders the same bytes for the same format and URL depth
        key = (id(page), as_json, len(request.prepath) + len(request.postpath))
        cached = self._rendered.get(key)
        if cached is None or cached[0] is not page:
            if len(self._rendered) >= RENDERED_PAGES:
                self._rendered.pop(next(iter(self._rendered)))
            cached = self._rendered[key] = (page, *render_project(request, page))
        _, body, ctype = cached
        return self._page(request, body, ctype)

    def _more_status(self) -> dict[str, Any]:
        more: dict[str, Any] = {"replication": dict(self.replication_state()),
                                "replication-errors": {}, "cache": {**self.file_stats}}
        copies = self._blobs.copy_stats() if self._blobs is not None else {}
        if copies:
            more["cache"]["blob_copies"] = copies
        more.update(self._replication_status())
        if self._replica is not None:
            more.update(self._replica.status())
        if self._mirror is None:
            return more
        more["cache"].update(self._mirror.stats)
        mirror = self._mirror
        return {**more, "mirror": {**mirror.stats, "upstream": dict(mirror.upstream_stats),
                                   "offline": mirror.offline}}

    def _status_metrics(self) -> list[Any]:
        return self.status_metrics()

    def _refresh(self, name: str, config: Mapping[str, Any], project: str) -> Any:
        """Bring a mirror's page of ``project`` up to date (the domain's Refresh): the
        state at once when the cache answers, else a Deferred of it."""
        if self._mirror is None:
            return CACHED
        known = self._mirror.known(name, config, project)
        if known is not None:
            return known
        return Deferred.fromCoroutine(self._mirror.ensure(name, config, project)).addErrback(
            _upstream_failed)

    @_route(app, "/<user>/<index>/+simple/<project>/refresh", ["POST"])
    async def refresh_project(self, request: IRequest, user: str, index: str, project: str) -> bytes:
        """Ask upstream again for ``project`` on every mirror the index inherits from."""
        self._check_segment(user, index, project)
        project = normalize_project(project)
        if self._mirror is not None:  # asked here and now, so every worker sees the result
            for name in await self._simple.mirrors_of(user, index):
                self._mirror.forget(name, project)
                try:
                    await self._mirror.ensure(name, await self._ops.get_index(*name.split("/", 1)),
                                              project)
                except MirrorFailed:
                    pass  # the page request that follows reports it
        return self._redirect(request, f"/{user}/{index}/+simple/{project}/".encode())

    @staticmethod
    def _page(request: IRequest, body: bytes, ctype: bytes) -> bytes:
        request.setHeader(b"Content-Type", ctype)
        request.setHeader(b"Vary", b"Accept, User-Agent")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        return body

    def _redirect(self, request: IRequest, path: bytes) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"Location", self._base(request).encode() + path)
        request.setHeader(b"Vary", b"Accept, User-Agent")
        return b""

    async def _index_projects(self, user: str, index: str) -> list[str]:
        return await self._releases.project_names(user, index)

    async def _installer_listing(self, request: IRequest, user: str, index: str) -> bytes | None:
        if not self._installer_or_json(request) or "application/json" in render.accept(request):
            return None
        names = await self._simple.project_names(
            user, index, self._mirror.names if self._mirror is not None else None)
        body, ctype = render_project_list(request, f"{user}/{index}", names)
        return self._page(request, body, ctype)

    # -- project and version views -----------------------------------------------------

    def _api_links(self, request: IRequest, data: Mapping[str, Any]) -> dict[str, Any]:
        """Version data as the API shows it: ``+elinks`` become ``+links`` with absolute URLs."""
        return api_view(data, self._base(request))

    @_route(app, "/<user>/<index>/<project>", ["GET"])
    async def project_view(self, request: IRequest, user: str, index: str, project: str) -> bytes:
        self._check_segment(user, index, project)
        if is_installer(request) and "application/json" not in render.accept(request):
            return await self.simple_project(request, user, index, project)
        normalized = normalize_project(project)
        if normalized != project:
            return self._redirect(request, f"/{user}/{index}/{normalized}/".encode())
        accept = render.accept(request)
        if "application/json" not in accept:
            if "text/html" in accept:
                raise NotFound("no HTML view here; ask for application/json")
            raise UnsupportedMedia("ask for application/json")
        shape = (request.args.get(b"v") or [b"1"])[0].decode("utf-8", "replace") or "1"
        if shape not in ("1", "2"):
            raise InvalidInput(f"The requested result version must be 1 to 2, got {shape!r}")
        versions = await self._project_versions(user, index, project,
                                                _flag(request, b"ignore_bases"))
        result = {v: self._api_links(request, d) for v, d in versions.items()}
        if shape == "1":
            return render.result(request, "projectconfig", result)
        config = await self._ops.project_config(user, index, project)
        return render.result(request, "projectconfig_v2", {"config": config, "versions": result})

    async def _project_versions(self, user: str, index: str, project: str,
                                ignore_bases: bool = False) -> dict[str, dict[str, Any]]:
        """The versions of the stages (first wins), then those of the mirrors consulted
        (their links brought up to date first): later ones of a version go under
        ``+shadowing``. NotFound if none has the project."""
        mirrored = await self._simple.mirror_versions(user, index, project, self._refresh,
                                                      ignore_bases)
        if not mirrored:
            return await self._releases.project_versions(user, index, project, ignore_bases)
        try:
            versions = await self._releases.project_versions(user, index, project, ignore_bases)
        except NotFound:  # (the index exists: mirror_versions said so)
            versions = {}
        return with_mirrored(versions, mirrored)

    @_route(app, "/<user>/<index>/<project>", ["PATCH"])
    async def modify_project(self, request: IRequest, user: str, index: str, project: str) -> bytes:
        """devpi 7's project configuration: ``["inheritance_rules=allow all"]`` lets the
        mirrors in the bases supply this project although a stage has it (model.md 6.2)."""
        self._check_segment(user, index, project)
        written = await self._ops.modify_project_config(
            await self._identity(request), user, index, project, render.read_json(request))
        self._written(request, written)
        return render.result(request, "projectconfig", written.result)

    @_route(app, "/<user>/<index>/<project>/<version>", ["GET"])
    async def version_view(self, request: IRequest, user: str, index: str, project: str,
                           version: str) -> bytes:
        self._check_segment(user, index, project)
        normalized = normalize_project(project)
        if normalized != project:
            return self._redirect(request, f"/{user}/{index}/{normalized}/{version}".encode())
        self._json_view(request)
        versions = await self._project_versions(user, index, project)
        if version not in versions:
            raise NotFound(f"The version {version} of project {normalized} does not exist.")
        return render.result(request, "versiondata", self._api_links(request, versions[version]))

    @_route(app, "/<user>/<index>/<project>/<version>", ["PATCH"])
    async def yank_version(self, request: IRequest, user: str, index: str, project: str,
                           version: str) -> bytes:
        """``{"yanked": true | "reason" | false}``, optionally ``"filename"`` for one file."""
        self._check_segment(user, index, project)
        body = render.read_json(request)
        if not isinstance(body, Mapping) or "yanked" not in body:
            raise InvalidInput('expected {"yanked": true, false or a reason}')
        written = await self._releases.set_yanked(
            await self._identity(request), user, index, project, version, body["yanked"],
            body.get("filename"))
        self._written(request, written)
        return render.message(request, written.message or "")

    @_route(app, "/<user>/<index>/<project>", ["DELETE"])
    async def delete_project(self, request: IRequest, user: str, index: str, project: str) -> bytes:
        self._check_segment(user, index, project)
        written = await self._releases.delete_project(
            await self._identity(request), user, index, project, _flag(request, b"force"))
        if self._mirror is not None:  # a mirror's page: ask upstream on the next request
            self._mirror.forget(f"{user}/{index}", normalize_project(project))
        self._written(request, written)
        return render.message(request, written.message or "")

    @_route(app, "/<user>/<index>/<project>/<version>", ["DELETE"])
    async def delete_version(self, request: IRequest, user: str, index: str, project: str,
                             version: str) -> bytes:
        self._check_segment(user, index, project)
        written = await self._releases.delete_version(
            await self._identity(request), user, index, project, version, _flag(request, b"force"))
        self._written(request, written)
        return render.message(request, written.message or "")

    @_route(app, "/<user>/<index>/+f/<path:rest>", ["DELETE"])
    async def delete_file(self, request: IRequest, user: str, index: str, rest: str) -> bytes:
        written = await self._releases.delete_file(
            await self._identity(request), user, index, f"{user}/{index}/+f/{rest}",
            _flag(request, b"force"))
        self._written(request, written)
        return render.message(request, written.message or "")

    @_route(app, "/<user>/<index>/<project>/<version>/+doc/", ["GET"])
    async def docs_index(self, request: IRequest, user: str, index: str, project: str,
                         version: str) -> bytes:
        """``+doc/`` (and ``+doc``): the documentation's ``index.html``."""
        return await self.docs(request, user, index, project, version, "")

    @_route(app, "/<user>/<index>/<project>/<version>/+doc/<path:member>", ["GET"])
    async def docs(self, request: IRequest, user: str, index: str, project: str, version: str,
                   member: str) -> bytes:
        """A page of the uploaded documentation, streamed from the doc zip: memory stays
        at a chunk or two however far the page inflates. Served in a sandbox (no script
        of the docs acts in our origin) and never sniffed into another type."""
        self._check_segment(user, index, project)
        relpath, sha256 = await self._releases.doc_zip(user, index, project, version)
        local = self._blobs.local_path(relpath)
        if local is None:  # a database store: keep one copy per doc zip on disk to read from
            local = self._staging / f"docs-{sha256}.zip"
            if not local.exists():
                await self._copy_out(relpath, local)
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
                pump = ChunkPump(request, lambda _, count: self._offload(opened.read, count),
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

    @_route(app, "/<user>/<index>/+f/<path:rest>", ["POST"])
    async def toxresult(self, request: IRequest, user: str, index: str, rest: str) -> bytes:
        """A tox report: a JSON object (no bigger than the JSON limit, DevpiRequest);
        the original bytes are what is stored."""
        if not isinstance(render.read_json(request), Mapping):
            raise InvalidInput("a tox result must be a JSON object")
        spooled = await self._offload(spool_body, request.content, self._staging)
        try:
            identity = await self._identity(request)
            stored = await self._releases.add_toxresult(
                identity, user, index, f"{user}/{index}/+f/{rest}",
                IncomingFile(spooled.filename, spooled.path, spooled.size, spooled.sha256))
        finally:
            spooled.path.unlink(missing_ok=True)
        return render.result(request, "toxresultpath", stored)


_NOW: list[Any] = [0, b""]


def _http_now() -> bytes:
    """The current time as an HTTP date (formatted once per second)."""
    second = int(time.time())
    if _NOW[0] != second:
        _NOW[:] = [second, formatdate(second, usegmt=True).encode()]
    return _NOW[1]


def _upstream_failed(failure: Any) -> None:
    failure.trap(MirrorFailed)
    raise UpstreamFailed(str(failure.value))
