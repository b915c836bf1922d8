"""Bringing a mirror's project pages up to date (spec/mirror.md 3-4, 10): when to ask
upstream (or, on a replica, the primary), what to store, what to serve when upstream
fails or is slow. Concurrent requests of one page share one refresh; a request waits
for it at most ``wait`` seconds, while the refresh goes on and stores its result.
A project's page is stored only when its links (or ETag) changed."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from devpi_twisted.mirror import settings
from devpi_twisted.mirror.links import link_record
from devpi_twisted.mirror.names import ProjectLists
from devpi_twisted.mirror.outcomes import CACHED, FRESH, MISSING, OFFLINE, MirrorFailed
from devpi_twisted.mirror.pages import Key, PageCache
from devpi_twisted.mirror.parse import PageError, parse_project_page
from devpi_twisted.mirror.settings import Config
from devpi_twisted.mirror.stats import page_failed
from devpi_twisted.mirror.upstream import Shared, Upstream, UpstreamError, public_url

# On a replica: asks the primary to refresh a page (``via(name, project)``): FRESH once
# replicated here, MISSING (mirror.md 10)
Via = Callable[[str, str], Awaitable[str]]


class Refresher:
    def __init__(self, pages: PageCache, lists: ProjectLists, upstream: Upstream,
                 clock: IReactorTime, counters: dict[str, int], offline: Callable[[], bool],
                 default_expiry: float, wait: float, via: Via | None = None) -> None:
        self._pages = pages
        self._lists = lists
        self._upstream = upstream
        self._clock = clock
        self._counters = counters
        self._offline = offline
        self._default_expiry = default_expiry
        self._wait = wait
        self._via = via
        self._refreshing: dict[Key, Shared[str]] = {}

    @property
    def via_primary(self) -> bool:
        return self._via is not None

    def expiry(self, config: Config) -> float:
        return settings.expiry(config, self._default_expiry)

    def busy(self, key: Key) -> bool:
        """Whether a refresh of the page is under way."""
        return key in self._refreshing

    def peek(self, name: str, config: Config, project: str) -> str | None:
        """What ``ensure`` would answer without asking upstream (a young page: CACHED, a
        recent 404: MISSING), or None when it would ask (or is offline)."""
        if self._offline():
            return None
        return self._pages.known((name, project), self.expiry(config))

    def known(self, name: str, config: Config, project: str) -> str | None:
        """``peek``, counting a page served from the cache."""
        state = self.peek(name, config, project)
        if state == CACHED:
            self._counters["page_hits"] += 1
        return state

    async def ensure(self, name: str, config: Config, project: str) -> str:
        """Make the stored page of ``project`` on mirror ``name`` current enough; FRESH
        (confirmed by upstream just now), CACHED (served from the cache: young enough or
        upstream failing), OFFLINE (--offline-mode: the cache, only stored files count)
        or MISSING (no such project). MirrorFailed when upstream fails and nothing is
        cached."""
        known = self.known(name, config, project)
        if known is not None:
            return known
        key = (name, project)
        running = self._refreshing.get(key)
        if running is None:
            work = Deferred.fromCoroutine(self._refresh(name, config, project))
            running = Shared(work, lambda: self._refreshing.pop(key, None))
            if not running.done:
                self._refreshing[key] = running
        waiter = running.wait()
        waiter.addTimeout(self._wait, self._clock)
        try:
            return await waiter
        except defer.TimeoutError:
            self._counters["page_errors"] += 1
            if await self._pages.page(key) is not None:
                return CACHED
            if await self._lists.lacks(name, config, project):
                return MISSING  # the list's "no" stands while upstream is slow to say
            raise MirrorFailed(f"timeout after {self._wait:g}s while getting data for "
                               f"{project} from {name}'s upstream") from None

    async def _refresh(self, name: str, config: Config, project: str) -> str:
        key = (name, project)
        record = await self._pages.page(key)
        cached = record.value if record is not None else None
        if self._offline():
            return OFFLINE if cached is not None else MISSING
        if self._via is not None:
            return await self._refresh_via(self._via, key, cached)
        # A name the project list lacks is asked for too: the project may have been
        # published upstream since the list was fetched. If upstream fails, the list's
        # "no" stands.
        self._lists.names(name, config)  # (fetched in the background when old)
        url = settings.upstream_url(config).rstrip("/") + f"/{project}/"
        self._counters["page_fetches"] += 1
        try:
            reply = await self._upstream.get_page(url, cached.get("etag") if cached else None)
        except UpstreamError as e:
            return await self._fallback(key, config, cached, str(e))
        if reply.status == 304 and cached is not None:
            self._pages.confirmed(key, exists=False)
            return FRESH
        if reply.status == 404:
            self._pages.not_found(key)
            return CACHED if cached is not None else MISSING
        if reply.status != 200:
            return await self._fallback(key, config, cached,
                                        f"{reply.status} status on GET {public_url(url)}")
        serial = _int(reply.headers.get("x-pypi-last-serial"), -1)
        if cached is not None and serial < int(cached.get("serial", -1)):
            if not settings.ignores_serial(config):
                return self._failed(name, cached, f"upstream serial {serial} is behind "
                                    f"{cached.get('serial')} for {public_url(url)}")
            serial = -1
        try:
            links = parse_project_page(reply.body, reply.headers.get("content-type", ""),
                                       reply.url, project)
        except PageError as e:
            return await self._fallback(key, config, cached,
                                        f"invalid page from {public_url(url)}: {e}")
        records = [link_record(name, link) for link in links]
        _first_seen(records, cached)
        value = {"links": records, "serial": serial,
                 "etag": reply.headers.get("etag"),
                 # sha256 of core metadata we took from wheels upstream gave without it
                 "extracted": dict(cached.get("extracted", {})) if cached else {}}
        at = self._pages.confirmed(key)
        self._lists.found(name, config, project)
        if cached is None or cached.get("links") != value["links"] or \
                cached.get("etag") != value["etag"]:
            self._pages.store_behind(key, value, at, created=cached is None)
        return FRESH

    async def _refresh_via(self, via: Via, key: Key, cached: Mapping[str, Any] | None) -> str:
        """A replica's refresh: the primary asks upstream and stores; we get it replicated."""
        name, project = key
        self._counters["page_fetches"] += 1
        try:
            state = await via(name, project)
        except defer.CancelledError:
            raise
        except Exception as e:  # the primary is down or slow: the cache stands in
            return self._failed(name, cached, f"via the primary: {e}")
        if state == MISSING:
            self._pages.not_found(key)
            return CACHED if cached is not None else MISSING
        self._pages.confirmed(key)
        return FRESH

    async def _fallback(self, key: Key, config: Config, cached: Mapping[str, Any] | None,
                        error: str) -> str:
        """``_failed``, except that with nothing cached, a project the project list lacks
        is MISSING: the list's "no" stands while upstream cannot say otherwise."""
        name, project = key
        if cached is None and await self._lists.lacks(name, config, project):
            page_failed(self._counters, name, error)
            self._pages.not_found(key)
            return MISSING
        return self._failed(name, cached, error)

    def _failed(self, name: str, cached: Mapping[str, Any] | None, error: str) -> str:
        page_failed(self._counters, name, error)
        if cached is None:
            raise MirrorFailed(error)
        return CACHED


def _first_seen(links: list[dict[str, Any]], cached: Mapping[str, Any] | None) -> None:
    """Give the links upstream gave no upload time a ``first_seen`` (the minimum
    release age counts from it, model/policy.py): kept from the cached page, else now."""
    seen = {link.get("filename"): link.get("first_seen")
            for link in (cached or {}).get("links", ())}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for link in links:
        if not link.get("upload_time"):
            link["first_seen"] = seen.get(link["filename"]) or now


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
