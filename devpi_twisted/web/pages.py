"""Simple pages (SimplePages): an index's project list and project pages in the
simple repository API (HTML or PEP 691 JSON, web/simple.py), with ETags, rendered
bytes cached per page object, and a mirror's pages brought up to date from upstream
(mirror/cache.py) on the way."""

from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Awaitable
from email.utils import formatdate

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from devpi_twisted.mirror.cache import CACHED, MirrorFailed
from devpi_twisted.model.errors import InvalidInput, UpstreamFailed
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.policy import count_held
from devpi_twisted.model.pagelinks import ProjectPage
from devpi_twisted.model.simple import SimpleOps
from devpi_twisted.replication.protocol import REPLICA_UUID
from devpi_twisted.storage.values import MirrorConfig
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest, MirrorPages
from devpi_twisted.web.helpers import RequestHelpers
from devpi_twisted.web.listing import VARY, ListBodies, coded, compressed, matches
from devpi_twisted.web.encoding import Body
from devpi_twisted.web.simple import is_installer, list_type, render_project, render_project_list, \
    wants_json

RENDERED_PAGES = 4096
_REPLICA_UUID = REPLICA_UUID.encode("ascii")


def installer_or_json(request: HttpRequest) -> bool:
    return is_installer(request) or wants_json(request)


