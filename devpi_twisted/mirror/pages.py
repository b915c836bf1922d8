"""The page cache of the mirror indexes (spec/mirror.md 3-4): which stored pages
upstream confirmed and when, which projects upstream said it lacks (believed for
MISSING_FOR at most), pages being written (served from memory until committed), and
pages this process created (no file of theirs is stored yet).

A project's page is stored (one write, one serial) only when its links changed; its
age is kept in memory, so the first request after a restart revalidates (cheaply,
with the stored ETag).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from devpi_twisted.mirror.outcomes import CACHED, MISSING
from devpi_twisted.storage.interface import UNSTORED, MirrorRecord, RecordMissing, Storage

CREATED_PAGES = 4096  # new pages remembered as having no stored files
# Upstream's "no such project" is believed for at most this long (or the expiry, when
# shorter): a project published upstream since is seen within a minute
MISSING_FOR = 60.0
MISSING_NAMES = 100_000  # such answers remembered at most (the oldest are forgotten)
_log = Logger()
Key = tuple[str, str]  # (mirror "user/index", normalised project)


class PageCache:
    def __init__(self, storage: Storage, clock: IReactorTime) -> None:
        self._storage = storage
        self._clock = clock
        # when upstream last confirmed a page, and the serial storage had then: a change
        # of the project since (e.g. its cache deleted by another process) voids it
        self._checked: dict[Key, tuple[float, int]] = {}
        self._missing: dict[Key, float] = {}  # upstream said 404 (negative cache)
        # pages parsed and being written: answered from here meanwhile, so the client
        # does not wait for the commit (mirror.md 3)
        self._unstored: dict[Key, tuple[MirrorRecord, Deferred[None]]] = {}
        # pages this process stored where none was: no file of theirs is stored until
        # their project changes; the serial of the page's write (UNSTORED: in flight)
        self._created: dict[Key, int] = {}

    def known(self, key: Key, expiry: float) -> str | None:
        """CACHED for a page upstream confirmed less than ``expiry`` ago (and unchanged
        since), MISSING for a recent "no such project", else None (ask upstream)."""
        now = self._clock.seconds()
        checked = self._checked.get(key)
        if checked is not None and now - checked[0] < expiry \
                and not self._storage.changed_since(key[1], checked[1]):
            return CACHED
        missing = self._missing.get(key)
        if missing is not None and now - missing < min(expiry, MISSING_FOR):
            return MISSING
        return None

    def forget(self, key: Key) -> None:
        """Make the next request of the page ask upstream."""
        self._checked.pop(key, None)
        self._missing.pop(key, None)

    def confirmed(self, key: Key, exists: bool = True) -> float:
        """Upstream (or the primary) confirmed the stored page just now (``exists``: and
        that the project exists): when."""
        now = self._clock.seconds()
        self._checked[key] = (now, self._storage.serial)
        if exists:
            self._missing.pop(key, None)
        return now

    def not_found(self, key: Key) -> None:
        """Remember upstream's "no such project" (for MISSING_FOR at most)."""
        self._missing.pop(key, None)
        if len(self._missing) >= MISSING_NAMES:
            self._missing.pop(next(iter(self._missing)))
        self._missing[key] = self._clock.seconds()

    def store_behind(self, key: Key, value: dict[str, Any], at: float,
                     created: bool = False) -> None:
        """Write a page upstream just gave us (confirmed ``at``), serving it from memory
        until committed (``created``: no page was stored before)."""
        name, project = key
        if created:
            if len(self._created) >= CREATED_PAGES:
                self._created.pop(next(iter(self._created)))
            self._created[key] = UNSTORED
        user, index = name.split("/", 1)
        written: Deferred[int] = Deferred()
        self.after_replies(lambda: defer.maybeDeferred(
            self._storage.write_mirror_project, user, index, project, value, {}
        ).chainDeferred(written))
        done: Deferred[None] = Deferred()
        entry = (MirrorRecord(user, index, project, value, UNSTORED), done)
        self._unstored[key] = entry

        def stored(serial: int) -> None:
            if self._checked.get(key, (None,))[0] == at:  # confirmed as of our own write
                self._checked[key] = (at, serial)
            if created and key in self._created:
                self._created[key] = serial

        def failed(failure: Failure) -> None:
            self._checked.pop(key, None)
            self._created.pop(key, None)
            if not isinstance(failure.value, RecordMissing):  # else the index was deleted meanwhile
                _log.failure("storing the page of {project} on {name}", failure,
                             project=project, name=name)

        def settled(_: object) -> None:
            if self._unstored.get(key) is entry:
                del self._unstored[key]
            done.callback(None)

        written.addCallbacks(stored, failed).addBoth(settled)

    def after_replies(self, work: Callable[[], object]) -> None:
        """Run ``work`` once the reactor has sent the responses finished so far: a call
        scheduled now runs before the next poll, and one scheduled from there after
        it (its writes included). A thread woken earlier would contend with them."""
        self._clock.callLater(0, self._clock.callLater, 0, work)

    def none_stored(self, key: Key) -> bool:
        """Whether surely no release file of the project is stored: its page was new
        when this process stored it (files are recorded only under a page, and go with
        it), and nothing of the project changed since."""
        serial = self._created.get(key)
        if serial is None:
            return False
        if serial != UNSTORED and self._storage.changed_since(key[1], serial):
            del self._created[key]
            return False
        return True

    async def page(self, key: Key) -> MirrorRecord | None:
        """The cached page, including one still being written (its serial UNSTORED)."""
        unstored = self._unstored.get(key)
        if unstored is not None:
            return unstored[0]
        name, project = key
        user, index = name.split("/", 1)
        return await self._storage.get_mirror_project(user, index, project)

    async def settled(self) -> None:
        """Wait until every page write in flight is over (tests, shutdown)."""
        while self._unstored:
            await next(iter(self._unstored.values()))[1]

    async def stored(self, key: Key) -> None:
        """Wait until a write of the page in flight is over."""
        unstored = self._unstored.get(key)
        if unstored is not None:
            await unstored[1]
