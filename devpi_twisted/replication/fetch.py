"""A replica's file bodies from its primary (spec/ops.md 6.5): ``FileFetcher`` downloads
a body into a staging file (hash and size checked against the file's entry) and moves
it into the blob store, for the file queue and on demand for a client that asks for a
file whose record came before its body. The staging file is written by one function,
``spool_body``, the only user of a spool here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import treq
from twisted.internet.defer import CancelledError
from twisted.web.iweb import IResponse

from devpi_twisted.replication.client import PrimaryClient
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import Storage
from devpi_twisted.storage.spool import Spool
from devpi_twisted.storage.types import Offload

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
    spool = Spool(staging, offload, prefix="replica-")
    try:
        try:
            await treq.collect(response, spool.write)
        except CancelledError:
            await spool.close(False)
            raise
        except Exception as e:
            await spool.close(False)
            raise FileFetchFailed(f"{relpath}: the body broke off: {e}") from None
        path = await spool.close(True)
        assert path is not None
        if isinstance(response.length, int) and spool.size != response.length:
            raise FileFetchFailed(f"{relpath}: {spool.size} of {response.length} bytes")
    except BaseException:
        await spool.remove()
        raise
    return path, spool.size, spool.sha256.hexdigest()


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
