"""The project name list of a mirror (spec/mirror.md 2): fetched in the background when
older than the expiry, never awaited by a page; kept in the blob store so a restart or
another worker process starts from the last one. It answers +simple/ and the index's
``projects``; whether one project exists is asked upstream (mirror/cache.py), so a
project published since the list was fetched is found at once, and added to the list.
A list is of one upstream URL: a mirror given another mirror_url starts without one."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from devpi_twisted.memory import give_back
from devpi_twisted.mirror import settings
from devpi_twisted.mirror.namelist import NameList
from devpi_twisted.mirror.parse import PageError
from devpi_twisted.mirror.parse_list import parse_project_list
from devpi_twisted.mirror.upstream import Upstream, UpstreamError, public_url
from devpi_twisted.mirror.settings import Config
from devpi_twisted.storage.blobs import BlobMissing, BlobStore
from devpi_twisted.storage.types import Offload

_log = Logger()
_VERSIONS = itertools.count()


@attrs.frozen
class _List:
    at: float  # when upstream last confirmed it (-inf: loaded, to be revalidated)
    etag: str | None
    names: NameList
    url: str  # the upstream URL it is of, credentials removed
    # tells this list from others in ETags: upstream's ETag, else a number of this process
    version: str = attrs.field(factory=lambda: f"n{next(_VERSIONS)}")


class ProjectLists:
    def __init__(self, upstream: Upstream, blobs: BlobStore, staging: Path, offload: Offload,
                 clock: IReactorTime, offline: Callable[[], bool],
                 expiry: Callable[[Config], float]) -> None:
        self._upstream = upstream
        self._blobs = blobs
        self._staging = staging
        self._offload = offload
        self._clock = clock
        self._offline = offline
        self._expiry = expiry
        self._lists: dict[str, _List] = {}
        # fetches under way, by mirror and upstream URL: a mirror given another
        # mirror_url fetches that one's list even while the old one's is still coming
        self._listing: dict[tuple[str, str], Deferred[None]] = {}
        self._wanted: dict[str, str] = {}  # the upstream URL each mirror was last asked with

    def names(self, name: str, config: Config) -> NameList | None:
        """Upstream's project names (normalised -> as upstream spells them) as last
        fetched, None before the first list arrived. An expired or missing list is
        fetched in the background; nobody waits for it (mirror.md 2)."""
        known = self._known(name, config)
        expired = known is None or self._clock.seconds() - known.at >= self._expiry(config)
        key = (name, _list_url(config))
        self._wanted[name] = key[1]
        if expired and not self._offline() and settings.lists_projects(config) \
                and key not in self._listing:
            running = Deferred.fromCoroutine(self._fetch_names(name, config))
            self._listing[key] = running
            running.addErrback(lambda f: _log.failure("project list of {name}", f, name=name))
            running.addBoth(self._listed, key)
        return known.names if known is not None else None

    def stamp(self, name: str, config: Config) -> str | None:
        """What tells the list in memory from any other (its ETag upstream, and its
        length, which grows when a project is ``found``); None before there is one."""
        known = self._known(name, config)
        if known is None:
            return None
        return f"{known.etag or known.version}:{len(known.names)}"

    async def lacks(self, name: str, config: Config, project: str) -> bool:
        """Whether the mirror's list (loaded from the store if this process has none
        yet) lacks ``project``; False when there is none or the mirror has no list."""
        if not settings.lists_projects(config):
            return False
        names = self.names(name, config)
        if names is None:
            known = await self.load(name, config)
            names = known.names if known is not None else None
        return names is not None and project not in names

    def found(self, name: str, config: Config, project: str) -> None:
        """Upstream has ``project`` (normalised), which the list may not have had when it
        was fetched: it is in the list from now on (until the next list replaces it)."""
        known = self._known(name, config)
        if known is not None:
            known.names.add(project)

    def _known(self, name: str, config: Config) -> _List | None:
        """The list in memory, if it is of the mirror's current upstream."""
        known = self._lists.get(name)
        return known if known is not None and known.url == _list_url(config) else None

    def _listed(self, _: object, key: tuple[str, str]) -> None:
        self._listing.pop(key, None)

    async def _fetch_names(self, name: str, config: Config) -> None:
        known = await self.load(name, config)
        url = settings.upstream_url(config)
        try:
            reply = await self._upstream.get_page(
                url, known.etag if known else None, timeout=max(self._upstream.timeout, 30.0))
        except UpstreamError as e:
            _log.warn("mirror {name}: project list: {error}", name=name, error=e)
            return
        if reply.status == 304 and known is not None:
            self._install(name, attrs.evolve(known, at=self._clock.seconds()))
            return
        if reply.status != 200:
            _log.warn("mirror {name}: project list: {status} from {url}", name=name,
                      status=reply.status, url=public_url(url))
            return
        try:
            names = await self._offload(_parse_list, reply.body,
                                        reply.headers.get("content-type", ""), reply.url)
        except PageError as e:
            _log.warn("mirror {name}: invalid project list: {error}", name=name, error=e)
            return
        fetched = _List(self._clock.seconds(), reply.headers.get("etag"), names, _list_url(config))
        if self._install(name, fetched):
            await self._save_names(name, fetched)

    def _install(self, name: str, fetched: _List) -> bool:
        """Make ``fetched`` the mirror's list, unless the mirror has been asked about
        with another upstream URL since (its config changed)."""
        if self._wanted.get(name, fetched.url) != fetched.url:
            return False
        self._lists[name] = fetched
        return True

    async def load(self, name: str, config: Config) -> _List | None:
        """The list in memory, else the one stored by an earlier run (or another
        process), as expired (so it is revalidated); None if there is none of the
        mirror's current upstream."""
        known = self._known(name, config)
        if known is not None:
            return known
        sink = _Sink()
        try:
            await self._blobs.read(_names_key(name), sink)
            etag, names, url = await self._offload(_read_list, sink.data())
            loaded = _List(float("-inf"), etag, names, url)
        except (BlobMissing, ValueError, KeyError, TypeError):
            return None  # none, or unreadable, or saved before lists had their URL
        if loaded.url != _list_url(config):
            return None
        if self._known(name, config) is None:  # unless fetched meanwhile
            self._lists[name] = loaded
        return self._lists[name]

    async def _save_names(self, name: str, known: _List) -> None:
        spool = None
        try:
            spool, sha256 = await self._offload(_write_list, self._staging, known)
            await self._blobs.move_in([(_names_key(name), spool, sha256)])
        except Exception as e:  # the list in memory still serves
            _log.warn("mirror {name}: project list not saved: {error}", name=name, error=e)
        finally:
            if spool is not None:  # left when the move failed
                await self._offload(spool.unlink, True)


