"""Cache policy of mirror indexes (spec/mirror.md 3-8): when to ask upstream for a
project page, what to store, what to serve when upstream fails; first downloads of
release files, streamed to the client while they are written and checked.

A project's page is stored (one write, one serial) only when its links changed; its
age is kept in memory, so the first request after a restart revalidates (cheaply,
with the stored ETag). Links are stored as dicts that the domain layer reads
(model/simple.py): filename, entrypath, url, hash_spec, sha256, requires_python,
yanked, core_metadata (sha256 of the PEP 658 file or None), size, upload_time. Where
upstream advertises no core metadata, the first download of a wheel extracts it and
the page's ``extracted`` map (filename -> sha256) advertises it from then on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from devpi_twisted.archives import core_metadata
from devpi_twisted.mirror.names import ProjectLists
from devpi_twisted.mirror.parse import (
    PageError, UpstreamLink, parse_project_page, parse_requirements,
)
from devpi_twisted.mirror.upstream import (
    Shared, Upstream, UpstreamError, discard, public_url, split_credentials,
)
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import UNSTORED, MirrorRecord, RecordMissing, Storage

FRESH, CACHED, MISSING, OFFLINE = "fresh", "cached", "missing", "offline"
DEFAULT_EXPIRY = 1800
# A first download's body goes to its staging file in pieces of at least this much (all
# at once when smaller): each piece is a trip to a thread.
SPOOL_PIECE = 1 << 20
# Pages of a fetched release's requirements asked upstream ahead of the client at once,
# and at most queued behind those
PREFETCH = 4
PREFETCH_QUEUE = 1000
MAX_METADATA_FILE = 1 << 20  # a .metadata file read back for its requirements
CREATED_PAGES = 4096  # new pages remembered as having no stored files
# Upstream's "no such project" is believed for at most this long (or the expiry, when
# shorter): a project published upstream since is seen within a minute
MISSING_FOR = 60.0
MISSING_NAMES = 100_000  # such answers remembered at most (the oldest are forgotten)
_log = Logger()


class MirrorFailed(Exception):
    """Upstream failed and nothing cached can stand in; ``str`` is for the client."""


class NoSuchFile(Exception):
    """Neither we nor upstream have the file."""


class TransferBroken(Exception):
    """Upstream's body was short or did not match its hash, after the client's response
    had started: the client must see a broken transfer."""


def entrypath(name: str, link: UpstreamLink) -> str:
    """Where we serve a mirrored file: ``+f/<hash dirs>/`` with a sha256, else ``+e/``."""
    if link.hash_algo == "sha256" and link.hash_value:
        h = link.hash_value
        return f"{name}/+f/{h[:3]}/{h[3:16]}/{link.filename}"
    parts = urlsplit(link.url)
    folder = quote(f"{parts.netloc}{parts.path.rsplit('/', 1)[0]}".replace("/", "_"), safe="")
    return f"{name}/+e/{folder}/{link.filename}"


def link_record(name: str, link: UpstreamLink) -> dict[str, Any]:
    core = link.core_metadata
    return {
        "filename": link.filename, "entrypath": entrypath(name, link), "url": link.url,
        "hash_spec": f"{link.hash_algo}={link.hash_value}" if link.hash_value else "",
        "sha256": link.hash_value if link.hash_algo == "sha256" else None,
        "requires_python": link.requires_python, "yanked": link.yanked,
        "core_metadata": core[len("sha256="):] if isinstance(core, str)
        and core.startswith("sha256=") else None,
        "size": link.size, "upload_time": link.upload_time}


class Mirror:
    def __init__(self, storage: Storage, upstream: Upstream, blobs: BlobStore, staging: Path,
                 offload: Callable[..., Deferred[Any]], offline: bool = False,
                 default_expiry: int = DEFAULT_EXPIRY, clock: Callable[[], float] = time.monotonic,
                 reactor: Any = None, wait: float | None = None,
                 via: Callable[[str, str], Awaitable[str]] | None = None,
                 prefetch: int = PREFETCH) -> None:
        """``wait``: how long a request waits for upstream's page (default: the
        upstream's timeout); a slower fetch goes on in the background and stores its
        result, while the request is answered from the cache (mirror.md 3). ``via``:
        on a replica, asks the primary to refresh a page (``via(name, project)``, FRESH
        once replicated here, MISSING), instead of asking upstream (mirror.md 10).
        ``prefetch``: how many pages of a fetched release's requirements are asked
        upstream at once, ahead of the client (0: none)."""
        self._via = via
        self._storage = storage
        self._reactor = reactor
        self._wait = upstream.timeout if wait is None else wait
        self._upstream = upstream
        self._blobs = blobs
        self._staging = staging
        self._offload = offload
        self.offline = offline
        self._default_expiry = default_expiry
        self._clock = clock
        # when upstream last confirmed a page, and the serial storage had then: a change
        # of the project since (e.g. its cache deleted by another process) voids it
        self._checked: dict[tuple[str, str], tuple[float, int]] = {}
        self._missing: dict[tuple[str, str], float] = {}  # upstream said 404 (negative cache)
        self._refreshing: dict[tuple[str, str], Shared[str]] = {}
        self._downloads: dict[str, Shared[int]] = {}
        # pages parsed and being written: answered from here meanwhile, so the client
        # does not wait for the commit (mirror.md 3)
        self._unstored: dict[tuple[str, str], tuple[MirrorRecord, Deferred[None]]] = {}
        # pages this process stored where none was: no file of theirs is stored until
        # their project changes; the serial of the page's write (UNSTORED: in flight)
        self._created: dict[tuple[str, str], int] = {}
        self._prefetching = defer.DeferredSemaphore(prefetch) if prefetch > 0 else None
        self.lists = ProjectLists(upstream, blobs, staging, offload, clock,
                                  lambda: self.offline, self._expiry)
        # per process: pages answered from the cache / asked upstream / failed there,
        # first downloads of files / failed ones
        self.stats = {"page_hits": 0, "page_fetches": 0, "page_errors": 0,
                      "page_prefetches": 0, "file_fetches": 0, "file_errors": 0}

    @property
    def upstream_stats(self) -> Mapping[str, int]:
        """Upstream requests, errors and retries of this process."""
        return self._upstream.stats

    def _expiry(self, config: Mapping[str, Any]) -> float:
        value = config.get("mirror_cache_expiry")
        return float(self._default_expiry if value in (None, "") else value)

    # -- the project name list (mirror/names.py) --------------------------------------

    def names(self, name: str, config: Mapping[str, Any]) -> dict[str, str] | None:
        return self.lists.names(name, config)

    async def warm(self, name: str, config: Mapping[str, Any]) -> None:
        """At start: load the project list of mirror ``name`` stored by an earlier run,
        so that no client's first page waits for reading it (it is revalidated upstream
        when first used)."""
        if not config.get("mirror_no_project_list"):
            try:
                await self.lists.load(name, config)
            except Exception:
                _log.failure("loading the project list of {name}", name=name)

    # -- project pages -------------------------------------------------------------------

    def forget(self, name: str, project: str) -> None:
        """Make the next request of the page ask upstream (``refresh``)."""
        self._checked.pop((name, project), None)
        self._missing.pop((name, project), None)

    def known(self, name: str, config: Mapping[str, Any], project: str) -> str | None:
        """What ``ensure`` would answer without asking upstream (a young page: CACHED, a
        recent 404: MISSING), or None when it would ask (or is offline)."""
        state = self._known(name, config, project)
        if state == CACHED:
            self.stats["page_hits"] += 1
        return state

    def _known(self, name: str, config: Mapping[str, Any], project: str) -> str | None:
        if self.offline:
            return None
        key = (name, project)
        now = self._clock()
        expiry = self._expiry(config)
        checked = self._checked.get(key)
        if checked is not None and now - checked[0] < expiry \
                and not self._storage.changed_since(project, checked[1]):
            return CACHED
        missing = self._missing.get(key)
        if missing is not None and now - missing < min(expiry, MISSING_FOR):
            return MISSING
        return None

    def prefetch(self, name: str, config: Mapping[str, Any], projects: list[str]) -> None:
        """Bring the pages of ``projects`` (a release's requirements) up to date in the
        background, a few at a time: an installer that fetched the release asks for
        them next, one by one, and then finds them here (or joins their fetch)."""
        slots = self._prefetching
        if slots is None or self.offline or self._via is not None:
            return
        for project in projects:
            if (name, project) in self._refreshing or \
                    self._known(name, config, project) is not None:
                continue
            if len(slots.waiting) >= PREFETCH_QUEUE:
                return
            self.stats["page_prefetches"] += 1
            slots.run(lambda p: Deferred.fromCoroutine(self._prefetch_page(name, config, p)),
                      project)

    async def _prefetch_page(self, name: str, config: Mapping[str, Any], project: str) -> None:
        if self._known(name, config, project) is not None:  # asked meanwhile
            return
        try:
            await self.ensure(name, config, project)
        except Exception:  # (MirrorFailed) a client asking for the page learns of it
            pass

    async def ensure(self, name: str, config: Mapping[str, Any], project: str) -> str:
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
        if self._reactor is not None:
            waiter.addTimeout(self._wait, self._reactor)
        try:
            return await waiter
        except defer.TimeoutError:
            self.stats["page_errors"] += 1
            if await self.page(name, project) is not None:
                return CACHED
            if await self.lists.lacks(name, config, project):
                return MISSING  # the list's "no" stands while upstream is slow to say
            raise MirrorFailed(f"timeout after {self._wait:g}s while getting data for "
                               f"{project} from {name}'s upstream") from None

    async def _refresh(self, name: str, config: Mapping[str, Any], project: str) -> str:
        record = await self.page(name, project)
        cached = record.value if record is not None else None
        if self.offline:
            return OFFLINE if cached is not None else MISSING
        if self._via is not None:
            return await self._refresh_via(name, project, cached)
        # A name the project list lacks is asked for too: the project may have been
        # published upstream since the list was fetched. If upstream fails, the list's
        # "no" stands.
        key = (name, project)
        self.lists.names(name, config)  # (fetched in the background when old)
        url = str(config.get("mirror_url") or "").rstrip("/") + f"/{project}/"
        self.stats["page_fetches"] += 1
        try:
            reply = await self._upstream.get_page(url, cached.get("etag") if cached else None)
        except UpstreamError as e:
            return await self._fallback(name, config, project, cached, str(e))
        if reply.status == 304 and cached is not None:
            self._checked[key] = (self._clock(), self._storage.serial)
            return FRESH
        if reply.status == 404:
            self._not_found(key)
            return CACHED if cached is not None else MISSING
        if reply.status != 200:
            return await self._fallback(name, config, project, cached,
                                        f"{reply.status} status on GET {public_url(url)}")
        serial = _int(reply.headers.get("x-pypi-last-serial"), -1)
        if cached is not None and serial < int(cached.get("serial", -1)):
            if not config.get("mirror_ignore_serial_header"):
                return self._failed(name, cached, f"upstream serial {serial} is behind "
                                    f"{cached.get('serial')} for {public_url(url)}")
            serial = -1
        try:
            links = parse_project_page(reply.body, reply.headers.get("content-type", ""),
                                       reply.url, project)
        except PageError as e:
            return await self._fallback(name, config, project, cached,
                                        f"invalid page from {public_url(url)}: {e}")
        value = {"links": [link_record(name, link) for link in links], "serial": serial,
                 "etag": reply.headers.get("etag"),
                 # sha256 of core metadata we took from wheels upstream gave without it
                 "extracted": dict(cached.get("extracted", {})) if cached else {}}
        checked = (self._clock(), self._storage.serial)
        self._checked[key] = checked
        self._missing.pop(key, None)
        self.lists.found(name, config, project)
        if cached is None or cached.get("links") != value["links"] or \
                cached.get("etag") != value["etag"]:
            self._store_behind(key, value, checked[0], created=cached is None)
        return FRESH

    def _not_found(self, key: tuple[str, str]) -> None:
        """Remember upstream's "no such project" (for MISSING_FOR at most)."""
        self._missing.pop(key, None)
        if len(self._missing) >= MISSING_NAMES:
            self._missing.pop(next(iter(self._missing)))
        self._missing[key] = self._clock()

    def _store_behind(self, key: tuple[str, str], value: dict[str, Any], at: float,
                      created: bool = False) -> None:
        """Write a page upstream just gave us, serving it from memory until committed
        (``created``: no page was stored before)."""
        name, project = key
        if created:
            if len(self._created) >= CREATED_PAGES:
                self._created.pop(next(iter(self._created)))
            self._created[key] = UNSTORED
        user, index = name.split("/", 1)
        written: Deferred[int] = Deferred()
        self._after_replies(lambda: defer.maybeDeferred(
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
            if not failure.check(RecordMissing):  # else the index was deleted meanwhile
                _log.failure("storing the page of {project} on {name}", failure,
                             project=project, name=name)

        def settled(_: Any) -> None:
            if self._unstored.get(key) is entry:
                del self._unstored[key]
            done.callback(None)

        written.addCallbacks(stored, failed).addBoth(settled)

    def _after_replies(self, work: Callable[[], Any]) -> None:
        """Run ``work`` once the reactor has sent the responses finished so far: a call
        scheduled now runs before the next poll, and one scheduled from there after
        it (its writes included). A thread woken earlier would contend with them."""
        if self._reactor is None:
            work()
        else:
            self._reactor.callLater(0, self._reactor.callLater, 0, work)

    def none_stored(self, name: str, project: str) -> bool:
        """Whether surely no release file of ``project`` on mirror ``name`` is stored: its
        page was new when this process stored it (files are recorded only under a
        page, and go with it), and nothing of the project changed since. A first
        download need not look for its file record then."""
        serial = self._created.get((name, project))
        if serial is None:
            return False
        if serial != UNSTORED and self._storage.changed_since(project, serial):
            del self._created[(name, project)]
            return False
        return True

    async def page(self, name: str, project: str) -> MirrorRecord | None:
        """The cached page of ``project`` on mirror ``name``, including one still being
        written (its serial UNSTORED)."""
        unstored = self._unstored.get((name, project))
        if unstored is not None:
            return unstored[0]
        user, index = name.split("/", 1)
        return await self._storage.get_mirror_project(user, index, project)

    async def settled(self) -> None:
        """Wait until every page write in flight is over (tests, shutdown)."""
        while self._unstored:
            await next(iter(self._unstored.values()))[1]

    async def page_stored(self, name: str, project: str) -> None:
        """Wait until a write of the page of ``project`` in flight is over."""
        unstored = self._unstored.get((name, project))
        if unstored is not None:
            await unstored[1]

    async def _refresh_via(self, name: str, project: str, cached: Mapping[str, Any] | None) -> str:
        """A replica's refresh: the primary asks upstream and stores; we get it replicated."""
        key = (name, project)
        self.stats["page_fetches"] += 1
        try:
            state = await self._via(name, project)  # type: ignore[misc]
        except defer.CancelledError:
            raise
        except Exception as e:  # the primary is down or slow: the cache stands in
            return self._failed(name, cached, f"via the primary: {e}")
        if state == MISSING:
            self._not_found(key)
            return CACHED if cached is not None else MISSING
        self._checked[key] = (self._clock(), self._storage.serial)
        self._missing.pop(key, None)
        return FRESH

    async def _fallback(self, name: str, config: Mapping[str, Any], project: str,
                        cached: Mapping[str, Any] | None, error: str) -> str:
        """``_failed``, except that with nothing cached, a project the project list lacks
        is MISSING: the list's "no" stands while upstream cannot say otherwise."""
        if cached is None and await self.lists.lacks(name, config, project):
            self._count_failure(name, error)
            self._not_found((name, project))
            return MISSING
        return self._failed(name, cached, error)

    def _failed(self, name: str, cached: Mapping[str, Any] | None, error: str) -> str:
        self._count_failure(name, error)
        if cached is None:
            raise MirrorFailed(error)
        return CACHED

    def _count_failure(self, name: str, error: str) -> None:
        self.stats["page_errors"] += 1
        _log.warn("mirror {name}: {error}", name=name, error=error)

    # -- release files ---------------------------------------------------------------------

    async def link_for(self, name: str, project: str, relpath: str) -> Mapping[str, Any] | None:
        """The stored link whose entrypath is ``relpath`` (a ``.metadata`` path gives
        its release file's link with ``metadata`` True)."""
        record = await self.page(name, project)
        if record is None:
            return None
        base = relpath[:-len(".metadata")] if relpath.endswith(".metadata") else relpath
        for link in record.value.get("links", []):
            if link.get("entrypath") == base:
                if base != relpath:
                    return {**link, "url": link["url"] + ".metadata", "metadata": True,
                            "sha256": link.get("core_metadata"), "hash_spec": (
                                f"sha256={link['core_metadata']}" if link.get("core_metadata")
                                else "")}
                return link
        return None

    async def find_link(self, name: str, project: str, relpath: str,
                        config: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """``link_for``; with the index's ``config``, a link missing from the cached page
        has the page asked for again (another worker process may have answered the
        client with a page it is still writing)."""
        link = await self.link_for(name, project, relpath)
        if link is None and config is not None:
            try:
                await self.ensure(name, config, project)
            except MirrorFailed:
                pass  # no such file, then
            link = await self.link_for(name, project, relpath)
        return link

    async def download(self, name: str, project: str, version: str, relpath: str,
                       start: Callable[[Mapping[str, str]], IConsumer | None],
                       checked: Callable[[], None] = lambda: None,
                       config: Mapping[str, Any] | None = None) -> int:
        """Fetch ``relpath`` from upstream, streaming it to the consumer ``start`` returns
        once upstream answered (called with the headers to send; None: HEAD, nothing to
        send), writing it to a staging file; checked (length, hashes) and stored with its
        file record at the end. The consumer gets the last bytes only once the body is
        complete and right; then ``checked`` is called (the client's response may end
        there, before the storing); a wrong body raises TransferBroken and stores
        nothing. Concurrent downloads of one file wait for the first, then return 0:
        serve the stored file (MirrorFailed if the first failed). With the
        index's ``config``, its mirror_url's credentials go upstream, and a link missing
        from the cached page has the page asked for again (another worker process may
        still be writing it)."""
        running = self._downloads.get(relpath)
        if running is not None:
            try:
                await running.wait()
            except (NoSuchFile, MirrorFailed):
                raise
            except TransferBroken as e:  # nothing was sent here yet: a plain failure
                raise MirrorFailed(f"upstream sent a broken file: {e}") from None
            except Exception:  # the first request reports it; this one finds no file
                pass
            return 0
        work = Deferred.fromCoroutine(self._download(
            name, project, version, relpath, start, checked, config))
        shared = Shared(work, lambda: self._downloads.pop(relpath, None))
        if not shared.done:
            self._downloads[relpath] = shared
        return await shared.wait()

    async def _download(self, name: str, project: str, version: str, relpath: str,
                        start: Callable[[Mapping[str, str]], IConsumer | None],
                        checked: Callable[[], None], config: Mapping[str, Any] | None) -> int:
        if self.offline:
            raise MirrorFailed(f"{relpath} is not cached and the server is in offline mode")
        link = await self.find_link(name, project, relpath, config)
        if link is None:
            raise NoSuchFile(relpath)
        auth = split_credentials(str((config or {}).get("mirror_url") or ""))[1]
        self.stats["file_fetches"] += 1
        try:
            response = await self._upstream.open(link["url"], auth)
        except UpstreamError as e:
            self.stats["file_errors"] += 1
            raise MirrorFailed(f"error getting {public_url(link['url'])}: {e}") from None
        if response.code != 200:
            self.stats["file_errors"] += 1
            await discard(response)
            if response.code == 404:
                raise NoSuchFile(relpath)
            raise MirrorFailed(f"error {response.code} getting {public_url(link['url'])}")
        headers = {"Content-Type": response.headers.getRawHeaders(
            b"content-type", [b"application/octet-stream"])[0].decode("latin-1"),
                   "X-Accel-Buffering": "no"}
        length = response.length if isinstance(response.length, int) else None
        if length is not None:
            headers["Content-Length"] = str(length)
        modified = response.headers.getRawHeaders(b"last-modified", [None])[0]
        if modified:
            headers["Last-Modified"] = modified.decode("latin-1")
        consumer = start(headers)
        spool = _Spool(self._staging, extract=relpath.endswith(".whl")
                       and not link.get("core_metadata"), filename=relpath.rsplit("/", 1)[-1],
                       requirements=config is not None and self._prefetching is not None)
        moved = False
        try:
            size, sha256, right = await self._receive(
                response, consumer, spool, _Check(length, expected_hashes(link)), checked)
            if not right:
                self.stats["file_errors"] += 1
                raise TransferBroken(f"{public_url(link['url'])}: got {size} bytes with sha256 "
                                     f"{sha256}, expected {length} bytes, "
                                     f"{link.get('hash_spec') or 'no hash'}")
            if spool.requires and config is not None:
                self.prefetch(name, config, spool.requires)
            entry = {"hash_spec": f"sha256={sha256}", "hashes": {"sha256": sha256},
                     "last_modified": modified.decode("latin-1") if modified
                     else formatdate(usegmt=True), "url": link["url"], "project": project,
                     "version": version, "size": size}
            files = {relpath: entry}
            assert spool.path is not None
            moves = [(relpath, spool.path, sha256)]
            metadata = spool.metadata  # upstream advertises none: we do from now on
            if metadata is not None:
                assert spool.meta_path is not None
                meta_size, meta_sha256 = metadata
                moves.append((relpath + ".metadata", spool.meta_path, meta_sha256))
                files[relpath + ".metadata"] = {
                    **entry, "hash_spec": f"sha256={meta_sha256}",
                    "hashes": {"sha256": meta_sha256}, "size": meta_size, "url": None}
            await self._blobs.move_in(moves)
            moved = True
            user, index = name.split("/", 1)
            await self.page_stored(name, project)  # ours must come after it
            record = await self._storage.get_mirror_project(user, index, project)
            if metadata is not None and record is not None:
                value = dict(record.value)
                value["extracted"] = {**value.get("extracted", {}), link["filename"]: meta_sha256}
                await self._storage.write_mirror_project(user, index, project, value, files)
            else:
                await self._storage.write_mirror_files(user, index, project, files)
            return size
        finally:  # whatever was not moved into the store
            if not moved and spool.path is not None:
                await self._offload(_remove, spool.path, spool.meta_path)

    async def _receive(self, response: Any, consumer: IConsumer | None, spool: _Spool,
                       check: _Check, checked: Callable[[], None]) -> tuple[int, str, bool]:
        """The body to the consumer and to ``spool`` (written on threads, in order);
        returns (size, sha256, whether ``check`` passed). The consumer gets the last piece
        only once the body is complete and passed ``check``, then ``checked`` is called:
        a body that fails never reaches a client whole. A slow client pauses the
        upstream connection."""
        receiver = _Receiver(consumer, spool, self._offload, check, checked, self._after_replies)
        response.deliverBody(receiver)
        return await receiver.done


def expected_hashes(link: Mapping[str, Any]) -> dict[str, str]:
    """The hashes upstream's page gave for the file of ``link`` (algorithm -> hex digest),
    those hashlib knows."""
    expected = {}
    if link.get("sha256"):
        expected["sha256"] = str(link["sha256"])
    algo, _, value = str(link.get("hash_spec") or "").partition("=")
    if value and algo not in expected and algo in hashlib.algorithms_guaranteed \
            and not algo.startswith("shake_"):
        expected[algo] = value
    return expected


class _Check:
    """What a first download's body must be: ``length`` bytes (when upstream said) with
    the ``expected`` hashes (algorithm -> hex digest)."""

    def __init__(self, length: int | None, expected: Mapping[str, str]) -> None:
        self._length = length
        self._expected = dict(expected)
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._others = {algo: hashlib.new(algo) for algo in self._expected if algo != "sha256"}

    def update(self, data: bytes) -> None:
        self.size += len(data)
        self.sha256.update(data)
        for other in self._others.values():
            other.update(data)

    def passed(self) -> bool:
        if self._length is not None and self.size != self._length:
            return False
        got = {"sha256": self.sha256.hexdigest(),
               **{algo: h.hexdigest() for algo, h in self._others.items()}}
        return all(got[algo] == value.lower() for algo, value in self._expected.items())


class _Receiver(Protocol):
    """Passes the body on as it arrives, holding back the last piece received until the
    body is complete and checked; spools it in pieces of at least SPOOL_PIECE bytes, so
    a small file costs one trip to a thread, taken once the client has it (``later``:
    after the client's response has been sent)."""

    def __init__(self, consumer: IConsumer | None, spool: _Spool,
                 offload: Callable[..., Deferred[Any]], check: _Check,
                 checked: Callable[[], None],
                 later: Callable[[Callable[[], Any]], None] = lambda work: work()) -> None:
        self._consumer = consumer
        self._spool = spool  # written and closed on threads, in order
        self._offload = offload
        self._check = check
        self._checked = checked
        self._later = later
        self._held = b""  # the last piece, not passed on yet
        self._passed = False
        self._writing: Deferred[Any] | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.done: Deferred[tuple[int, str, bool]] = Deferred()

    def connectionMade(self) -> None:
        if self._consumer is not None:
            self._consumer.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        if not data:
            return
        self._check.update(data)
        if self._consumer is not None:
            if self._held:
                self._consumer.write(self._held)
            self._held = data
        if self._error is not None:
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._writing is None and self._pending_size >= SPOOL_PIECE:
            self._write_pending()

    def _take_pending(self) -> bytes:
        chunk, self._pending, self._pending_size = b"".join(self._pending), [], 0
        return chunk

    def _write_pending(self) -> None:
        self._writing = self._offload(self._spool.write, self._take_pending())
        self._writing.addBoth(self._written)

    def _written(self, result: Any) -> Any:
        self._writing = None
        if isinstance(result, Failure):
            self._pending, self._pending_size = [], 0
            self._error = result
        elif self._ended is not None:
            self._finish()
        elif self._pending_size >= SPOOL_PIECE:
            self._write_pending()
        return None

    _ended: Failure | None = None
    _error: Failure | None = None

    def connectionLost(self, reason: Failure) -> None:
        if self._consumer is not None:
            try:
                self._consumer.unregisterProducer()
            except Exception:  # the client is gone already
                pass
        self._ended = reason
        if reason.check(ResponseDone) is not None and self._error is None \
                and self._check.passed():
            self._passed = True
            if self._consumer is not None and self._held:
                self._consumer.write(self._held)
            self._checked()
        self._held = b""
        if self._writing is None:
            self._later(self._finish)

    def _finish(self) -> None:
        complete = self._error is None and (self._ended is None
                                            or self._ended.check(ResponseDone) is not None)
        rest = self._take_pending() if complete else b""
        self._offload(self._spool.close, complete, rest).addBoth(self._closed)

    def _closed(self, result: Any) -> None:
        if isinstance(result, Failure) and self._error is None:
            self._error = result
        if self._error is not None:  # (its last piece was held back from the client too)
            self.done.errback(TransferBroken(f"spooling the body failed: {self._error.value}"))
        elif self._ended is not None and not self._ended.check(ResponseDone):
            self.done.errback(TransferBroken(f"upstream body broke off: {self._ended.value}"))
        else:
            self.done.callback((self._check.size, self._check.sha256.hexdigest(), self._passed))


class _Spool:
    """A download's staging file: created with its first write, and closed (with its last
    bytes, and the wheel's core metadata written beside it when asked to extract it) in
    one go, so a small file costs one trip to a thread. With ``requirements``, the
    projects the core metadata (extracted, or the file itself: a ``.metadata``) requires
    are read at the close. Used on threads, one call at a time."""

    def __init__(self, staging: Path, extract: bool, filename: str,
                 requirements: bool = False) -> None:
        self._staging = staging
        self._extract = extract
        self._filename = filename
        self._requirements = requirements
        self._file: IO[bytes] | None = None
        self.path: Path | None = None
        self.meta_path: Path | None = None
        self.metadata: tuple[int, str] | None = None  # (size, sha256) once extracted
        self.requires: list[str] = []  # normalised project names, with ``requirements``

    def _open(self) -> IO[bytes]:
        if self._file is None:
            fd, name = tempfile.mkstemp(dir=self._staging, prefix="mirror-")
            self.path = Path(name)
            self.meta_path = self.path.with_name(self.path.name + ".metadata")
            self._file = os.fdopen(fd, "wb")
        return self._file

    def write(self, data: bytes) -> None:
        self._open().write(data)

    def close(self, complete: bool, rest: bytes = b"") -> None:
        """Write ``rest`` and close; with ``complete``, extract the core metadata."""
        if self._file is None and not complete:
            return  # broke off before the first byte: nothing to remove either
        spool = self._open()
        if rest:
            spool.write(rest)
        spool.close()
        if not complete:
            return
        assert self.path is not None and self.meta_path is not None
        data = None
        if self._extract:
            try:
                data = core_metadata(self.path, self._filename)
                if data is not None:
                    self.meta_path.write_bytes(data)
                    self.metadata = len(data), hashlib.sha256(data).hexdigest()
            except Exception as e:  # never a reason to fail the download itself
                _log.warn("no core metadata from {filename}: {error}", filename=self._filename,
                          error=e)
        elif self._requirements and self._filename.endswith(".metadata") \
                and self.path.stat().st_size <= MAX_METADATA_FILE:
            data = self.path.read_bytes()
        if data is not None and self._requirements:
            self.requires = parse_requirements(data)


def _remove(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
