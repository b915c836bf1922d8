"""A replica's file bodies from its primary (spec/ops.md 6.5): ``FileFetcher`` downloads
a body into a staging file (hash and size checked against the file's entry) and moves
it into the blob store, for the file queue and on demand for a client that asks for a
file whose record came before its body. The staging file is written by one function,
``spool_body``, the only user of a spool here."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar
from urllib.parse import quote

import treq
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.web.iweb import IResponse

from devpi_twisted.replication.client import PrimaryClient
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import Storage

T = TypeVar("T")


class Offload(Protocol):
    """Runs a blocking call on a thread: ``offload(fn, *args)``."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Deferred[T]: ...


class FileFetchFailed(Exception):
    """A file body could not be had from the primary (status, hash or size wrong)."""


class FileGone(FileFetchFailed):
    """The primary no longer has the file (404/410): retrying will not help."""


class FileFetcher:
    """Bodies of files from the primary into the blob store; counts what it stored."""

    def __init__(self, storage: Storage, blobs: BlobStore, client: PrimaryClient,
                 staging: Path, offload: Offload, timeout: float) -> None:
        """``timeout``: seconds the primary has to start answering (the client's clock)."""
        self._storage = storage
        self._blobs = blobs
        self._client = client
        self._staging = staging
        self._offload = offload
        self._timeout = timeout
        self.files_fetched = 0

    async def fetch_now(self, relpath: str) -> bool:
        """On demand: a file whose record is here and whose body is not, fetched from the
        primary now (a client waits). False if there is no such live record."""
        record = await self._storage.get_file(relpath)
        if record is None or record.deleted:
            return False
        await self.fetch(relpath, record.entry)
        return True

    async def fetch(self, relpath: str, entry: Mapping[str, Any]) -> None:
        """The body of ``relpath`` into the blob store, checked against its ``entry``
        (hashes, size); FileGone, FileFetchFailed or PrimaryUnreachable when not."""
        expected = (entry.get("hashes") or {}).get("sha256")
        path, size, sha256 = await self.download(relpath)
        try:
            if expected and sha256 != expected:
                raise FileFetchFailed(f"{relpath}: sha256 {sha256}, expected {expected}")
            if entry.get("size") not in (None, 0, size):
                raise FileFetchFailed(f"{relpath}: {size} bytes, expected {entry.get('size')}")
            await self._blobs.move_in([(relpath, path, sha256)])
            self.files_fetched += 1
        finally:
            await self._offload(_remove, path)

    async def download(self, relpath: str) -> tuple[Path, int, str]:
        """The primary's body of ``relpath`` in a staging file: (path, size, sha256). The
        caller owns (and removes) the file. FileGone on 404/410, FileFetchFailed else."""
        response = await self._client.get("/" + quote(relpath), self._timeout, file=True,
                                          unbuffered=True)
        if response.code != 200:
            await treq.content(response)
            error = f"{response.code} from the primary for {relpath}"
            raise (FileGone if response.code in (404, 410) else FileFetchFailed)(error)
        return await spool_body(response, relpath, self._staging, self._offload)


async def spool_body(response: IResponse, relpath: str, staging: Path,
                     offload: Offload) -> tuple[Path, int, str]:
    """``response``'s body in a new staging file: (path, size, sha256); the file is
    removed again if the body breaks off (FileFetchFailed) or is short."""
    path, spool = await offload(_open_spool, staging)
    writer = _Spool(spool, offload)
    try:
        try:
            await treq.collect(response, writer.write)
        except CancelledError:
            raise
        except Exception as e:
            raise FileFetchFailed(f"{relpath}: the body broke off: {e}") from None
        finally:
            await writer.close()
        if isinstance(response.length, int) and writer.size != response.length:
            raise FileFetchFailed(f"{relpath}: {writer.size} of {response.length} bytes")
    except BaseException:
        await offload(_remove, path)
        raise
    return path, writer.size, writer.sha256.hexdigest()


class _Spool:
    """Body chunks written to a file on threads, in order, hashed as they arrive."""

    def __init__(self, file: IO[bytes], offload: Offload) -> None:
        self._file = file
        self._offload = offload
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._tail: Deferred[object] = defer.succeed(None)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= 1 << 20:
            self._flush()

    def _flush(self) -> None:
        chunk, self._pending, self._pending_size = b"".join(self._pending), [], 0
        if chunk:
            self._tail.addCallback(lambda _: self._offload(self._file.write, chunk))

    async def close(self) -> None:
        self._flush()

        def close_then(result: object) -> Deferred[object]:
            return self._offload(self._file.close).addCallback(lambda _: result)

        self._tail.addBoth(close_then)
        await self._tail


def _open_spool(staging: Path) -> tuple[Path, IO[bytes]]:
    fd, name = tempfile.mkstemp(dir=staging, prefix="replica-")
    return Path(name), os.fdopen(fd, "wb")


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
