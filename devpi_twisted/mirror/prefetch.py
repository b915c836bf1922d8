"""Prefetching (spec/mirror.md 3): the pages of a fetched release's requirements are
brought up to date in the background, a few at a time, ahead of the installer that
asks for them next, one by one, and then finds them here (or joins their fetch)."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.defer import Deferred

from devpi_twisted.mirror.refresh import Refresher
from devpi_twisted.mirror.settings import Config

# Pages of a fetched release's requirements asked upstream ahead of the client at once,
# and at most queued behind those
PREFETCH = 4
PREFETCH_QUEUE = 1000


class Prefetcher:
    def __init__(self, refresher: Refresher, counters: dict[str, int],
                 offline: Callable[[], bool], slots: int = PREFETCH) -> None:
        """``slots``: how many pages are asked upstream at once (at least 1)."""
        self._refresher = refresher
        self._counters = counters
        self._offline = offline
        self._slots = defer.DeferredSemaphore(slots)

    def prefetch(self, name: str, config: Config, projects: list[str]) -> None:
        """Bring the pages of ``projects`` on mirror ``name`` up to date in the
        background (not offline, nor on a replica: its primary does)."""
        if self._offline() or self._refresher.via_primary:
            return
        for project in projects:
            if self._refresher.busy((name, project)) or \
                    self._refresher.peek(name, config, project) is not None:
                continue
            if len(self._slots.waiting) >= PREFETCH_QUEUE:
                return
            self._counters["page_prefetches"] += 1
            self._slots.run(lambda p: Deferred.fromCoroutine(self._page(name, config, p)),
                            project)

    async def _page(self, name: str, config: Config, project: str) -> None:
        if self._refresher.peek(name, config, project) is not None:  # asked meanwhile
            return
        try:
            await self._refresher.ensure(name, config, project)
        except Exception:  # (MirrorFailed) a client asking for the page learns of it
            pass