class SimplePages:
    """``+simple/`` and ``+simple/PROJECT/`` (and its refresh). Needs the server's
    operations (index configs), the simple-page operations, the request helpers and
    the mirror cache where there is one."""

    def __init__(self, ops: ServerOps, simple: SimpleOps, helpers: RequestHelpers,
                 lists: ListBodies, mirror: MirrorPages | None = None,
                 stats: dict[str, int] | None = None) -> None:
        self._ops = ops
        self._stats = stats if stats is not None else {}  # policy counters (/+metrics)
        self._simple = simple
        self._helpers = helpers
        self._mirror = mirror
        self._lists = lists
        # rendered pages, the last of each (index, project, hidden stages, format, URL
        # depth): (the page, its identity bytes, its bodies by coding)
        self._rendered: dict[tuple[str, str, tuple[str, ...], bool, int],
                             tuple[ProjectPage, bytes, dict[str, Body]]] = {}

    async def simple_list(self, request: HttpRequest, user: str, index: str) -> bytes:
        if not request.path.endswith(b"/") and not installer_or_json(request):
            return self._helpers.redirect(request, request.path + b"/")
        return await self._project_list(request, user, index)

    async def _project_list(self, request: HttpRequest, user: str, index: str) -> bytes:
        """The names along the bases the caller may read (refused if not the index),
        rendered once per state (web/listing.py)."""
        identity = await self._helpers.identity(request)
        remote = self._mirror.names if self._mirror is not None else None
        vary = VARY if request.path.endswith(b"/+simple/") else VARY + b", User-Agent"
        if identity.scope is not None:  # a token for some projects lists those: not kept
            names = await self._simple.project_names(user, index, remote, identity)
            body, ctype = render_project_list(request, f"{user}/{index}", names)
            coding, _ = coded(request, None, ctype, vary)
            return compressed(request, body, coding)
        order, state = await self._simple.listing(user, index, self._list_stamp, identity)
        return await self._lists.answer(
            request, f"{user}/{index}", order, state, wants_json(request),
            lambda: self._simple.project_names(user, index, remote, identity), vary)

    def _list_stamp(self, name: str, config: MirrorConfig) -> str | None:
        """Which upstream list mirror ``name`` has (asked for in the background if old)."""
        if self._mirror is None:
            return None
        self._mirror.names(name, config)
        return self._mirror.names_stamp(name, config)

    async def installer_listing(self, request: HttpRequest, user: str, index: str) -> bytes | None:
        """The project list for installers asking for the index URL; None for others."""
        if not installer_or_json(request) or "application/json" in render.accept(request):
            return None
        return await self._project_list(request, user, index)

    async def simple_project(self, request: HttpRequest, user: str, index: str,
                             project: str) -> bytes:
        if not project.isascii():
            raise InvalidInput("unicode project names not allowed")
        normalized = normalize_project(project)
        if normalized != project:
            return self._helpers.redirect(request, f"/{user}/{index}/+simple/{normalized}/".encode())
        if not request.path.endswith(b"/") and not installer_or_json(request):
            return self._helpers.redirect(request, request.path + b"/")
        view, stale = await self._simple.project_view(  # (credentials checked for private pages)
            user, index, project, self.refresh, functools.partial(self._helpers.identity, request))
        if view.held:
            count_held(self._stats, view.held)
        if view.provisional and request.getHeader(_REPLICA_UUID) and self._mirror is not None:
            for mirror, _ in view.mirrors:  # a replica waits for the serial in our answer
                await self._mirror.page_stored(mirror, view.project)
        if stale:  # a front proxy must not keep a page built from a cache (mirror.md 6)
            now = _http_now()
            request.setHeader(b"Cache-Control", b"max-age=0, must-revalidate, no-cache, no-store")
            request.setHeader(b"Expires", now)
            request.setHeader(b"Last-Modified", now)
            request.setHeader(b"Pragma", b"no-cache")
        as_json = wants_json(request)
        etag = None if view.provisional else "%d-%s%s%s" % (
            view.serial, "json" if as_json else "html",
            "-%x" % zlib.crc32("|".join(view.hidden).encode()) if view.hidden else "",
            "-p" + view.held_tag if view.held_tag else "")
        vary = VARY if request.path.endswith(b"/") else VARY + b", User-Agent"
        coding, tagged = coded(request, etag, list_type(as_json), vary)
        if etag is not None and matches(request, tagged):
            request.setResponseCode(304)
            return b""
        # the same page object renders the same bytes for the same format and URL depth,
        # compressed once in each coding asked for
        key = (view.index, view.project, view.hidden, as_json,
               len(request.prepath or ()) + len(request.postpath or ()))
        cached = self._rendered.get(key)
        if cached is None or cached[0] is not view:
            if cached is not None:
                _discard(cached[2])
            if len(self._rendered) >= RENDERED_PAGES:
                _discard(self._rendered.pop(next(iter(self._rendered)))[2])
            body, _ = render_project(request, view)
            cached = self._rendered[key] = (view, body, {})
        _, raw, codings = cached
        found = codings.get(coding)
        if found is None:  # compressed once per coding; a big body goes out of a file
            made = await self._lists.keep(raw, coding)
            found = codings.setdefault(coding, made)
            if found is not made or self._rendered.get(key) is not cached:
                # made meanwhile for another request, or the page replaced meanwhile
                sent = await self._lists.send(request, made)
                made.discard()
                return sent
        return await self._lists.send(request, found)

    def refresh(self, name: str, config: MirrorConfig, project: str) -> str | Awaitable[str]:
        """Bring a mirror's page of ``project`` up to date (the domain's Refresh): the
        state at once when the cache answers, else a Deferred of it."""
        if self._mirror is None:
            return CACHED
        known = self._mirror.known(name, config, project)
        if known is not None:
            return known
        ensured: Deferred[str] = Deferred.fromCoroutine(self._mirror.ensure(name, config, project))
        return ensured.addErrback(_upstream_failed)

    async def refresh_project(self, request: HttpRequest, user: str, index: str,
                              project: str) -> bytes:
        """Ask upstream again for ``project`` on every mirror the index inherits from."""
        project = normalize_project(project)
        identity = await self._helpers.identity(request)
        if self._mirror is not None:  # asked here and now, so every worker sees the result
            for name in await self._simple.mirrors_of(user, index, identity):
                self._mirror.forget(name, project)
                config = await self._ops.get_index(*name.split("/", 1))
                try:
                    if isinstance(config, MirrorConfig):
                        await self._mirror.ensure(name, config, project)
                except MirrorFailed:
                    pass  # the page request that follows reports it
        return self._helpers.redirect(request, f"/{user}/{index}/+simple/{project}/".encode())

    def forget(self, index: str, project: str) -> None:
        """A mirror's page of ``project``: asked upstream on the next request."""
        if self._mirror is not None:
            self._mirror.forget(index, project)


_NOW: dict[int, bytes] = {}


def _http_now() -> bytes:
    """The current time as an HTTP date (formatted once per second)."""
    second = int(time.time())
    now = _NOW.get(second)
    if now is None:
        _NOW.clear()
        now = _NOW[second] = formatdate(second, usegmt=True).encode()
    return now


def _discard(bodies: dict[str, Body]) -> None:
    for body in bodies.values():
        body.discard()


def _upstream_failed(failure: Failure) -> Failure:
    if isinstance(failure.value, MirrorFailed):
        raise UpstreamFailed(str(failure.value))
    return failure
