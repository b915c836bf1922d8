"""Release files of every index (FileApp): sent with sendfile (web/sendfile.py) or through a
producer, with ETag, Range and conditional requests; a mirror's file not stored yet is
fetched from upstream while the client receives it (mirror/cache.py). Each request is
guarded first by the read permission of the index in its URL (a file is served only
under the index that holds it); files of private indexes are not ``public`` to caches."""

from __future__ import annotations

import functools
import mimetypes
import re
import time
from urllib.parse import quote
from collections.abc import Awaitable, Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer
from twisted.logger import Logger

from devpi_twisted.mirror.cache import MirrorFailed, NoSuchFile, TransferBroken
from devpi_twisted.mirror.upstream import with_credentials
from devpi_twisted.model.acl import Identity, check_read, public
from devpi_twisted.model.errors import Gone, InvalidInput, NotFound, UpstreamFailed
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.release_ops import ReleaseOps
from devpi_twisted.model.releases import split_filename
from devpi_twisted.replication.client import PrimaryUnreachable
from devpi_twisted.replication.fetch import FileFetchFailed, FileGone
from devpi_twisted.storage.adapter import shielded
from devpi_twisted.storage.blobs import BlobMissing, BlobReadStopped, BlobStore
from devpi_twisted.storage.values import MirrorConfig
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest, MirrorFiles, Offload, ReplicaFiles
from devpi_twisted.web.sendfile import SendfileBody, transport_of

_log = Logger()
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# Set by the nginx site of gen-config: the internal location serving +files (genconfig.py).
ACCEL_HEADER = b"X-Devpi-Accel-Location"


@functools.lru_cache(maxsize=4096)
def content_type(filename: str) -> bytes:
    if filename.endswith((".tar.gz", ".tgz")):
        return b"application/x-tar"
    guessed, _ = mimetypes.guess_type(filename)
    return (guessed or "application/octet-stream").encode()


