"""The mirror indexes of this process (spec/mirror.md): one ``Mirror`` composing the
parts, with the methods the web layer and the service use. The parts: the page cache
(mirror/pages.py), refreshing pages from upstream (mirror/refresh.py), prefetching
(mirror/prefetch.py), the project name lists (mirror/names.py), first downloads of
files (mirror/download.py, mirror/receive.py) and the counters (mirror/stats.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from devpi_twisted.mirror import settings
from devpi_twisted.mirror.download import Downloader, Start
from devpi_twisted.mirror.links import Link, expected_hashes
from devpi_twisted.mirror.names import ProjectLists
from devpi_twisted.mirror.outcomes import (
    CACHED, FRESH, MISSING, OFFLINE, MirrorFailed, NoSuchFile, TransferBroken,
)
from devpi_twisted.mirror.pages import MISSING_FOR, PageCache
from devpi_twisted.mirror.prefetch import PREFETCH, Prefetcher
from devpi_twisted.mirror.refresh import Refresher, Via
from devpi_twisted.mirror.settings import DEFAULT_EXPIRY, Config
from devpi_twisted.mirror.stats import new_counters
from devpi_twisted.mirror.upstream import Upstream
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import MirrorRecord, Storage
from devpi_twisted.storage.types import Offload

# (what callers import from here: the states, failures and settings of the mirror)
__all__ = ["CACHED", "DEFAULT_EXPIRY", "FRESH", "MISSING", "MISSING_FOR", "OFFLINE",
           "PREFETCH", "Mirror", "MirrorFailed", "NoSuchFile", "TransferBroken",
           "expected_hashes"]
_log = Logger()


class Mirror:
    def __init__(self, storage: Storage, upstream: Upstream, blobs: BlobStore, staging: Path,
                 offload: Offload, clock: IReactorTime, offline: bool = False,
                 default_expiry: float = DEFAULT_EXPIRY, wait: float | None = None,
                 via: Via | None = None, prefetch: int = PREFETCH) -> None:
        """``clock``: the reactor (tests: a ``Clock``). ``wait``: how long a request waits
        for upstream's page (default: the upstream's timeout); a slower fetch goes on
        in the background and stores its result, while the request is answered from
        the cache (mirror.md 3). ``via``: on a replica, asks the primary to refresh a
        page (``via(name, project)``, FRESH once replicated here, MISSING), instead of
        asking upstream (mirror.md 10). ``prefetch``: how many pages of a fetched
        release's requirements are asked upstream at once, ahead of the client (0:
        none)."""
        self.offline = offline
        self._upstream = upstream
        # per process: pages answered from the cache / asked upstream / failed there,
        # first downloads of files / failed ones
        self.stats = new_counters()
        self.pages = PageCache(storage, clock)
        self.lists = ProjectLists(upstream, blobs, staging, offload, clock,
                                  self._offline, lambda config: settings.expiry(
                                      config, default_expiry))
        self.refresher = Refresher(self.pages, self.lists, upstream, clock, self.stats,
                                   self._offline, default_expiry,
                                   upstream.timeout if wait is None else wait, via)
        self.prefetcher = Prefetcher(self.refresher, self.stats, self._offline, prefetch) \
            if prefetch > 0 else None
        self.downloads = Downloader(
            storage, blobs, staging, offload, upstream, self.pages, self.stats, self._offline,
            self.refresher.ensure, self.prefetcher.prefetch if self.prefetcher else None)

    def _offline(self) -> bool:
        return self.offline

    @property
    def upstream_stats(self) -> Mapping[str, int]:
        """Upstream requests, errors and retries of this process."""
        return self._upstream.stats

    # -- the project name list (mirror/names.py) --------------------------------------

    def names(self, name: str, config: Config) -> Mapping[str, str] | None:
        return self.lists.names(name, config)

    def names_stamp(self, name: str, config: Config) -> str | None:
        return self.lists.stamp(name, config)

    async def warm(self, name: str, config: Config) -> None:
        """At start: load the project list of mirror ``name`` stored by an earlier run,
        so that no client's first page waits for reading it (it is revalidated upstream
        when first used)."""
        if settings.lists_projects(config):
            try:
                await self.lists.load(name, config)
            except Exception:
                _log.failure("loading the project list of {name}", name=name)

    # -- project pages (mirror/pages.py, mirror/refresh.py) -------------------------------

    def forget(self, name: str, project: str) -> None:
        """Make the next request of the page ask upstream (``refresh``)."""
        self.pages.forget((name, project))

    def known(self, name: str, config: Config, project: str) -> str | None:
        """What ``ensure`` would answer without asking upstream (a young page: CACHED, a
        recent 404: MISSING), or None when it would ask (or is offline)."""
        return self.refresher.known(name, config, project)

    async def ensure(self, name: str, config: Config, project: str) -> str:
        """Make the stored page of ``project`` current enough (``Refresher.ensure``)."""
        return await self.refresher.ensure(name, config, project)

    def prefetch(self, name: str, config: Config, projects: list[str]) -> None:
        """Bring the pages of ``projects`` up to date in the background."""
        if self.prefetcher is not None:
            self.prefetcher.prefetch(name, config, projects)

    def none_stored(self, name: str, project: str) -> bool:
        """Whether surely no release file of ``project`` on mirror ``name`` is stored
        (a first download need not look for its file record then)."""
        return self.pages.none_stored((name, project))

    async def page(self, name: str, project: str) -> MirrorRecord | None:
        """The cached page of ``project`` on mirror ``name``, including one still being
        written (its serial UNSTORED)."""
        return await self.pages.page((name, project))

    async def settled(self) -> None:
        """Wait until every page write in flight is over (tests, shutdown)."""
        await self.pages.settled()

    async def page_stored(self, name: str, project: str) -> None:
        """Wait until a write of the page of ``project`` in flight is over."""
        await self.pages.stored((name, project))

    # -- release files (mirror/download.py) ------------------------------------------------

    async def link_for(self, name: str, project: str, relpath: str) -> Link | None:
        return await self.downloads.link_for(name, project, relpath)

    async def find_link(self, name: str, project: str, relpath: str,
                        config: Config | None) -> Link | None:
        return await self.downloads.find_link(name, project, relpath, config)

    async def download(self, name: str, project: str, version: str, relpath: str,
                       start: Start, checked: Callable[[], None] = lambda: None,
                       config: Config | None = None) -> int:
        """Fetch, stream, check and store ``relpath`` (``Downloader.download``)."""
        return await self.downloads.download(name, project, version, relpath, start, checked,
                                             config)
