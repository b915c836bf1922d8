"""First downloads of mirrored release files (spec/mirror.md 6-8): the file is fetched
from upstream once (concurrent requests wait for the first), streamed to the client
while it is spooled, checked (length, hashes) and stored with its file record. Where
upstream advertises no core metadata, the first download of a wheel extracts it and
the page's ``extracted`` map (filename -> sha256) advertises it from then on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer

from devpi_twisted.mirror import settings
from devpi_twisted.mirror.links import Link, expected_hashes, served_link
from devpi_twisted.mirror.outcomes import MirrorFailed, NoSuchFile, TransferBroken
from devpi_twisted.mirror.pages import PageCache
from devpi_twisted.mirror.receive import Check, Extracted, Receiver, extract, metadata_path
from devpi_twisted.mirror.settings import Config
from devpi_twisted.mirror.upstream import (
    Shared, Upstream, UpstreamError, discard, public_url, split_credentials,
)
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import Storage
from devpi_twisted.storage.spool import Spool
from devpi_twisted.storage.types import Offload

# The response's headers -> the consumer to stream the body to (None: HEAD)
Start = Callable[[Mapping[str, str]], IConsumer | None]
Ensure = Callable[[str, Config, str], Awaitable[str]]
Prefetch = Callable[[str, Config, list[str]], None]


class Downloader:
    def __init__(self, storage: Storage, blobs: BlobStore, staging: Path, offload: Offload,
                 upstream: Upstream, pages: PageCache, counters: dict[str, int],
                 offline: Callable[[], bool], ensure: Ensure,
                 prefetch: Prefetch | None = None) -> None:
        """``ensure``: refreshes a page (a link missing from the cached page has it
        asked for again); ``prefetch``: given the requirements of a downloaded release
        (None: they are not read)."""
        self._storage = storage
        self._blobs = blobs
        self._staging = staging
        self._offload = offload
        self._upstream = upstream
        self._pages = pages
        self._counters = counters
        self._offline = offline
        self._ensure = ensure
        self._prefetch = prefetch
        self._downloads: dict[str, Shared[int]] = {}

    async def link_for(self, name: str, project: str, relpath: str) -> Link | None:
        """The stored link whose entrypath is ``relpath`` (a ``.metadata`` path gives
        its release file's link with ``metadata`` True)."""
        record = await self._pages.page((name, project))
        return served_link(record.value, relpath) if record is not None else None

    async def find_link(self, name: str, project: str, relpath: str,
                        config: Config | None) -> Link | None:
        """``link_for``; with the index's ``config``, a link missing from the cached page
        has the page asked for again (another worker process may have answered the
        client with a page it is still writing)."""
        link = await self.link_for(name, project, relpath)
        if link is None and config is not None:
            try:
                await self._ensure(name, config, project)
            except MirrorFailed:
                pass  # no such file, then
            link = await self.link_for(name, project, relpath)
        return link

    async def download(self, name: str, project: str, version: str, relpath: str,
                       start: Start, checked: Callable[[], None] = lambda: None,
                       config: Config | None = None) -> int:
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
                        start: Start, checked: Callable[[], None], config: Config | None) -> int:
        if self._offline():
            raise MirrorFailed(f"{relpath} is not cached and the server is in offline mode")
        link = await self.find_link(name, project, relpath, config)
        if link is None:
            raise NoSuchFile(relpath)
        auth = split_credentials(settings.upstream_url(config) if config is not None else "")[1]
        self._counters["file_fetches"] += 1
        try:
            response = await self._upstream.open(link["url"], auth)
        except UpstreamError as e:
            self._counters["file_errors"] += 1
            raise MirrorFailed(f"error getting {public_url(link['url'])}: {e}") from None
        if response.code != 200:
            self._counters["file_errors"] += 1
            await discard(response)
            if response.code == 404:
                raise NoSuchFile(relpath)
            raise MirrorFailed(f"error {response.code} getting {public_url(link['url'])}")
        headers = {"Content-Type": (response.headers.getRawHeaders(b"content-type") or [
            b"application/octet-stream"])[0].decode("latin-1"), "X-Accel-Buffering": "no"}
        length = response.length if isinstance(response.length, int) else None
        if length is not None:
            headers["Content-Length"] = str(length)
        modified = (response.headers.getRawHeaders(b"last-modified") or [None])[0]
        if modified:
            headers["Last-Modified"] = modified.decode("latin-1")
        consumer = start(headers)
        spool = Spool(self._staging, self._offload, prefix="mirror-")
        then = partial(extract, filename=relpath.rsplit("/", 1)[-1],
                       wheel=relpath.endswith(".whl") and not link.get("core_metadata"),
                       requirements=config is not None and self._prefetch is not None)
        receiver = Receiver(consumer, spool, Check(length, expected_hashes(link)), checked,
                            self._pages.after_replies, then)
        moved = False
        try:
            response.deliverBody(receiver)
            right, extracted = await receiver.done
            size, sha256 = spool.size, spool.sha256.hexdigest()
            if not right:
                self._counters["file_errors"] += 1
                raise TransferBroken(f"{public_url(link['url'])}: got {size} bytes with sha256 "
                                     f"{sha256}, expected {length} bytes, "
                                     f"{link.get('hash_spec') or 'no hash'}")
            if extracted.requires and config is not None and self._prefetch is not None:
                self._prefetch(name, config, extracted.requires)
            last_modified = modified.decode("latin-1") if modified else formatdate(usegmt=True)
            await self._store(name, project, relpath, spool, extracted, {
                "hash_spec": f"sha256={sha256}", "hashes": {"sha256": sha256},
                "last_modified": last_modified, "url": link["url"], "project": project,
                "version": version, "size": size}, link["filename"])
            moved = True
            return size
        finally:  # whatever was not moved into the store
            if not moved and spool.path is not None:
                await self._offload(_remove, spool.path, metadata_path(spool.path))

    async def _store(self, name: str, project: str, relpath: str, spool: Spool,
                     extracted: Extracted, entry: dict[str, Any], filename: str) -> None:
        """Move the checked file (and the core metadata extracted from it) into the blob
        store, then record it under its page (and the page's ``extracted``)."""
        assert spool.path is not None
        sha256 = entry["hashes"]["sha256"]
        files = {relpath: entry}
        moves = [(relpath, spool.path, sha256)]
        metadata = extracted.metadata  # upstream advertises none: we do from now on
        if metadata is not None:
            meta_size, meta_sha256 = metadata
            moves.append((relpath + ".metadata", metadata_path(spool.path), meta_sha256))
            files[relpath + ".metadata"] = {
                **entry, "hash_spec": f"sha256={meta_sha256}",
                "hashes": {"sha256": meta_sha256}, "size": meta_size, "url": None}
        await self._blobs.move_in(moves)
        user, index = name.split("/", 1)
        await self._pages.stored((name, project))  # ours must come after it
        record = await self._storage.get_mirror_project(user, index, project)
        if metadata is not None and record is not None:
            value = dict(record.value)
            value["extracted"] = {**value.get("extracted", {}), filename: metadata[1]}
            await self._storage.write_mirror_project(user, index, project, value, files)
        else:
            await self._storage.write_mirror_files(user, index, project, files)


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