@implementer(IConsumer)
class _Sink:
    """Collects a blob read into memory."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self._parts.append(data)

    def data(self) -> bytes:
        return b"".join(self._parts)


def _names_key(name: str) -> str:
    return f"{name}/+names/projects.json"


def _list_url(config: Config) -> str:
    return public_url(settings.upstream_url(config))


# Lists are saved as JSON lines: a head ({"etag", "url", "chunks"}), then the names in
# chunks of LIST_CHUNK ({normalised: given}). PyPI's (over 900,000 names) as one JSON
# document took 0.3 s to write and 0.75 s to read in single calls holding the GIL,
# stalling the reactor; a chunk takes a few ms.
LIST_CHUNK = 10_000


def _write_list(staging: Path, known: _List) -> tuple[Path, str]:
    """``known`` in a new staging file: (its path, sha256)."""
    items = list(known.names.items())
    head = {"etag": known.etag, "url": known.url, "chunks": -(-len(items) // LIST_CHUNK)}
    digest = hashlib.sha256()
    fd, name = tempfile.mkstemp(dir=staging, prefix="names-")
    with os.fdopen(fd, "wb") as out:
        for start in range(-LIST_CHUNK, len(items), LIST_CHUNK):  # the head first
            part = head if start < 0 else dict(items[start:start + LIST_CHUNK])
            line = json.dumps(part, separators=(",", ":")).encode() + b"\n"
            digest.update(line)
            out.write(line)
    del items
    give_back()
    return Path(name), digest.hexdigest()


def _parse_list(body: bytes, content_type: str, url: str) -> NameList:
    """Upstream's list, compacted (on a thread: the parsed dict is freed there)."""
    names = NameList(parse_project_list(body, content_type, url))
    give_back()
    return names


def _read_list(data: bytes) -> tuple[str | None, NameList, str]:
    """(etag, names, url) of a list _write_list wrote; ValueError if it is not one."""
    lines = data.split(b"\n")
    if len(lines[0]) > 4096:  # not a head (a list saved as one document by a version before)
        raise ValueError("not a saved project list")
    head = json.loads(lines[0])
    if not isinstance(head, dict) or not isinstance(head.get("chunks"), int):
        raise ValueError("not a saved project list")
    chunks = [line for line in lines[1:] if line]
    if len(chunks) != head["chunks"]:
        raise ValueError("a saved project list cut short")
    names: dict[str, str] = {}
    for chunk in chunks:
        names.update(json.loads(chunk))
    if not all(isinstance(v, str) for v in names.values()):
        raise ValueError("a saved project list with other than names")
    compact = NameList(names)
    del names
    give_back()
    return head.get("etag"), compact, str(head["url"])