class FileApp:
    """GET/HEAD of ``+f`` and ``+e`` paths. Needs the server's operations (index
    configs), the release records, the blob store, a thread to offload to, and the
    mirror cache and replica loop where there are; counts in ``stats``."""

    def __init__(self, ops: ServerOps, releases: ReleaseOps, blobs: BlobStore,
                 offload: Offload, identity: Callable[[HttpRequest], Awaitable[Identity]],
                 mirror: MirrorFiles | None = None, replica: ReplicaFiles | None = None,
                 policy: Callable[[str, str, str], Awaitable[None]] | None = None) -> None:
        """``policy(user, index, relpath)``: refuses a file the index's policy holds back."""
        self._ops = ops
        self._policy = policy
        self._identity = identity
        self._releases = releases
        self._blobs = blobs
        self._offload = offload
        self._mirror = mirror
        self._replica = replica
        # counts of this process, shown by /+metrics and /+status (web/ops_routes.py)
        self.stats = {"mirror_file_hits": 0, "accel_redirects": 0}

    async def release_file(self, request: HttpRequest, user: str, index: str, rest: str) -> bytes:
        await self._check_read(request, user, index, rest)
        if self._policy is not None:
            await self._policy(user, index, rest)
        return await self._file(request, user, index, f"{user}/{index}/+f/{rest}")

    async def external_file(self, request: HttpRequest, user: str, index: str, rest: str) -> bytes:
        """A mirrored file upstream published without a sha256 (mirror.md 5)."""
        await self._check_read(request, user, index, rest)
        if self._policy is not None:
            await self._policy(user, index, rest)
        return await self._file(request, user, index, f"{user}/{index}/+e/{rest}")

    async def _check_read(self, request: HttpRequest, user: str, index: str, rest: str) -> None:
        """pkg_read on the index (and the file's project, for a token naming projects);
        the files of a public index are anyone's: no credentials checked."""
        config = await self._ops.get_index(user, index)
        if public(config.acl_read):
            return
        request.devpi_private = True  # type: ignore[attr-defined]  # (a DevpiRequest's)
        identity = await self._identity(request)
        project = None
        if identity.scope is not None and identity.scope.projects is not None:
            try:
                name = split_filename(rest.rsplit("/", 1)[-1].removesuffix(".metadata"))[0]
                project = normalize_project(name)
            except InvalidInput:
                project = ":unknown:"  # no project a token may name
        check_read(identity, user, index, config.acl_read, project)

    async def _surely_not_stored(self, user: str, index: str, relpath: str) -> bool:
        """A file of a mirror page this process just created: not stored, no need to look
        for its record (that costs the database a trip)."""
        if self._mirror is None or self._replica is not None:
            return False
        try:
            name = split_filename(relpath.rsplit("/", 1)[-1].removesuffix(".metadata"))[0]
        except InvalidInput:
            return False
        mirror, project = f"{user}/{index}", normalize_project(name)
        if not self._mirror.none_stored(mirror, project):
            return False
        config = await self._ops.get_index(user, index)  # (catches up with other workers)
        return config.is_mirror and self._mirror.none_stored(mirror, project)

    async def _mirror_file(self, request: HttpRequest, user: str, index: str, relpath: str) -> bytes:
        """A mirror's file not stored yet: fetched, streamed to the client, stored."""
        config = await self._ops.get_index(user, index)
        if not isinstance(config, MirrorConfig) or self._mirror is None:
            raise NotFound("no such file")
        filename = relpath.rsplit("/", 1)[-1]
        try:
            name, version, _ = split_filename(filename.removesuffix(".metadata"))
        except InvalidInput:
            raise NotFound("no such file") from None
        if self._replica is not None:  # the primary downloads it (mirror.md 10)
            link = await self._mirror.link_for(f"{user}/{index}", normalize_project(name), relpath)
            return await self._replica_file(request, user, index, relpath, mirror=True,
                                            sha256=None if link is None else link.get("sha256"))

        def start(headers: Mapping[str, str]) -> IConsumer | None:
            for key, value in headers.items():
                request.setHeader(key.encode(), value.encode("latin-1"))
            return None if request.method == b"HEAD" else IConsumer(request)

        if config.mirror_use_external_urls:  # not fetched here: the client goes there
            link = await self._mirror.find_link(f"{user}/{index}", normalize_project(name),
                                                relpath, config)
            if link is None:
                raise NotFound("no such file")
            request.setResponseCode(302)
            target = with_credentials(str(link["url"]), config.mirror_url)
            request.setHeader(b"Location", target.encode())
            return b""

        def checked() -> None:  # the client has it all: no need to wait for the storing
            if request.method != b"HEAD" and not request.finished and request.channel is not None:
                request.finish()

        try:
            sent = await shielded(Deferred.fromCoroutine(self._mirror.download(
                f"{user}/{index}", normalize_project(name), version, relpath, start, checked,
                config)))
        except NoSuchFile:
            raise NotFound("no such file") from None
        except MirrorFailed as e:
            raise UpstreamFailed(str(e)) from None
        except TransferBroken as e:  # the client must not take the short or wrong body
            _log.warn("mirror download of {relpath} broke: {error}", relpath=relpath, error=e)
            transport = request.channel.transport if request.channel is not None else None
            if transport is not None:
                abort = getattr(transport, "abortConnection", transport.loseConnection)
                abort()
            return b""
        if sent == 0:  # another request fetched it meanwhile: now it is ours to serve
            return await self._file(request, user, index, relpath, fetch=False)
        return b""

    async def _replica_file(self, request: HttpRequest, user: str, index: str, relpath: str,
                            mirror: bool = False, sha256: str | None = None) -> bytes:
        """A replica's file whose body is not here: fetched from the primary at once (a
        mirror's file not downloaded anywhere yet: the primary downloads it), stored
        without a serial, then served (ops.md 6.5)."""
        assert self._replica is not None
        try:
            if not mirror:
                if not await self._replica.fetch_now(relpath):
                    raise NotFound("no such file")
            else:
                path, _, got = await self._replica.download(relpath)
                try:
                    if sha256 and got != sha256:  # the link's hash, from upstream's page
                        raise FileFetchFailed(f"sha256 {got}, expected {sha256}")
                    await self._blobs.move_in([(relpath, path, got)])
                finally:
                    await self._offload(path.unlink, True)
        except FileGone:
            raise NotFound("no such file") from None
        except (FileFetchFailed, PrimaryUnreachable) as e:
            raise UpstreamFailed(f"fetching {relpath} from the primary failed: {e}") from None
        record = await self._releases.file_record(relpath)
        if record is not None and not record.deleted:
            return await self._file(request, user, index, relpath, fetch=False)
        size = await self._blobs.size(relpath)  # its record is still on the way here
        if size is None:
            raise NotFound("no such file")
        request.setHeader(b"Content-Type", content_type(relpath.rsplit("/", 1)[-1]))
        request.setHeader(b"Content-Length", b"%d" % size)
        if request.method != b"HEAD":
            await shielded(self._blobs.read(relpath, IConsumer(request)))
        return b""

    async def _file(self, request: HttpRequest, user: str, index: str, relpath: str,
                    fetch: bool = True) -> bytes:
        relpath = relpath.split("#", 1)[0]
        if fetch and await self._surely_not_stored(user, index, relpath):
            return await self._mirror_file(request, user, index, relpath)
        record = await self._releases.file_record(relpath)
        if record is None or record.deleted:
            if fetch and (await self._ops.get_index(user, index)).is_mirror:
                # not fetched yet, or its download deleted: the link still leads upstream
                return await self._mirror_file(request, user, index, relpath)
            if record is None:
                raise NotFound("no such file")
            raise Gone("file existed, deleted in later serial")
        entry = record.entry
        if "application/json" in render.accept(request):
            return render.result(request, "releasefilemeta", dict(entry))
        sha256 = str(entry.get("hashes", {}).get("sha256", ""))
        etag = f'"{sha256}"'.encode()
        request.setHeader(b"Content-Type", content_type(relpath.rsplit("/", 1)[-1]))
        request.setHeader(b"ETag", etag)
        request.setHeader(b"Accept-Ranges", b"bytes")
        request.setHeader(b"Cache-Control", b"max-age=365000000, immutable, private"
                          if getattr(request, "devpi_private", False) else
                          b"max-age=365000000, immutable, public")
        if entry.get("last_modified"):
            request.setHeader(b"Last-Modified", str(entry["last_modified"]).encode())
        if request.getHeader(b"If-None-Match") == etag:
            request.setResponseCode(304)
            return b""
        accel = request.getHeader(ACCEL_HEADER)
        if accel and self._blobs.local_path(relpath) is None:
            accel = None  # nginx reaches +files only; PostgreSQL's bodies go out from here
        transport = transport_of(request) if request.method == b"GET" and not accel else None
        try:
            local = await self._blobs.open_local(relpath, sha256) \
                if transport is not None or accel else None
        except BlobMissing:
            if fetch and self._replica is not None:  # not replicated yet: from the primary now
                return await self._replica_file(request, user, index, relpath)
            if fetch:  # a mirror's file removed from the store: fetched again
                return await self._mirror_file(request, user, index, relpath)
            raise NotFound("no such file") from None
        if "url" in entry:  # a mirror's file served from the store: its last use, for cleanup
            self.stats["mirror_file_hits"] += 1
            touched = self._blobs.touch(relpath, time.time())
            if touched is not None:
                touched.addErrback(lambda f: _log.failure("recording a download of {relpath}",
                                                          f, relpath=relpath))
        if accel and local is not None:  # nginx sends the bytes (and answers Range)
            local.close()
            self.stats["accel_redirects"] += 1
            request.setHeader(b"X-Accel-Redirect", accel.rstrip(b"/") + b"/" +
                              quote(relpath, safe="/+=-_.~").encode("ascii"))
            # no body, said so: nginx keeps the upstream connection (an empty chunked one closes it)
            request.setHeader(b"Content-Length", b"0")
            return b""
        try:
            size = local.size if local is not None else await self._blobs.size(relpath)
            if size is None:
                if fetch and self._replica is not None:
                    return await self._replica_file(request, user, index, relpath)
                if fetch:  # a mirror's file removed from the store: fetched again
                    return await self._mirror_file(request, user, index, relpath)
                raise NotFound("no such file")
            span = _byte_span(request, size)
            if span is None or request.method == b"HEAD" or span[0] == span[1]:
                return b""
            start, end = span
            # Shielded: when the client hangs up, twisted.web stops the producer (the
            # transfer ends by itself) and cancels this handler, which must not cut in.
            if local is not None and transport is not None:
                await shielded(SendfileBody(request, transport, local.fd, start, end,
                                            self._offload).send())
            else:
                await shielded(self._blobs.read(relpath, IConsumer(request), start, end - start))
        except BlobReadStopped:  # the client went away; the response stays incomplete
            if request.producer is not None and request.channel is not None:
                request.unregisterProducer()
            request.loseConnection()
        except BlobMissing:  # the file ended early: the client sees a short body, not a wrong one
            if not request.startedWriting:
                raise NotFound("no such file") from None
            request.loseConnection()
        finally:
            if local is not None:
                local.close()
        return b""


def _byte_span(request: HttpRequest, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` to send, with the status and Content-Length / Content-Range
    headers set for it (206 for a single satisfiable Range); None after a 416."""
    start, end = 0, size
    requested = request.getHeader(b"Range")
    match = _RANGE.match(requested.decode("latin-1")) if requested else None
    if match and (match.group(1) or match.group(2)):
        first, last = match.group(1), match.group(2)
        if first:
            start, end = int(first), min(int(last) + 1 if last else size, size)
        else:
            start, end = max(size - int(last), 0), size
        if start >= size or start >= end:
            request.setResponseCode(416)
            request.setHeader(b"Content-Range", b"bytes */%d" % size)
            return None
        request.setResponseCode(206)
        request.setHeader(b"Content-Range", b"bytes %d-%d/%d" % (start, end - 1, size))
    request.setHeader(b"Content-Length", b"%d" % (end - start))
    return start, end
